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

from routr_ray.observability.ratelimit import RateLimitedLog
from routr_ray.proto.gen import processor_pb2

log = logging.getLogger(__name__)

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
ProcessFn = Callable[[MessageRequest], Awaitable[MessageResponse]]


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


@dataclass(frozen=True)
class Middleware:
    """One entry of the chain: its config and the callable that reaches it."""

    ref: str
    call: ProcessFn
    post_processor: bool = False
    optional: bool = False
    deadline: float | None = None  # seconds; past it the middleware has failed

    @classmethod
    def from_config(cls, config: MiddlewareLike, call: ProcessFn, *, deadline: float | None = None) -> Middleware:
        """From ``routr_ray.config.dispatcher.MiddlewareConfig`` (``optional`` and ``deadline_seconds`` read when
        the config has them; ``deadline`` is the default for an entry without its own)."""
        own = getattr(config, "deadline_seconds", None)
        return cls(config.ref, call, bool(config.post_processor), bool(getattr(config, "optional", False)),
                   float(own) if own else deadline)


@dataclass(frozen=True)
class PreResult:
    """Outcome of the pre-processor phase: the (possibly changed) request, or an answer to send."""

    request: MessageRequest
    answer: MessageResponse | None = None


def _is_response(msg: Any) -> bool:
    return msg.WhichOneof("message_type") == "response_type"


class MiddlewareChain:
    def __init__(self, middlewares: Iterable[Middleware], *, log_interval: float = 10.0) -> None:
        entries = tuple(middlewares)
        self.pre: tuple[Middleware, ...] = tuple(m for m in entries if not m.post_processor)
        self.post: tuple[Middleware, ...] = tuple(m for m in entries if m.post_processor)
        self._log = RateLimitedLog(log, interval=log_interval)

    def __bool__(self) -> bool:
        return bool(self.pre or self.post)

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
        request_side = not _is_response(req.message)
        for mw in self.pre:
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
        return PreResult(current)

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
        for mw in self.post:
            out = await self._call(mw, merged)
            if out is not None:
                merged.message.CopyFrom(out.message)
        final = MessageResponse()
        final.CopyFrom(result)
        final.message.CopyFrom(merged.message)
        return final
