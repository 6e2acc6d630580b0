"""How the EdgePort reaches the Message Dispatcher (issue 3 item 6, DESIGN §10).

Interface (:class:`DispatcherClient`): ``async process(batch: list[MessageRequest]) -> list[MessageResponse]``,
one result per item, in order. An item that failed on its own (e.g. one unary gRPC call of a batch) comes back
as a MessageResponse without ``message`` whose ``metadata[FAILURE_METADATA_KEY]`` says why (see
:func:`failure_response` / :func:`failure_of`); a failure of the whole call raises.

:class:`BatchingDispatcher` puts an :class:`~routr_ray.util.batching.AdaptiveBatcher` in front of a client
(send at once when idle; while a call is in flight, gather up to ``max_batch`` messages or ``max_wait``
seconds) with a deadline per call, and turns every failure into :class:`DispatcherUnavailable`; the EdgePort
answers 503 with Retry-After for requests (routr.md §12: Routr logs and stays silent).

Implementations: :class:`GrpcDispatcherClient` (``host:port`` of any
``fonoster.routr.processor.v2beta1.Processor`` server; ProcessMessage is unary, so a batch becomes concurrent
unary calls on one reused channel) and :class:`FakeDispatcher` for tests. The Serve-handle client lives in
``routr_ray/actors`` (only that package may import Ray).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from routr_ray.grpcutil.auth import bearer_metadata
from routr_ray.proto.gen import processor_pb2
from routr_ray.util.batching import AdaptiveBatcher, BatchQueueFull

__all__ = [
    "FAILURE_METADATA_KEY",
    "PROCESSOR_METADATA_KEY",
    "BatchingDispatcher",
    "DispatcherClient",
    "DispatcherUnavailable",
    "FakeDispatcher",
    "GrpcDispatcherClient",
    "client_for_addr",
    "failure_of",
    "failure_response",
]

log = logging.getLogger(__name__)

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse

# Same value as routr_ray.dispatch.matching.PROCESSOR_METADATA_KEY (the edge does not import dispatch/).
PROCESSOR_METADATA_KEY = "routr-ray.processor"
FAILURE_METADATA_KEY = "routr-ray.dispatch-failure"


class DispatcherUnavailable(RuntimeError):
    """The dispatcher could not be reached, failed, or missed its deadline."""


@runtime_checkable
class DispatcherClient(Protocol):
    async def process(self, batch: list[MessageRequest]) -> list[MessageResponse]: ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


def failure_response(reason: str) -> MessageResponse:
    resp = MessageResponse()
    resp.metadata[FAILURE_METADATA_KEY] = reason or "failed"
    return resp


def failure_of(resp: MessageResponse) -> str | None:
    return resp.metadata.get(FAILURE_METADATA_KEY) if resp.metadata else None


class BatchingDispatcher:
    """Adaptive batching + deadline in front of a :class:`DispatcherClient`."""

    def __init__(
        self,
        client: DispatcherClient,
        *,
        deadline: float = 5.0,
        max_batch: int = 64,
        max_wait: float = 0.001,
        max_in_flight: int = 4,
        max_queue: int = 10_000,
    ) -> None:
        self.client = client
        self.deadline = deadline
        self._batcher = AdaptiveBatcher(
            client.process,
            max_batch=max_batch,
            max_wait=max_wait,
            max_in_flight=max_in_flight,
            max_queue=max_queue,
            timeout=deadline,
        )

    @property
    def batcher(self) -> AdaptiveBatcher[MessageRequest, MessageResponse]:
        return self._batcher

    async def submit(self, request: MessageRequest) -> MessageResponse:
        """One message through the dispatcher; DispatcherUnavailable on any failure."""
        try:
            resp = await self._batcher.submit(request)
        except BatchQueueFull as exc:
            raise DispatcherUnavailable(f"dispatcher queue full: {exc}") from exc
        except asyncio.CancelledError:
            raise
        except TimeoutError as exc:
            raise DispatcherUnavailable(f"dispatcher missed its {self.deadline}s deadline") from exc
        except Exception as exc:
            raise DispatcherUnavailable(f"dispatcher failed: {exc!r}") from exc
        reason = failure_of(resp)
        if reason is not None:
            raise DispatcherUnavailable(reason)
        return resp

    def submit_nowait(self, request: MessageRequest) -> asyncio.Future[MessageResponse]:
        """One message through the dispatcher, as a future for :meth:`result_of`; DispatcherUnavailable at once
        when the queue is full."""
        try:
            return self._batcher.submit_nowait(request)
        except BatchQueueFull as exc:
            raise DispatcherUnavailable(f"dispatcher queue full: {exc}") from exc

    def result_of(self, future: asyncio.Future[MessageResponse]) -> MessageResponse:
        """The answer in a done future of :meth:`submit_nowait`; DispatcherUnavailable on any failure."""
        if future.cancelled():
            raise DispatcherUnavailable("dispatcher call cancelled")
        exc = future.exception()
        if exc is not None:
            if isinstance(exc, TimeoutError):
                raise DispatcherUnavailable(f"dispatcher missed its {self.deadline}s deadline") from exc
            if isinstance(exc, asyncio.CancelledError):
                raise DispatcherUnavailable("dispatcher call cancelled") from exc
            raise DispatcherUnavailable(f"dispatcher failed: {exc!r}") from exc
        resp = future.result()
        reason = failure_of(resp)
        if reason is not None:
            raise DispatcherUnavailable(reason)
        return resp

    async def ready(self) -> bool:
        try:
            return bool(await self.client.ready())
        except Exception:
            return False

    async def close(self) -> None:
        await self._batcher.close()
        await self.client.close()


class GrpcDispatcherClient:
    """``host:port`` of any Processor server (a routr-ray dispatcher, a Routr dispatcher, a processor).

    One grpc.aio channel, reused; each item is one unary ``ProcessMessage`` call with ``deadline`` seconds.
    ``metadata`` (e.g. a shared token, DESIGN §6b) is sent with every call.
    """

    def __init__(
        self,
        addr: str,
        *,
        deadline: float = 5.0,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        import grpc.aio

        from routr_ray.proto.gen import processor_pb2_grpc

        self.addr = addr
        self.deadline = deadline
        self.metadata = metadata
        self._grpc = grpc
        self._channel = grpc.aio.insecure_channel(
            addr, options=[("grpc.keepalive_time_ms", 30_000), ("grpc.max_receive_message_length", 4 << 20)]
        )
        self._stub = processor_pb2_grpc.ProcessorStub(self._channel)

    async def _one(self, request: MessageRequest) -> MessageResponse:
        try:
            return await self._stub.ProcessMessage(request, timeout=self.deadline, metadata=self.metadata or None)
        except self._grpc.aio.AioRpcError as exc:
            return failure_response(f"grpc {exc.code().name}: {exc.details()}")

    async def process(self, batch: list[MessageRequest]) -> list[MessageResponse]:
        return list(await asyncio.gather(*(self._one(r) for r in batch)))

    async def ready(self) -> bool:
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout=min(self.deadline, 2.0))
        except (TimeoutError, asyncio.CancelledError):
            return False
        return True

    async def close(self) -> None:
        await self._channel.close()


Handler = Callable[[MessageRequest], MessageResponse | Awaitable[MessageResponse]]


class FakeDispatcher:
    """In-process dispatcher for tests and benchmarks: ``handler(request) -> MessageResponse`` (or an
    awaitable of one). ``received`` keeps what it was given (when ``record``); ``failing`` makes every call
    raise; ``calls`` counts batches."""

    def __init__(self, handler: Handler, *, record: bool = True) -> None:
        self.handler = handler
        self.record = record
        self.received: list[MessageRequest] = []
        self.failing = False
        self.calls = 0

    async def process(self, batch: list[MessageRequest]) -> list[MessageResponse]:
        self.calls += 1
        if self.failing:
            raise ConnectionError("fake dispatcher is failing")
        out: list[MessageResponse] = []
        for request in batch:
            if self.record:
                self.received.append(request)
            result = self.handler(request)
            if inspect.isawaitable(result):
                result = await result
            out.append(result)
        return out

    async def ready(self) -> bool:
        return not self.failing

    async def close(self) -> None:
        return None


def client_for_addr(addr: str, *, deadline: float = 5.0, token: str | None = None) -> DispatcherClient:
    """The client for an EdgePort config's ``processor.addr`` when it is ``host:port``, sending ``token``
    (``processor.token``) with every call. ``serve://...`` (and the default) needs the Serve handle client of
    ``routr_ray/actors``: ValueError here."""
    if not addr or addr.startswith("serve://"):
        raise ValueError(f"{addr or 'serve://routr'} needs the Serve handle client (routr_ray.actors)")
    if not token:
        log.warning("EdgePort -> dispatcher %s without a token: a routr-ray dispatcher treats such a caller as an "
                    "outside caller (sender replaced, no directives); set processor.token", addr)
    return GrpcDispatcherClient(addr, deadline=deadline, metadata=bearer_metadata(token))
