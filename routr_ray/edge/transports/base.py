"""The transport contract: what every listener (udp, tcp, tls, ws, wss) offers to the EdgePort.

A listener moves bytes and nothing else. Inbound, it hands one complete SIP message at a time to a single
callback, ``on_message(data, flow)``, where the `Flow` says where the message came from (and, on a stream
transport, over which connection). Outbound, ``await send(target, data)`` writes bytes to a `Flow` (back over the
connection it names) or to an ``(ip, port)`` address (reusing an open connection to it, or opening one on
demand for TCP/TLS). SIP semantics (parsing, Via, transactions) live above this layer.

The callback is synchronous and must not block: it is called from the event loop's protocol callbacks, so the
EdgePort should queue the message or schedule a task.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, NamedTuple

if TYPE_CHECKING:
    from routr_ray.edge.connections import ConnectionTable
    from routr_ray.sip import ParseError

log = logging.getLogger(__name__)


class TransportName(StrEnum):
    """Transport names as they appear in the EdgePort config's ``transport[].protocol``."""

    UDP = "udp"
    TCP = "tcp"
    TLS = "tls"
    WS = "ws"
    WSS = "wss"

    @property
    def is_stream(self) -> bool:
        return self is not TransportName.UDP

    @property
    def is_secure(self) -> bool:
        return self in (TransportName.TLS, TransportName.WSS)

    @property
    def via_name(self) -> str:
        """The transport token of a Via header (RFC 3261 §20.42, RFC 7118 §5.2): UDP, TCP, TLS, WS, WSS."""
        return self.value.upper()


DEFAULT_PORTS: dict[TransportName, int] = {
    TransportName.UDP: 5060,
    TransportName.TCP: 5060,
    TransportName.TLS: 5061,
    TransportName.WS: 5062,
    TransportName.WSS: 5063,
}

Address = tuple[str, int]


class Flow(NamedTuple):
    """Where a message came from (RFC 5626 §3.1 "flow"): transport, both ends, and the connection if any.

    Hosts are IP literals without brackets; IPv4-mapped IPv6 peers (seen on dual-stack sockets) are reported as
    plain IPv4. ``connection_id`` is None for UDP. For a listener bound to a wildcard address, UDP flows carry
    the wildcard as the local host (the datagram's destination address is not asked from the kernel).
    (A named tuple: one is made for every datagram, and a frozen dataclass costs twice as much to build.)
    """

    transport: TransportName
    remote_host: str
    remote_port: int
    local_host: str
    local_port: int
    connection_id: int | None = None

    @property
    def remote(self) -> Address:
        return (self.remote_host, self.remote_port)

    @property
    def local(self) -> Address:
        return (self.local_host, self.local_port)


Target = Flow | Address
MessageHandler = Callable[[bytes, Flow], None]
# Called when a stream's framing breaks; may return bytes (e.g. a 400 response) to write before the close.
StreamErrorHandler = Callable[[Flow, "ParseError"], bytes | None]


@dataclass(slots=True)
class TransportLimits:
    """Guards of the transport layer (issue 3, item 5). All times in seconds, sizes in bytes."""

    # bigger stream messages close the connection; bigger datagrams are dropped
    max_message_size: int = 65535
    # a connection with no complete message or keepalive (in or out) for this long is closed
    idle_timeout: float = 300.0
    # an inbound connection that never completes a message is closed sooner
    first_message_timeout: float = 30.0
    # a peer that does not read is dropped when its unsent bytes exceed this
    max_write_buffer: int = 256 * 1024
    # outbound TCP/TLS connect (and its TLS handshake)
    connect_timeout: float = 5.0
    # inbound TLS and WebSocket opening handshakes
    handshake_timeout: float = 10.0
    # a WebSocket send that cannot complete in this time drops the connection
    send_timeout: float = 5.0


@dataclass(slots=True)
class TransportCounters:
    """Rejections and drops by reason, as plain ints (the metrics layer reads them; see `as_dict`)."""

    connections_over_total_cap: int = 0
    connections_over_source_cap: int = 0
    idle_timeouts: int = 0
    first_message_timeouts: int = 0
    oversize_messages: int = 0
    framing_errors: int = 0
    slow_readers: int = 0
    handshake_rejects: int = 0
    icmp_errors: int = 0
    connect_failures: int = 0
    send_failures: int = 0
    keepalives: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_normalized: dict[str, str] = {}
_MAX_NORMALIZED = 65536


def normalize_host(host: str) -> str:
    """Canonical text of an IP literal: brackets and zone-less case folded, IPv4-mapped IPv6 → IPv4.

    Non-literals (host names) are returned lower-cased and unbracketed. Answers are memoised (per-message
    callers see few distinct hosts; the memo is cleared when it reaches its bound, so a spoofed flood costs
    only the parse it would have cost anyway).
    """
    cached = _normalized.get(host)
    if cached is None:
        cached = _normalize(host)
        if len(_normalized) >= _MAX_NORMALIZED:
            _normalized.clear()
        _normalized[host] = cached
    return cached


def _normalize(host: str) -> str:
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def sockaddr_to_address(sockaddr: tuple) -> Address:  # type: ignore[type-arg]
    """(host, port) from a socket address tuple (IPv4 2-tuple or IPv6 4-tuple), host normalised."""
    return (normalize_host(str(sockaddr[0])), int(sockaddr[1]))


_connection_ids = itertools.count(1)


