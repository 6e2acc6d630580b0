"""The connection table: live stream connections by id and by (transport, remote host, remote port).

Responses and in-dialog requests for a peer that connected over TCP/TLS/WS/WSS must go back over the connection
that peer opened (RFC 3261 §18.2.2: "the server transport MUST use that connection"; RFC 7118 §5 for WebSocket
clients, whose Via host is a ``.invalid`` name). The EdgePort finds the connection by the id kept in the `Flow`
of the request, or by the ``received``/``rport`` address of the top Via.

The table also enforces the connection caps (in total and per source IP). One table may be shared by every
stream listener of an EdgePort so the caps cover all of them.
"""

from __future__ import annotations

from collections.abc import Iterator

from routr_ray.edge.transports.base import Connection, TransportName, next_connection_id, normalize_host

__all__ = ["ConnectionTable", "next_connection_id"]


class ConnectionTable:
    """Live connections, plus the admission rule for new inbound ones."""

    def __init__(self, *, max_connections: int = 10_000, max_connections_per_source: int = 100) -> None:
        self.max_connections = max_connections
        self.max_connections_per_source = max_connections_per_source
        self._by_id: dict[int, Connection] = {}
        # usually one connection per remote address; two listeners of one transport could share one
        self._by_remote: dict[tuple[TransportName, str, int], list[Connection]] = {}
        self._per_source: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._by_id.values()))

    def count_from(self, host: str) -> int:
        """Live connections whose remote end is ``host`` (inbound and outbound, every transport)."""
        return self._per_source.get(normalize_host(host), 0)

    def admission_refusal(self, host: str) -> str | None:
        """Why a new inbound connection from ``host`` must be refused, or None to accept it.

        Reasons: ``"total"`` (the table is full) or ``"source"`` (this source IP has its maximum).
        """
        if len(self._by_id) >= self.max_connections:
            return "total"
        if self.count_from(host) >= self.max_connections_per_source:
            return "source"
        return None

    def add(self, connection: Connection) -> None:
        self._by_id[connection.id] = connection
        self._by_remote.setdefault(self._key(connection.transport, *connection.remote), []).append(connection)
        source = connection.remote[0]
        self._per_source[source] = self._per_source.get(source, 0) + 1

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
        left = self._per_source.get(source, 0) - 1
        if left > 0:
            self._per_source[source] = left
        else:
            self._per_source.pop(source, None)

    def by_id(self, connection_id: int) -> Connection | None:
        return self._by_id.get(connection_id)

    def by_remote(self, transport: TransportName | str, host: str, port: int) -> Connection | None:
        """The live connection of ``transport`` whose remote end is host:port (Via received/rport)."""
        same_remote = self._by_remote.get(self._key(transport, host, port))
        return same_remote[-1] if same_remote else None

    @staticmethod
    def _key(transport: TransportName | str, host: str, port: int) -> tuple[TransportName, str, int]:
        return (TransportName(str(transport).lower()), normalize_host(host), int(port))
