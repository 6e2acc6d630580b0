"""The connection table: live stream connections by id and by (transport, remote host, remote port).

Responses and in-dialog requests for a peer that connected over TCP/TLS/WS/WSS must go back over the connection
that peer opened (RFC 3261 §18.2.2: "the server transport MUST use that connection"; RFC 7118 §5 for WebSocket
clients, whose Via host is a ``.invalid`` name). The EdgePort finds the connection by the id kept in the `Flow`
of the request, or by the ``received``/``rport`` address of the top Via.

The table also enforces the connection caps (in total and per source IP). One table may be shared by every
stream listener of an EdgePort so the caps cover all of them.

Admission policy (issue 14), for a new inbound connection from source S:

1. S already holds ``max_connections_per_source``: refused (``"source"``).
2. The table holds fewer than ``max_connections``: admitted.
3. The table is full: **fair share by eviction**. When some other source H holds more connections than S
   would after this one (count(H) > count(S) + 1), the idlest inbound connection of the heaviest such H (least
   recent message or keepalive) is closed and S is admitted; otherwise S is refused (``"total"``). Sources that
   ``is_protected`` names (trunks and peers, see ``routr_ray/config/trunk_sources.py``) are never evicted.

So a few sources holding the whole table (50 sources x 100 connections with keepalives) cannot lock out a new
client: each newcomer takes a slot from the heaviest holder, and the table converges on equal shares; once every
source holds about the same, a new source is refused rather than let it evict someone's only connection.
A connection is evicted only to admit one, never by a source that already holds as many.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from routr_ray.edge.transports.base import Connection, TransportName, next_connection_id, normalize_host

__all__ = ["ConnectionTable", "next_connection_id"]

# At most this many heaviest sources are examined for an evictable connection per admission (each examined
# source costs a scan of its connections, at most max_connections_per_source): a full table is cheap to refuse.
_MAX_SOURCES_EXAMINED = 16


class ConnectionTable:
    """Live connections, plus the admission rule for new inbound ones."""

    def __init__(
        self,
        *,
        max_connections: int = 10_000,
        max_connections_per_source: int = 100,
        is_protected: Callable[[str], bool] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.max_connections_per_source = max_connections_per_source
        self.is_protected = is_protected  # sources never evicted (trunks, peers)
        self.evictions = 0
        self._by_id: dict[int, Connection] = {}
        # usually one connection per remote address; two listeners of one transport could share one
        self._by_remote: dict[tuple[TransportName, str, int], list[Connection]] = {}
        self._per_source: dict[str, int] = {}
        self._by_source: dict[str, dict[int, Connection]] = {}
        self._sources_by_count: dict[int, dict[str, None]] = {}  # count -> sources holding that many
        self._max_count = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._by_id.values()))

    def count_from(self, host: str) -> int:
        """Live connections whose remote end is ``host`` (inbound and outbound, every transport)."""
        return self._per_source.get(normalize_host(host), 0)

    def admit(self, host: str) -> str | None:
        """Admit a new inbound connection from ``host`` (the policy in the module docstring): None to accept it,
        possibly after closing another source's idlest connection; else why it is refused: ``"source"`` (this
        source IP has its maximum) or ``"total"`` (the table is full of sources holding no more than it)."""
        if self.count_from(host) >= self.max_connections_per_source:
            return "source"
        if len(self._by_id) < self.max_connections:
            return None
        return None if self._evict_for(normalize_host(host)) else "total"

    def add(self, connection: Connection) -> None:
        self._by_id[connection.id] = connection
        self._by_remote.setdefault(self._key(connection.transport, *connection.remote), []).append(connection)
        source = connection.remote[0]
        self._by_source.setdefault(source, {})[connection.id] = connection
        count = self._per_source.get(source, 0)
        self._per_source[source] = count + 1
        self._recount(source, count, count + 1)

    def remove(self, connection: Connection) -> None:
        if self._by_id.pop(connection.id, None) is None:
            return
        key = self._key(connection.transport, *connection.remote)
        same_remote = self._by_remote.get(key, [])
        if connection in same_remote:
            same_remote.remove(connection)
        if not same_remote:
            self._by_remote.pop(key, None)
        source = connection.remote[0]
        of_source = self._by_source.get(source)
        if of_source is not None:
            of_source.pop(connection.id, None)
            if not of_source:
                del self._by_source[source]
        count = self._per_source.get(source, 0)
        if count > 1:
            self._per_source[source] = count - 1
        else:
            self._per_source.pop(source, None)
        self._recount(source, count, count - 1)

    def by_id(self, connection_id: int) -> Connection | None:
        return self._by_id.get(connection_id)

    def by_remote(self, transport: TransportName | str, host: str, port: int) -> Connection | None:
        """The live connection of ``transport`` whose remote end is host:port (Via received/rport)."""
        same_remote = self._by_remote.get(self._key(transport, host, port))
        return same_remote[-1] if same_remote else None

    # eviction -----------------------------------------------------------------------------------------------

    def _recount(self, source: str, old: int, new: int) -> None:
        if old > 0:
            holders = self._sources_by_count.get(old)
            if holders is not None:
                holders.pop(source, None)
                if not holders:
                    del self._sources_by_count[old]
        if new > 0:
            self._sources_by_count.setdefault(new, {})[source] = None
        if new > self._max_count:
            self._max_count = new
        while self._max_count > 0 and self._max_count not in self._sources_by_count:
            self._max_count -= 1

    def _evict_for(self, host: str) -> bool:
        """Close the idlest inbound connection of the heaviest source holding more than ``host`` will (its count
        + 1); False when there is none (or none evictable among the first few examined)."""
        wanted = self._per_source.get(host, 0) + 1
        examined = 0
        count = self._max_count
        while count > wanted and examined < _MAX_SOURCES_EXAMINED:
            for source in list(self._sources_by_count.get(count, ())):
                if examined >= _MAX_SOURCES_EXAMINED:
                    break
                examined += 1
                if source == host or (self.is_protected is not None and self.is_protected(source)):
                    continue
                victim = self._idlest_inbound(source)
                if victim is not None:
                    self.remove(victim)  # at once: the slot is free before the peer's close is even seen
                    victim.abort()
                    self.evictions += 1
                    return True
            count -= 1
        return False

    def _idlest_inbound(self, source: str) -> Connection | None:
        candidates = [c for c in self._by_source.get(source, {}).values() if not c.outbound and not c.closed]
        return min(candidates, key=lambda c: c.last_activity, default=None)

    @staticmethod
    def _key(transport: TransportName | str, host: str, port: int) -> tuple[TransportName, str, int]:
        return (TransportName(str(transport).lower()), normalize_host(host), int(port))
