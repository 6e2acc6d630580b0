"""One message through the dispatcher: middlewares, processor selection, the processor, SIP errors.

Pure asyncio; the Serve deployment (routr_ray/actors) and the gRPC server wrap :class:`DispatchCore` and
supply ``call_processor`` (a grpc.aio stub or a DeploymentHandle per processor).

Flow (routr.md §6, with Routr's bugs fixed):

1. Responses whose status is not 1xx/2xx skip the middlewares (as in Routr, which lets only 180 and 200
   through; 183 and other provisional/2xx responses go through here, so a relay middleware sees their SDP),
   except the middlewares whose ``responses`` mode is ``requested``: they see error responses too
   (:mod:`~routr_ray.dispatch.middleware`).
2. Pre-processor middlewares; a SIP answer from one of them is returned at once (short-circuit).
3. Processor selection (:class:`~routr_ray.dispatch.matching.Router`); none -> 405 with Allow.
4. The processor, within its entry's ``deadline_seconds`` (else ``deadline``) seconds; unreachable, raising or late -> 503 with Retry-After.
   Its result is stamped with ``metadata[PROCESSOR_METADATA_KEY] = ref`` so that responses to a request
   it forwarded come back to it. A processor's ``routr-ray.responses=errors`` (the EdgePort may relay 1xx/2xx
   without it) is removed when a middleware of mode ``all`` is configured (it must see those responses), or
   when a middleware asked for the responses to this request (``routr-ray.responses: all`` in its answer).
5. Post-processor middlewares.

A non-optional middleware failure -> 500. ACK and responses are never answered: where an answer would be
sent, :meth:`DispatchCore.handle` returns None and the EdgePort drops the message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from routr_ray.dispatch import errors
from routr_ray.dispatch.matching import Route, Router, is_response, method_name, stamp_processor
from routr_ray.dispatch.metrics import NO_PROCESSOR, DispatchMetrics
from routr_ray.dispatch.middleware import MiddlewareChain, MiddlewareFailed
from routr_ray.observability import tracing
from routr_ray.observability.ratelimit import RateLimitedLog
from routr_ray.processors.sdk import RESPONSES_KEY, is_drop
from routr_ray.proto.gen import processor_pb2

log = logging.getLogger(__name__)

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
ProcessorCall = Callable[[Route, MessageRequest], Awaitable[MessageResponse]]
BatchCall = Callable[[Route, list[MessageRequest]], Awaitable[Sequence[MessageResponse]]]
T = TypeVar("T")

SERVE_SCHEME = "serve://"
HOLD_FIRST_PAUSE = 0.1  # seconds before the first retry of a failed call to a serve:// processor
HOLD_MAX_PAUSE = 1.0
# Retries of one call at most: most of the wait for a new replica happens inside one call (Serve queues a call
# until a replica can take it); the bound is for a message that kills every replica it reaches (a poison
# message crashes at most 1 + HOLD_MAX_RETRIES replicas, not one every pause until the deadline).
HOLD_MAX_RETRIES = 5


def middlewares_apply(req: MessageRequest) -> bool:
    """Requests and 1xx (except 100)/2xx responses go through middlewares of mode ``all``; error responses do
    not (see :meth:`MiddlewareChain.applies` for the chain as configured)."""
    if req.message.WhichOneof("message_type") != "response_type":
        return True
    status = errors.response_status(req.message)
    return status is not None and 101 <= status < 300


def _holds(route: Route) -> bool:
    """Whether a failed call to ``route`` is held and tried again (:meth:`DispatchCore._held`): in-cluster
    processors only. A ``host:port`` processor may not be idempotent, and its failures are answered 503 at once
    (its health check, ``remote.py``)."""
    return str(getattr(route.spec, "addr", "")).startswith(SERVE_SCHEME)


def route_deadline(route: Route, default: float | None) -> float | None:
    """The entry's own ``deadline_seconds`` when its config has one, else ``default``."""
    own = getattr(route.spec, "deadline_seconds", None)
    return float(own) if own else default


