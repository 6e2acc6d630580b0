"""Adaptive batching for every hop of the hot path (DESIGN §10).

One Ray call carrying 32 messages costs about as much as one carrying a single message, but waiting to fill a
batch costs latency. The rule used here:

* nothing in flight: send at once (low latency when idle);
* a call in flight: gather what arrives and send it when the call returns, when ``max_batch`` items are waiting,
  or when the oldest waiting item has waited ``max_wait`` seconds, whichever comes first;
* at most ``max_in_flight`` calls at a time; beyond that items queue (bounded by ``max_queue``: past it,
  ``submit`` raises :class:`BatchQueueFull` at once instead of growing memory without limit).

``send`` receives a list of items and must return a list of results of the same length, in order. An exception
from ``send`` (or its deadline passing) fails every item of that batch with that exception.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatchQueueFull(RuntimeError):
    """More items are waiting than ``max_queue`` allows."""


class BatchSizeMismatch(RuntimeError):
    """``send`` returned a different number of results than it was given items."""


class AdaptiveBatcher(Generic[T, R]):
    def __init__(
        self,
        send: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_batch: int = 64,
        max_wait: float = 0.001,
        max_in_flight: int = 4,
        max_queue: int = 10_000,
        timeout: float | None = None,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be >= 1")
        self._send = send
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.max_in_flight = max_in_flight
        self.max_queue = max_queue
        self.timeout = timeout
        self._pending: deque[tuple[T, asyncio.Future[R]]] = deque()
        self._in_flight = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0
        self.items = 0

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def waiting(self) -> int:
        return len(self._pending)

    async def submit(self, item: T) -> R:
        return await self.submit_nowait(item)

    def submit_nowait(self, item: T) -> asyncio.Future[R]:
        """Queue ``item`` and return the future of its result (no coroutine or task per item: hot paths
        attach a done-callback). Raises :class:`BatchQueueFull` at once when ``max_queue`` items wait."""
        if len(self._pending) >= self.max_queue:
            raise BatchQueueFull(f"{len(self._pending)} items waiting (max_queue={self.max_queue})")
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._maybe_flush()
        return future

    def _maybe_flush(self) -> None:
        if not self._pending:
            return
        if self._in_flight == 0 or (
            len(self._pending) >= self.max_batch and self._in_flight < self.max_in_flight
        ):
            self._flush()
            if self._pending:  # more than one batch was waiting
                self._maybe_flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self._pending and self._in_flight < self.max_in_flight:
            self._flush()
        if self._pending and self._in_flight < self.max_in_flight:
            self._maybe_flush()

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
        batch = [(item, fut) for item, fut in batch if not fut.cancelled()]
        if not batch:
            return
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        self.calls += 1
        self.items += len(batch)
        try:
            call = self._send([item for item, _ in batch])
            results = await (asyncio.wait_for(call, self.timeout) if self.timeout else call)
            if len(results) != len(batch):
                raise BatchSizeMismatch(f"sent {len(batch)} items, got {len(results)} results")
        except BaseException as exc:  # noqa: BLE001 - every waiter must learn of the failure
            error = exc if isinstance(exc, Exception) else RuntimeError(f"batch call aborted: {exc!r}")
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            self._maybe_flush()

    async def close(self) -> None:
        """Wait for the calls in flight; fail items still waiting."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._pending:
            _, future = self._pending.popleft()
            if not future.done():
                future.set_exception(asyncio.CancelledError("batcher closed"))
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
