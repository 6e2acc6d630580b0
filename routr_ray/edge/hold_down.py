"""Servers that just failed, held down for a while (issue 15; like Kamailio's dispatcher "inactive"), shared
across the cluster.

When a branch to a server ends in 503, 408, a timeout or a transport error and the request has somewhere else to
go (a trunk's next URI, ``routr-ray.failover``, or the next server of an RFC 3263 name), the server is held down
for ``seconds``: later requests that could go elsewhere skip it first, instead of each waiting for it to fail
again. A request with nowhere else to go is still sent to it (a held-down server may be back; nothing is lost by
trying). Keyed by (transport, address, port), bounded.

Shared: each :meth:`HoldDown.mark` is also queued for the cluster (:meth:`take_marks`; ``on_mark`` says there is
something to take); the EdgePort actor publishes the marks and follows the cluster's table
(``util/server_health.py``), which it hands to :meth:`apply_shared`: the servers other EdgePorts (and workers)
held down, and those the OPTIONS keepalive marked down (held until the keepalive says they are up). Without a
cluster (an EdgePort on its own, the tests) the table is this process's only.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from routr_ray.edge.next_hop import NextHop

__all__ = ["HoldDown", "up_first"]

Key = tuple[str, str, int]
MAX_OUTBOX = 256


def _key(transport: str, host: str, port: int) -> Key:
    return transport.lower(), host.strip("[]").lower(), port


class HoldDown:
    def __init__(self, seconds: float = 30.0, *, clock: Callable[[], float] = time.monotonic,
                 max_entries: int = 4096, on_mark: Callable[[], None] | None = None) -> None:
        self.seconds = seconds
        self.clock = clock
        self.max_entries = max_entries
        self.on_mark = on_mark
        self._until: OrderedDict[Key, float] = OrderedDict()  # marked here
        self._shared: dict[Key, float] = {}  # the cluster's (math.inf: down by keepalive)
        self._outbox: list[tuple[str, str, int, float]] = []

    def mark(self, transport: str, host: str, port: int) -> None:
        key = _key(transport, host, port)
        self._until[key] = self.clock() + self.seconds
        self._until.move_to_end(key)
        while len(self._until) > self.max_entries:
            self._until.popitem(last=False)
        if len(self._outbox) < MAX_OUTBOX:
            self._outbox.append((*key, self.seconds))
            if self.on_mark is not None:
                self.on_mark()

    def take_marks(self) -> list[tuple[str, str, int, float]]:
        """The marks made here since the last call: (transport, host, port, seconds), for the cluster."""
        marks, self._outbox = self._outbox, []
        return marks

    def apply_shared(self, held: Iterable[tuple[str, str, int, float]], down: Iterable[Key] = ()) -> None:
        """The cluster's table: ``held`` (transport, host, port, seconds left) and ``down`` (failed their
        keepalive: held until a newer table says otherwise). Replaces the previous one."""
        now = self.clock()
        shared = {_key(t, h, p): now + s for t, h, p, s in held if s > 0}
        shared.update((_key(t, h, p), math.inf) for t, h, p in down)
        self._shared = shared

    def is_down(self, transport: str, host: str, port: int) -> bool:
        if not self._until and not self._shared:
            return False
        key = _key(transport, host, port)
        now = self.clock()
        until = self._until.get(key)
        if until is not None:
            if until > now:
                return True
            del self._until[key]
        shared = self._shared.get(key)
        if shared is not None:
            if shared > now:
                return True
            del self._shared[key]
        return False

    def down(self) -> list[tuple[str, str, int, float]]:
        """(transport, host, port, seconds left) of every server held down now (``inf``: by the keepalive)."""
        now = self.clock()
        latest: dict[Key, float] = {}
        for table in (self._until, self._shared):
            for key, until in table.items():
                if until > now and until > latest.get(key, 0.0):
                    latest[key] = until
        return [(*key, until - now) for key, until in latest.items()]

    def count(self) -> int:
        """How many servers are held down now (the gauge)."""
        return len(self.down())

    def __len__(self) -> int:
        """Entries, some maybe expired or counted twice: a cheap "anything held down?" for the request path."""
        return len(self._until) + len(self._shared)


def up_first(hop: NextHop, hold_down: HoldDown) -> NextHop:
    """``hop`` and its alternates reordered: those not held down first (each group in its order)."""
    candidates = [hop._replace(alternates=()), *hop.alternates]
    up = [h for h in candidates if not hold_down.is_down(h.transport.value, h.host, h.port)]
    ordered = up + [h for h in candidates if h not in up]
    return ordered[0]._replace(alternates=tuple(ordered[1:]))
