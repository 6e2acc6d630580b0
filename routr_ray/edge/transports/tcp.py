"""TCP and TLS listeners: Content-Length framing over a byte stream (RFC 3261 §18.3), TLS via `ssl`.

Inbound connections are admitted against the connection table's caps, framed with the SIP core's
`StreamFramer`, and answered RFC 5626 §4.4.1 double-CRLF pings with a single CRLF. A framing error closes the
connection after the optional ``on_stream_error`` reply. Outbound connections to a next hop are opened on demand
by `send` and kept in the same table, so later messages to that address reuse them.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import TYPE_CHECKING

from routr_ray.edge.transports.base import (
    Address,
    Connection,
    Flow,
    Listener,
    MessageHandler,
    StreamErrorHandler,
    Target,
    TransportLimits,
    TransportName,
    bind_socket,
    is_ip_literal,
    is_wildcard,
    next_connection_id,
    normalize_host,
    sockaddr_to_address,
)
from routr_ray.sip import KEEPALIVE_PING, ParseError, StreamFramer

if TYPE_CHECKING:
    from routr_ray.edge.connections import ConnectionTable

log = logging.getLogger(__name__)

CRLF = b"\r\n"


class StreamConnection(Connection):
    """A TCP or TLS connection driven by an asyncio transport."""

    def __init__(
        self, transport: asyncio.Transport, flow: Flow, *, outbound: bool, listener: TcpListener
    ) -> None:
        super().__init__(
            flow.connection_id or next_connection_id(),
            flow,
            outbound=outbound,
            limits=listener.limits,
            counters=listener.counters,
        )
        self._transport = transport

    @property
    def is_open(self) -> bool:
        return not self.closed and not self._transport.is_closing()

    async def send(self, data: bytes) -> bool:
        return self.write(data)

    def write(self, data: bytes) -> bool:
        if not self.is_open:
            return False
        self._transport.write(data)
        if self._transport.get_write_buffer_size() > self.limits.max_write_buffer:
            # the peer does not read: drop it rather than buffer without bound
            self.counters.slow_readers += 1
            log.debug("dropping %s: %d unsent bytes", self.flow, self._transport.get_write_buffer_size())
            self.abort()
            return False
        self.touch()
        return True

    def close(self) -> None:
        if not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        self._transport.abort()


class _StreamProtocol(asyncio.Protocol):
    def __init__(self, listener: TcpListener, *, outbound: bool) -> None:
        self.listener = listener
        self.outbound = outbound
        self.framer = StreamFramer(max_message_size=listener.limits.max_message_size)
        self.connection: StreamConnection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports (what a Ray actor runs on) are not asyncio.Transport.
        listener = self.listener
        remote = sockaddr_to_address(transport.get_extra_info("peername"))
        if not self.outbound:
            refusal = listener.connections.admit(remote[0])
            if refusal is not None:
                if refusal == "total":
                    listener.counters.connections_over_total_cap += 1
                else:
                    listener.counters.connections_over_source_cap += 1
                log.debug("refusing %s connection from %s:%d (cap: %s)", listener.transport, *remote, refusal)
                transport.abort()
                return
        local = sockaddr_to_address(transport.get_extra_info("sockname"))
        transport.set_write_buffer_limits(high=listener.limits.max_write_buffer)
        flow = Flow(listener.transport, remote[0], remote[1], local[0], local[1], next_connection_id())
        conn = StreamConnection(transport, flow, outbound=self.outbound, listener=listener)
        self.connection = conn
        listener.connections.add(conn)
        listener._own.add(conn)
        conn.start_timers()

    def data_received(self, data: bytes) -> None:
        conn = self.connection
        if conn is None or not conn.is_open:
            return
        try:
            units = self.framer.feed(data)
        except ParseError as exc:
            self._framing_error(conn, exc)
            return
        for unit in units:
            if not conn.is_open:
                return
            if unit is KEEPALIVE_PING:
                # RFC 5626 §4.4.1: answer a double-CRLF ping with a single CRLF pong
                self.listener.counters.keepalives += 1
                conn.touch()
                conn.write(CRLF)
            else:
                assert isinstance(unit, bytes)
                conn.message_received()
                self.listener._deliver(unit, conn.flow)

    def _framing_error(self, conn: StreamConnection, exc: ParseError) -> None:
        counters = self.listener.counters
        if exc.status == 413 or "too large" in exc.reason:
            counters.oversize_messages += 1
        else:
            counters.framing_errors += 1
        reply: bytes | None = None
        handler = self.listener.on_stream_error
        if handler is not None:
            try:
                reply = handler(conn.flow, exc)
            except Exception:
                log.exception("on_stream_error callback failed for %s", conn.flow)
        if reply:
            conn.write(reply)
        conn.close()

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self.connection
        if conn is None:
            return
        conn.closed = True
        conn.stop_timers()
        self.listener.connections.remove(conn)
        self.listener._own.discard(conn)


class TcpListener(Listener):
    """SIP over TCP. `TlsListener` is the same with an SSL context."""

    transport = TransportName.TCP

    def __init__(
        self,
        host: str,
        port: int,
        on_message: MessageHandler,
        *,
        limits: TransportLimits | None = None,
        connections: ConnectionTable | None = None,
        on_stream_error: StreamErrorHandler | None = None,
        ssl_context: ssl.SSLContext | None = None,
        client_ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(
            host, port, on_message, limits=limits, connections=connections, on_stream_error=on_stream_error
        )
        self.ssl_context = ssl_context
        self.client_ssl_context = client_ssl_context
        self._server: asyncio.Server | None = None
        self._own: set[StreamConnection] = set()
        self._connecting: dict[Address, asyncio.Future[StreamConnection | None]] = {}

    @property
    def is_listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        sock = bind_socket(self.host, self.port, socket.SOCK_STREAM, self.reuse_port)
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _StreamProtocol(self, outbound=False),
                sock=sock,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.limits.handshake_timeout if self.ssl_context else None,
                backlog=1024,
            )
        except BaseException:
            sock.close()
            raise
        self._local = sockaddr_to_address(sock.getsockname())
        log.info("%s listening on %s:%d", self.transport, *self._local)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._own):
            conn.abort()
        for pending in self._connecting.values():
            pending.cancel()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def send(self, target: Target, data: bytes, *, server_name: str | None = None) -> bool:
        conn = await self._connection_for(target, server_name)
        if conn is None:
            self.counters.send_failures += 1
            return False
        return conn.write(data)

    async def _connection_for(self, target: Target, server_name: str | None) -> StreamConnection | None:
        table = self.connections
        if isinstance(target, Flow):
            if target.transport != self.transport:
                return None
            if target.connection_id is not None:
                conn = table.by_id(target.connection_id)
                if isinstance(conn, StreamConnection) and conn.is_open:
                    return conn
            found = table.by_remote(self.transport, target.remote_host, target.remote_port)
            return found if isinstance(found, StreamConnection) and found.is_open else None
        host, port = normalize_host(target[0]), int(target[1])
        found = table.by_remote(self.transport, host, port)
        if isinstance(found, StreamConnection) and found.is_open:
            return found
        return await self._connect((host, port), server_name)

    async def _connect(self, address: Address, server_name: str | None) -> StreamConnection | None:
        """Open (once, even for concurrent senders) an outbound connection to ``address``."""
        pending = self._connecting.get(address)
        if pending is not None:
            return await asyncio.shield(pending)
        if not is_ip_literal(address[0]):
            log.debug("%s connect to %r: not an IP literal", self.transport, address[0])
            return None
        loop = asyncio.get_running_loop()
        pending = loop.create_future()
        self._connecting[address] = pending
        try:
            conn = await self._open(address, server_name)
            if not pending.done():  # stop() may have cancelled it meanwhile
                pending.set_result(conn)
            return conn
        except asyncio.CancelledError:
            pending.cancel()
            raise
        finally:
            if not pending.done():
                pending.set_result(None)
            self._connecting.pop(address, None)

    async def _open(self, address: Address, server_name: str | None) -> StreamConnection | None:
        loop = asyncio.get_running_loop()
        host, port = address
        own = normalize_host(self.host)
        # leave from the listener's own address when it is bound to one (same family as the target only)
        local_addr = None if is_wildcard(own) or (":" in own) != (":" in host) else (own, 0)
        kwargs: dict[str, object] = {}
        if self.ssl_context is not None:
            kwargs["ssl"] = self.client_ssl_context or ssl.create_default_context()
            kwargs["server_hostname"] = server_name or host
            kwargs["ssl_handshake_timeout"] = self.limits.connect_timeout
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _StreamProtocol(self, outbound=True), host, port, local_addr=local_addr, **kwargs
                ),
                timeout=self.limits.connect_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            self.counters.connect_failures += 1
            log.debug("%s connect to %s:%d failed: %r", self.transport, host, port, exc)
            return None
        assert isinstance(protocol, _StreamProtocol)
        return protocol.connection


class TlsListener(TcpListener):
    """SIP over TLS (RFC 3261 §26.2). ``ssl_context`` is required (see routr_ray.edge.tlsutil)."""

    transport = TransportName.TLS

    async def start(self) -> None:
        if self.ssl_context is None:
            raise ValueError("the tls listener needs an ssl_context (routr_ray.edge.tlsutil.server_context)")
        await super().start()