class DispatchCore:
    def __init__(self, router: Router, chain: MiddlewareChain, call_processor: ProcessorCall, *,
                 deadline: float | None = None,
                 retry_after: int = errors.DEFAULT_RETRY_AFTER_SECONDS,
                 log_interval: float = 10.0, call_batch: BatchCall | None = None,
                 metrics: DispatchMetrics | None = None) -> None:
        self.router = router
        self.metrics = metrics
        self.chain = chain
        self.call_processor = call_processor
        self.call_batch = call_batch
        self.deadline = deadline
        self.retry_after = retry_after
        self._log = RateLimitedLog(log, interval=log_interval)

    async def handle(self, req: MessageRequest) -> MessageResponse | None:
        """The MessageResponse for ``req`` (processor result or SIP error answer), or None to drop."""
        use_chain = bool(self.chain) and self.chain.applies(req)
        wants_responses = False
        if use_chain:
            try:
                pre = await self.chain.run_pre(req)
            except MiddlewareFailed:
                self._count(NO_PROCESSOR, "middleware_failed")
                return errors.server_internal_error(req)
            if pre.answer is not None:
                self._count(NO_PROCESSOR, "middleware_answered")
                return pre.answer if errors.is_answerable(req) else None
            req = pre.request
            wants_responses = pre.wants_responses

        route = self.router.select_route(req)
        if route is None:
            self._no_match(req)
            return errors.method_not_allowed(req, self.router.routed_methods)

        span = _dispatch_span(route, req) if tracing.ON else None
        deadline = route_deadline(route, self.deadline)
        try:
            if deadline is None:
                result = await self.call_processor(route, req)
            else:
                async with asyncio.timeout(deadline):
                    result = await self._held(route, lambda: self.call_processor(route, req))
            if not self._usable(result):
                self._count(route.ref, "dropped", span=span)
                return None
        except Exception as exc:  # unreachable, failing, past its deadline: all the same to the client
            self._log.error(route.ref, "processor %r unavailable: %r", route.ref, exc)
            self._count(route.ref, "unavailable", span=span)
            return errors.service_unavailable(req, self.retry_after)
        self._stamp(result, route, wants_responses)

        if use_chain and self.chain.post:
            try:
                result = await self.chain.run_post(req, result)
            except MiddlewareFailed:
                self._count(route.ref, "middleware_failed", span=span)
                return errors.server_internal_error(req)
        self._count(route.ref, "processed", span=span)
        return result

    async def _held(self, route: Route, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt()``; when it fails and the route is an in-cluster processor (``serve://``), the request is held
        and the call tried again after a pause (``HOLD_FIRST_PAUSE`` doubling to ``HOLD_MAX_PAUSE``), until it
        succeeds, the deadline the caller put around this runs out, or ``HOLD_MAX_RETRIES`` retries failed (then
        503 as before). A replica that dies
        (killed, crashed, its node lost) takes the calls it was running with it; Serve starts another within
        seconds, and the requests wait for it instead of being answered 503 (issue 18 item 5: with one replica
        the dispatcher holds and retries while it restarts). A processor's answer is never retried, only a call
        that raised; a ``serve://`` processor is ours, and running a message twice there is harmless (Connect
        keeps no per-request state: a REGISTER binds the same contact again, an INVITE is routed again)."""
        if not _holds(route):
            return await attempt()
        pause = HOLD_FIRST_PAUSE
        for _ in range(HOLD_MAX_RETRIES):
            try:
                return await attempt()
            except Exception as exc:  # noqa: BLE001 - unreachable or failing: hold and try again
                self._log.warning(route.ref, "processor %r failed (%r): holding its requests and retrying",
                                  route.ref, exc)
                self._count(route.ref, "retried")
                await asyncio.sleep(pause)
                pause = min(2 * pause, HOLD_MAX_PAUSE)
        return await attempt()

    def _count(self, processor: str, outcome: str, amount: int = 1, span: object = None) -> None:
        if self.metrics is not None:
            self.metrics.count(processor, outcome, amount)
        if span is not None:
            tracing.end_span(span, error="processor unavailable" if outcome == "unavailable" else None,
                             routr__outcome=outcome)

    def _no_match(self, req: MessageRequest) -> None:
        self._log.warning("no-match", "no processor matches %s %s (call %r)", method_name(req),
                          "response" if is_response(req) else "request", req.ref)
        self._count(NO_PROCESSOR, "no_match")

    def _stamp(self, result: MessageResponse, route: Route, wants_responses: bool = False) -> None:
        metadata = result.metadata
        stamp_processor(metadata, route.ref)
        if RESPONSES_KEY in metadata and (wants_responses or self.chain.wants_every_success):
            del metadata[RESPONSES_KEY]  # the middlewares see 1xx/2xx responses: they all come back here

    @staticmethod
    def _usable(result: MessageResponse | None) -> bool:
        """True for a result to send on, False for a drop; raises for a result that is no answer."""
        if result is None:
            raise ValueError("processor returned nothing")
        if not result.HasField("message"):
            if is_drop(result):  # the processor absorbed it (e.g. an ACK): nothing to send
                return False
            raise ValueError("processor returned no message")
        return True

    async def handle_batch(self, requests: Sequence[MessageRequest]) -> list[MessageResponse | None]:
        """:meth:`handle` for each request, in order. Without middlewares and with ``call_batch``, the requests
        that go to the same processor travel to it as one call (an EdgePort batch stays one batch)."""
        if self.call_batch is None or self.chain:
            return list(await asyncio.gather(*(self.handle(r) for r in requests)))
        results: list[MessageResponse | None] = [None] * len(requests)
        groups: dict[str, tuple[Route, list[int]]] = {}
        for index, req in enumerate(requests):
            route = self.router.select_route(req)
            if route is None:
                self._no_match(req)
                results[index] = errors.method_not_allowed(req, self.router.routed_methods)
            else:
                groups.setdefault(route.ref, (route, []))[1].append(index)
        if groups:
            await asyncio.gather(*(self._send_group(route, indexes, requests, results)
                                   for route, indexes in groups.values()))
        return results

    async def _send_group(self, route: Route, indexes: list[int], requests: Sequence[MessageRequest],
                          results: list[MessageResponse | None]) -> None:
        assert self.call_batch is not None
        batch = [requests[i] for i in indexes]
        spans = [_dispatch_span(route, r) for r in batch] if tracing.ON else None
        deadline = route_deadline(route, self.deadline)
        try:
            if deadline is None:
                answers = await self.call_batch(route, batch)
            else:
                async with asyncio.timeout(deadline):
                    answers = await self._held(route, lambda: self.call_batch(route, batch))
            if len(answers) != len(batch):
                raise ValueError(f"sent {len(batch)} messages, got {len(answers)} results")
        except Exception as exc:  # the whole call failed: every message of it gets 503
            self._log.error(route.ref, "processor %r unavailable: %r", route.ref, exc)
            for n, i in enumerate(indexes):
                results[i] = errors.service_unavailable(requests[i], self.retry_after)
                self._count(route.ref, "unavailable", span=spans[n] if spans else None)
            return
        for n, (i, result) in enumerate(zip(indexes, answers, strict=True)):
            span = spans[n] if spans else None
            try:
                if not self._usable(result):
                    self._count(route.ref, "dropped", span=span)
                    continue
            except ValueError as exc:
                self._log.error(route.ref, "processor %r unavailable: %r", route.ref, exc)
                results[i] = errors.service_unavailable(requests[i], self.retry_after)
                self._count(route.ref, "unavailable", span=span)
                continue
            self._stamp(result, route)
            results[i] = result
            self._count(route.ref, "processed", span=span)


def _dispatch_span(route: Route, req: MessageRequest) -> object:
    """The dispatcher's span of one message (a child of the EdgePort's), its traceparent passed on to the
    processor; None when the message is not traced."""
    metadata = req.metadata
    span = tracing.span_from_metadata("routr.dispatch", metadata, {"routr.processor": route.ref}, kind="INTERNAL")
    if span is not None:
        tracing.inject(span, metadata)
    return span
