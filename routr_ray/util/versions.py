"""A version number that only grows, with waiters for the next one: the long-poll behind the boards that replicas
and EdgePorts follow (Connect's resource board, the server health table). One asyncio loop; no Ray here."""

from __future__ import annotations

import asyncio


class Versions:
    def __init__(self, start: int = 1) -> None:
        self.current = start
        self._changed: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._changed is None:  # created on the loop that uses it
            self._changed = asyncio.Condition()
        return self._changed

    async def bump(self) -> int:
        """A new version; every waiter wakes."""
        changed = self._condition()
        async with changed:
            self.current += 1
            changed.notify_all()
        return self.current

    async def wait_above(self, version: int, wait_seconds: float) -> bool:
        """True as soon as the current version is above ``version`` (at once when it is), False after
        ``wait_seconds``."""
        if self.current > version:
            return True
        if wait_seconds <= 0:
            return False
        changed = self._condition()
        async with changed:
            try:
                await asyncio.wait_for(changed.wait_for(lambda: self.current > version), wait_seconds)
            except TimeoutError:
                return False
        return True
