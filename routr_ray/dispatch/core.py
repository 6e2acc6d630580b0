"""One message through the dispatcher: middlewares, processor selection, the processor, SIP errors.

Pure asyncio; the Serve deployment (routr_ray/actors) and the gRPC server wrap :class:`DispatchCore` and
supply ``call_processor`` (a grpc.aio stub or a DeploymentHandle per processor).

Flow (routr.md §6, with Routr's bugs fixed):

1. Responses whose status is not 1xx/2xx skip the middlewares (as in Routr, which lets only 180 and 200
   through; 183 and other provisional/2xx responses go through here, so a relay middleware sees their SDP).
2. Pre-processor middlewares; a SIP answer from one of them is returned at once (short-circuit).
3. Processor selection (:class:`~routr_ray.dispatch.matching.Router`); none -> 405 with Allow.
4. The processor, within ``deadline`` seconds; unreachable, raising or late -> 503 with Retry-After.
   Its result is stamped with ``metadata[PROCESSOR_METADATA_KEY] = ref`` so that responses to a request
   it forwarded come back to it.
5. Post-processor middlewares.

A non-optional middleware failure -> 500. ACK and responses are never answered: where an answer would be
sent, :meth:`DispatchCore.handle` returns None and the EdgePort drops the message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from routr_ray.dispatch import errors
from routr_ray.dispatch.matching import Route, Router, is_response, method_name, stamp_processor
from routr_ray.dispatch.middleware import MiddlewareChain, MiddlewareFailed
from routr_ray.dispatch.ratelimit import RateLimitedLog
from routr_ray.processors.sdk import is_drop
from routr_ray.proto.gen import processor_pb2

log = logging.getLogger(__name__)

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
ProcessorCall = Callable[[Route, MessageRequest], Awaitable[MessageResponse]]


def middlewares_apply(req: MessageRequest) -> bool:
    """Requests and 1xx (except 100)/2xx responses go through the middlewares; error responses do not."""
    if req.message.WhichOneof("message_type") != "response_type":
        return True
    status = errors.response_status(req.message)
    return status is not None and 101 <= status < 300


class DispatchCore:
    def __init__(self, router: Router, chain: MiddlewareChain, call_processor: ProcessorCall, *,
                 deadline: float | None = None,
                 retry_after: int = errors.DEFAULT_RETRY_AFTER_SECONDS,
                 log_interval: float = 10.0) -> None:
        self.router = router
        self.chain = chain
        self.call_processor = call_processor
        self.deadline = deadline
        self.retry_after = retry_after
        self._log = RateLimitedLog(log, interval=log_interval)

    async def handle(self, req: MessageRequest) -> MessageResponse | None:
        """The MessageResponse for ``req`` (processor result or SIP error answer), or None to drop."""
        use_chain = bool(self.chain) and middlewares_apply(req)
        if use_chain:
            try:
                pre = await self.chain.run_pre(req)
            except MiddlewareFailed:
                return errors.server_internal_error(req)
            if pre.answer is not None:
                return pre.answer if errors.is_answerable(req) else None
            req = pre.request

        route = self.router.select_route(req)
        if route is None:
            self._log.warning("no-match", "no processor matches %s %s (call %r)", method_name(req),
                              "response" if is_response(req) else "request", req.ref)
            return errors.method_not_allowed(req, self.router.routed_methods)

        try:
            if self.deadline is None:
                result = await self.call_processor(route, req)
            else:
                async with asyncio.timeout(self.deadline):
                    result = await self.call_processor(route, req)
            if result is None:
                raise ValueError("processor returned nothing")
            if not result.HasField("message"):
                if is_drop(result):  # the processor absorbed it (e.g. an ACK): nothing to send
                    return None
                raise ValueError("processor returned no message")
        except Exception as exc:  # unreachable, failing, past its deadline: all the same to the client
            self._log.error(route.ref, "processor %r unavailable: %r", route.ref, exc)
            return errors.service_unavailable(req, self.retry_after)
        stamp_processor(result.metadata, route.ref)

        if use_chain and self.chain.post:
            try:
                result = await self.chain.run_post(req, result)
            except MiddlewareFailed:
                return errors.server_internal_error(req)
        return result
