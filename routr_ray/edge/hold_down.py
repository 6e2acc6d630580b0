"""Servers that just failed, held down for a while (issue 15 item 3; like Kamailio's dispatcher "inactive").

When a branch to a server ends in 503, 408, a timeout or a transport error and the request has somewhere else to
go (a trunk's next URI, ``routr-ray.failover``, or the next server of an RFC 3263 name), the server is held down
for ``seconds``: later requests that could go elsewhere skip it first, instead of each waiting for it to fail
again. A request with nowhere else to go is still sent to it (a held-down server may be back; nothing is lost by
trying). The table is per EdgePort (per worker), bounded, and keyed by (transport, address, port).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from routr_ray.edge.next_hop import NextHop

__all__ = ["HoldDown", "up_first"]

Key = tuple[str, str, int]


class HoldDown:
    def __init__(self, seconds: float = 30.0, *, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = 4096) -> None:
        self.seconds = seconds
        self.clock = clock
        self.max_entries = max_entries
        self._until: OrderedDict[Key, float] = OrderedDict()

    def mark(self, transport: str, host: str, port: int) -> None:
        key = (transport.lower(), host.lower(), port)
        self._until[key] = self.clock() + self.seconds
        self._until.move_to_end(key)
        while len(self._until) > self.max_entries:
            self._until.popitem(last=False)

    def is_down(self, transport: str, host: str, port: int) -> bool:
        if not self._until:
            return False
        key = (transport.lower(), host.lower(), port)
        until = self._until.get(key)
        if until is None:
            return False
        if until <= self.clock():
            del self._until[key]
            return False
        return True

    def down(self) -> list[tuple[str, str, int, float]]:
        """(transport, host, port, seconds left) of every server held down now."""
        now = self.clock()
        return [(*key, until - now) for key, until in self._until.items() if until > now]

    def __len__(self) -> int:
        return len(self._until)


def up_first(hop: NextHop, hold_down: HoldDown) -> NextHop:
    """``hop`` and its alternates reordered: those not held down first (each group in its order)."""
    candidates = [hop._replace(alternates=()), *hop.alternates]
    up = [h for h in candidates if not hold_down.is_down(h.transport.value, h.host, h.port)]
    ordered = up + [h for h in candidates if h not in up]
    return ordered[0]._replace(alternates=tuple(ordered[1:]))