def next_connection_id() -> int:
    """A connection id unique within this process (never reused)."""
    return next(_connection_ids)


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def bind_socket(host: str, port: int, kind: socket.SocketKind, reuse_port: bool = False) -> socket.socket:
    """A bound, non-blocking socket for ``host:port``; ``::`` is dual-stack (IPv4 clients arrive mapped).
    ``reuse_port``: SO_REUSEPORT, so several EdgePort workers share the port (the kernel spreads datagrams and
    connections over them by source address and port).

    asyncio's create_server sets IPV6_V6ONLY on every IPv6 socket, which would make a ``bindAddr: "::"`` deaf
    to IPv4; binding here keeps the usual meaning of ``::`` (all addresses, both families).
    """
    host = normalize_host(host) if host else "0.0.0.0"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if host == "::" else 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def is_wildcard(host: str) -> bool:
    return normalize_host(host) in ("0.0.0.0", "::")


class Connection(ABC):
    """One live stream connection (TCP, TLS, WS or WSS), inbound or opened by us.

    Tracks activity for the idle and first-message timeouts: activity is a complete message or keepalive
    received, or a message sent; bytes that never complete a message do not count, so a peer that dribbles an
    endless message is closed by the idle timeout.
    """

    def __init__(
        self,
        connection_id: int,
        flow: Flow,
        *,
        outbound: bool,
        limits: TransportLimits,
        counters: TransportCounters,
    ) -> None:
        self.id = connection_id
        self.flow = flow
        self.outbound = outbound
        self.limits = limits
        self.counters = counters
        self.messages_received = 0
        self.closed = False
        self._loop = asyncio.get_running_loop()
        self.opened_at = self._loop.time()
        self.last_activity = self.opened_at
        self._timer: asyncio.TimerHandle | None = None

    @property
    def transport(self) -> TransportName:
        return self.flow.transport

    @property
    def remote(self) -> Address:
        return self.flow.remote

    @abstractmethod
    async def send(self, data: bytes) -> bool:
        """Write one message; False when the connection is closed or was dropped for not reading."""

    @abstractmethod
    def close(self) -> None:
        """Start an orderly close (pending writes are flushed when possible)."""

    @abstractmethod
    def abort(self) -> None:
        """Drop the connection at once, discarding unsent data."""

    def touch(self) -> None:
        self.last_activity = self._loop.time()

    def message_received(self) -> None:
        self.messages_received += 1
        self.last_activity = self._loop.time()

    def start_timers(self) -> None:
        self._schedule(self._next_deadline())

    def stop_timers(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _first_message_deadline(self) -> float | None:
        if self.outbound or self.messages_received:
            return None
        return self.opened_at + self.limits.first_message_timeout

    def _next_deadline(self) -> float:
        deadline = self.last_activity + self.limits.idle_timeout
        first = self._first_message_deadline()
        return deadline if first is None else min(deadline, first)

    def _schedule(self, when: float) -> None:
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        if self.closed:
            return
        now = self._loop.time()
        first = self._first_message_deadline()
        if first is not None and now >= first:
            self.counters.first_message_timeouts += 1
            log.debug(
                "closing %s: no complete message within %.1fs", self.flow, self.limits.first_message_timeout
            )
            self.abort()
            return
        if now >= self.last_activity + self.limits.idle_timeout:
            self.counters.idle_timeouts += 1
            log.debug("closing %s: idle for %.1fs", self.flow, self.limits.idle_timeout)
            self.close()
            return
        self._schedule(self._next_deadline())


class Listener(ABC):
    """One bound transport. Subclasses: UdpListener, TcpListener, TlsListener, WsListener, WssListener."""

    transport: ClassVar[TransportName]

    reuse_port: bool = False  # SO_REUSEPORT: set before start() when EdgePort workers share the port

    def __init__(
        self,
        host: str,
        port: int,
        on_message: MessageHandler,
        *,
        limits: TransportLimits | None = None,
        connections: ConnectionTable | None = None,
        on_stream_error: StreamErrorHandler | None = None,
    ) -> None:
        from routr_ray.edge.connections import ConnectionTable

        self.host = host or "0.0.0.0"
        self.port = port
        self.on_message = on_message
        self.on_stream_error = on_stream_error
        self.limits = limits or TransportLimits()
        self.connections = connections if connections is not None else ConnectionTable()
        self.counters = TransportCounters()
        self._local: Address | None = None

    @property
    def local_address(self) -> Address:
        """The bound (host, port); the port is the real one when 0 was asked. Raises before start()."""
        if self._local is None:
            raise RuntimeError(f"{self.transport} listener is not started")
        return self._local

    @property
    @abstractmethod
    def is_listening(self) -> bool:
        """True while the socket is bound (liveness)."""

    @abstractmethod
    async def start(self) -> None:
        """Bind and start serving. Raises OSError when the address cannot be bound."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop listening and close this listener's connections."""

    @abstractmethod
    async def send(self, target: Target, data: bytes, *, server_name: str | None = None) -> bool:
        """Send one message. Returns False when it could not be handed to the kernel.

        ``target`` is a `Flow` (reply over the connection it names; if that connection is gone, another live
        connection to the same remote address is used; no new connection is opened) or an ``(ip, port)``
        address (an open connection to it is reused; TCP/TLS open one on demand). Hosts must be IP literals:
        name resolution (RFC 3263) belongs to the caller. ``server_name`` is the name a TLS peer's certificate
        is checked against (defaults to the IP literal).
        """

    def _deliver(self, data: bytes, flow: Flow) -> None:
        try:
            self.on_message(data, flow)
        except Exception:
            log.exception("on_message callback failed for a message from %s", flow)
