"""The middleware chain (routr.md §1.2, §6; DESIGN §5).

A middleware is any ``async (MessageRequest) -> MessageResponse`` callable: a gRPC client to a Routr
middleware (``Processor/ProcessMessage``), a Serve handle, or a plain coroutine in tests.

Pre-processor middlewares (``post_processor=False``) run in config order before the processor. Each gets
the current request; the ``message`` it returns replaces the request's message (its sender and metadata
are ignored, as in Routr). When the request is a SIP request and a middleware returns a *response*, the
chain stops and that response is the answer (short-circuit): the processor and the post-processor
middlewares are skipped (Routr still sends it through both; we do not copy that).

Post-processor middlewares (``post_processor=True``) run in config order after the processor, each with
the request merged with the processor's result (Routr's ``{...request, ...result}``: the result's message,
sender when set, and metadata); the message each returns replaces the result's message.

Which responses a middleware sees (its ``responses`` mode; requests always go through every middleware):

* ``all`` (default, Routr's): every 1xx (but 100) and 2xx response that reaches the dispatcher; error responses
  skip it. The dispatcher then removes a processor's ``routr-ray.responses=errors`` mark from every request it
  forwards (the EdgePort would relay those 1xx/2xx without the dispatcher otherwise).
* ``requested``: every response but 100 (errors included, e.g. to free what it set up for a failed call); the mark
  stays on, except on the requests for which the middleware asked: an answer whose metadata says
  ``routr-ray.responses: all`` (:data:`RESPONSES_ALL`) makes all the responses to that one request come back through
  the dispatcher. So a media relay gets the 18x/2xx of the INVITEs it relayed, and nothing else costs a hop.

Metadata a middleware returns is ignored (as in Routr), except that ask, and except for a *trusted* middleware
(``trusted=True``: its entry says ``internalMetadata: true``, it sees the internal metadata): the ``routr-ray.*``
keys of its answer are added to (or replace those of) the message's metadata, so it can change directives such as
the forked branches (``routr-ray.branches``) or give a branch keys the EdgePort sends back with that branch's
responses (``routr-ray.echo.*``).

Errors are never skipped silently. A middleware that raises, misses its deadline, or returns no message, is logged
(rate-limited, per middleware) and then:

* ``optional=True``: passed through, the chain goes on with the message unchanged;
* otherwise the chain raises :class:`MiddlewareFailed`, which the dispatcher answers with 500
  (or drops, for ACK and responses).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from routr_ray.dispatch.errors import response_status
from routr_ray.dispatch.outside import is_internal
from routr_ray.observability.ratelimit import RateLimitedLog
from routr_ray.proto.gen import processor_pb2

log = logging.getLogger(__name__)

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
ProcessFn = Callable[[MessageRequest], Awaitable[MessageResponse]]

RESPONSES_KEY = "routr-ray.responses"  # as routr_ray.processors.sdk.RESPONSES_KEY
RESPONSES_ALL = "all"
"""The value of :data:`RESPONSES_KEY` in a middleware's answer to a request: send me every response to it."""
RESPONSES_MODE_ALL = "all"
RESPONSES_MODE_REQUESTED = "requested"
RESPONSES_MODES = (RESPONSES_MODE_ALL, RESPONSES_MODE_REQUESTED)


class MiddlewareFailed(Exception):
    """A non-optional middleware raised or answered nothing usable."""

    def __init__(self, ref: str, cause: BaseException | str) -> None:
        super().__init__(f"middleware {ref!r} failed: {cause}")
        self.ref = ref
        self.cause = cause


class MiddlewareLike(Protocol):
    @property
    def ref(self) -> str: ...
    @property
    def post_processor(self) -> bool: ...


def _status(req: MessageRequest) -> int | None:
    """The status of a response MessageRequest, None for a request."""
    if req.message.WhichOneof("message_type") != "response_type":
        return None
    return response_status(req.message) or 0


@dataclass(frozen=True)
class Middleware:
    """One entry of the chain: its config and the callable that reaches it."""

    ref: str
    call: ProcessFn
    post_processor: bool = False
    optional: bool = False
    deadline: float | None = None  # seconds; past it the middleware has failed
    responses: str = RESPONSES_MODE_ALL  # which responses it sees (module docstring)
    trusted: bool = False  # internalMetadata: its routr-ray.* metadata is taken

    @classmethod
    def from_config(cls, config: MiddlewareLike, call: ProcessFn, *, deadline: float | None = None) -> Middleware:
        """From ``routr_ray.config.dispatcher.MiddlewareConfig`` (``optional``, ``deadline_seconds``, ``responses``
        and ``internal_metadata`` read when the config has them; ``deadline`` is the default for an entry without
        its own)."""
        own = getattr(config, "deadline_seconds", None)
        return cls(config.ref, call, bool(config.post_processor), bool(getattr(config, "optional", False)),
                   float(own) if own else deadline, getattr(config, "responses", RESPONSES_MODE_ALL),
                   bool(getattr(config, "internal_metadata", False)))

    def sees(self, req: MessageRequest) -> bool:
        """Whether ``req`` goes through this middleware: every request; the responses of its mode."""
        status = _status(req)
        if status is None:
            return True
        if self.responses == RESPONSES_MODE_REQUESTED:
            return status != 100
        return 101 <= status < 300


