"""The loop the trunk registrar and the keepalive pinger share: one round per item whose ``due`` has come.

:meth:`DueRounds.run` sleeps until the earliest ``due`` of the items with no round in progress (or until
:meth:`wake`), then starts a task for each due item: items side by side, one round at a time per item, so an item
whose server does not answer never delays another. Subclasses give :meth:`items` and :meth:`_round` (which must
move the item's ``due`` on). Tests drive it with a fake clock: :meth:`step` runs the rounds due at ``clock()`` and
returns when they are over.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

__all__ = ["DueRounds"]

IDLE_WAIT = 60.0  # nothing to do: look again after this long (or when woken)


class _Due(Protocol):
    @property
    def due(self) -> float: ...


T = TypeVar("T", bound=_Due)


class DueRounds(Generic[T]):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._wake = asyncio.Event()
        self._rounds: dict[int, asyncio.Task[None]] = {}  # id(item) -> its round in progress

    def items(self) -> Iterable[T]:
        raise NotImplementedError

    async def _round(self, item: T) -> None:
        raise NotImplementedError

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            self._start_due()
            now = self.clock()
            dues = [item.due for item in self.items() if id(item) not in self._rounds]
            wait = max(0.0, min(dues) - now) if dues else IDLE_WAIT
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def step(self) -> None:
        """Run every round due now, side by side, and wait for them."""
        started = self._start_due()
        if started:
            await asyncio.gather(*started)

    def _start_due(self) -> list[asyncio.Task[None]]:
        now = self.clock()
        started = []
        for item in list(self.items()):
            if item.due <= now and id(item) not in self._rounds:
                key = id(item)
                task = asyncio.get_running_loop().create_task(self._round(item))
                self._rounds[key] = task
                task.add_done_callback(functools.partial(self._round_done, key))
                started.append(task)
        return started

    def _round_done(self, key: int, _task: asyncio.Task[None]) -> None:
        self._rounds.pop(key, None)
        self._wake.set()