@dataclass(frozen=True)
class PreResult:
    """Outcome of the pre-processor phase: the (possibly changed) request, or an answer to send."""

    request: MessageRequest
    answer: MessageResponse | None = None
    wants_responses: bool = False  # a middleware asked for every response to this request (RESPONSES_ALL)


def _is_response(msg: Any) -> bool:
    return msg.WhichOneof("message_type") == "response_type"


def _asks_for_responses(out: MessageResponse) -> bool:
    return out.metadata.get(RESPONSES_KEY) == RESPONSES_ALL


def _take_metadata(mw: Middleware, out: MessageResponse, metadata: Any) -> None:
    """A trusted middleware's ``routr-ray.*`` keys go into ``metadata``; anything else it returns is ignored."""
    if mw.trusted:
        for key, value in out.metadata.items():
            if is_internal(key) and key != RESPONSES_KEY:
                metadata[key] = value


class MiddlewareChain:
    def __init__(self, middlewares: Iterable[Middleware], *, log_interval: float = 10.0) -> None:
        entries = tuple(middlewares)
        self.pre: tuple[Middleware, ...] = tuple(m for m in entries if not m.post_processor)
        self.post: tuple[Middleware, ...] = tuple(m for m in entries if m.post_processor)
        self._log = RateLimitedLog(log, interval=log_interval)

    def __bool__(self) -> bool:
        return bool(self.pre or self.post)

    def applies(self, req: MessageRequest) -> bool:
        """Whether any middleware sees ``req``."""
        return any(m.sees(req) for m in (*self.pre, *self.post))

    @property
    def wants_every_success(self) -> bool:
        """A middleware of mode ``all`` is configured: every 1xx/2xx must come back through the dispatcher."""
        return any(m.responses == RESPONSES_MODE_ALL for m in (*self.pre, *self.post))

    async def _call(self, mw: Middleware, req: MessageRequest) -> MessageResponse | None:
        """The middleware's answer, or None when an optional middleware failed (pass-through)."""
        try:
            if mw.deadline is None:
                out = await mw.call(req)
            else:
                async with asyncio.timeout(mw.deadline):
                    out = await mw.call(req)
            if out is None or not out.HasField("message"):
                raise ValueError("returned no message")
            return out
        except Exception as exc:  # any failure of the middleware or of the way to it
            if mw.optional:
                self._log.warning(mw.ref, "optional middleware %r failed, passing through: %r", mw.ref, exc)
                return None
            self._log.error(mw.ref, "middleware %r failed: %r", mw.ref, exc)
            raise MiddlewareFailed(mw.ref, exc) from exc

    async def run_pre(self, req: MessageRequest) -> PreResult:
        """Run the pre-processor middlewares. Raises :class:`MiddlewareFailed`."""
        if not self.pre:
            return PreResult(req)
        current = req
        copied = False
        wants = False
        request_side = not _is_response(req.message)
        for mw in self.pre:
            if not mw.sees(req):
                continue
            out = await self._call(mw, current)
            if out is None:
                continue
            if request_side and _is_response(out.message):
                return PreResult(current, out)  # short-circuit: the middleware answered
            if not copied:
                current = MessageRequest()
                current.CopyFrom(req)  # never change the caller's object
                copied = True
            current.message.CopyFrom(out.message)
            _take_metadata(mw, out, current.metadata)
            wants = wants or (request_side and _asks_for_responses(out))
        return PreResult(current, wants_responses=wants)

    async def run_post(self, req: MessageRequest, result: MessageResponse) -> MessageResponse:
        """Run the post-processor middlewares over the processor's result. Raises :class:`MiddlewareFailed`."""
        if not self.post:
            return result
        merged = MessageRequest()
        merged.CopyFrom(req)
        merged.message.CopyFrom(result.message)
        if result.HasField("sender"):
            merged.sender.CopyFrom(result.sender)
        merged.metadata.clear()
        merged.metadata.update(result.metadata)
        wants = False
        request_side = not _is_response(req.message)
        for mw in self.post:
            if not mw.sees(req):
                continue
            out = await self._call(mw, merged)
            if out is not None:
                merged.message.CopyFrom(out.message)
                _take_metadata(mw, out, merged.metadata)
                wants = wants or (request_side and _asks_for_responses(out))
        final = MessageResponse()
        final.CopyFrom(result)
        final.message.CopyFrom(merged.message)
        final.metadata.clear()
        final.metadata.update(merged.metadata)
        if wants and RESPONSES_KEY in final.metadata:
            del final.metadata[RESPONSES_KEY]  # every response to this request comes back through the dispatcher
        return final
