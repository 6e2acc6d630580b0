"""WS and WSS listeners: SIP over WebSocket (RFC 7118) with the `websockets` asyncio server.

- The ``sip`` subprotocol is required and echoed (RFC 7118 §4.1, §4.2): a handshake without it is refused with
  HTTP 400.
- Each WebSocket message carries exactly one SIP message (RFC 7118 §4.2); text and binary frames are accepted,
  replies are sent as text frames (binary when the bytes are not UTF-8).
- Keepalives: a message that is exactly a double CRLF is answered with a CRLF (what SIP.js sends); other
  CRLF-only messages are ignored.
- Guards: connection caps checked before the handshake (HTTP 503), ``max_size`` = the maximum SIP message
  size (the library closes with 1009 above it), no per-message compression, idle and first-message timeouts,
  bounded write buffer.
WS outbound connections are not opened: `send` only answers over connections that peers opened.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed, NegotiationError
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from routr_ray.edge.transports.base import (
    Connection,
    Flow,
    Listener,
    MessageHandler,
    StreamErrorHandler,
    Target,
    TransportLimits,
    TransportName,
    bind_socket,
    next_connection_id,
    sockaddr_to_address,
)
from routr_ray.sip import is_keepalive_datagram

if TYPE_CHECKING:
    from routr_ray.edge.connections import ConnectionTable

log = logging.getLogger(__name__)
# websockets logs every connection open/close at INFO; under a connection flood that is a line per attempt.
# Its own logger is kept at WARNING (raise it to DEBUG to trace handshakes).
library_log = logging.getLogger(f"{__name__}.library")
library_log.setLevel(logging.WARNING)

SIP_SUBPROTOCOL = Subprotocol("sip")
PING = b"\r\n\r\n"
PONG = "\r\n"
CLOSE_MESSAGE_TOO_BIG = 1009


class WsConnection(Connection):
    """One accepted WebSocket connection."""

    def __init__(self, ws: ServerConnection, flow: Flow, listener: WsListener) -> None:
        super().__init__(
            flow.connection_id or 0, flow, outbound=False, limits=listener.limits, counters=listener.counters
        )
        self.ws = ws
        self._closing: asyncio.Task[None] | None = None

    async def send(self, data: bytes) -> bool:
        if self.closed:
            return False
        transport = self.ws.transport
        if transport.get_write_buffer_size() > self.limits.max_write_buffer:
            self.counters.slow_readers += 1
            self.abort()
            return False
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            message: str | bytes = data
        else:
            message = text
        try:
            await asyncio.wait_for(self.ws.send(message), timeout=self.limits.send_timeout)
        except TimeoutError:
            self.counters.slow_readers += 1
            self.abort()
            return False
        except ConnectionClosed:
            return False
        self.touch()
        return True

    def close(self) -> None:
        if not self.closed and self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self.ws.close())

    def abort(self) -> None:
        self.closed = True
        self.ws.transport.abort()


class WsListener(Listener):
    """SIP over WebSocket. `WssListener` is the same with an SSL context."""

    transport = TransportName.WS

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
    ) -> None:
        super().__init__(
            host, port, on_message, limits=limits, connections=connections, on_stream_error=on_stream_error
        )
        self.ssl_context = ssl_context
        self._server: Server | None = None
        self._own: set[WsConnection] = set()

    @property
    def is_listening(self) -> bool:
        return self._server is not None and self._server.is_serving()

    async def start(self) -> None:
        sock = bind_socket(self.host, self.port, socket.SOCK_STREAM, self.reuse_port)
        limits = self.limits
        try:
            self._server = await serve(
                self._serve_connection,
                sock=sock,
                ssl=self.ssl_context,
                subprotocols=[SIP_SUBPROTOCOL],
                select_subprotocol=self._select_subprotocol,
                process_request=self._admit,
                compression=None,
                open_timeout=limits.handshake_timeout,
                max_size=limits.max_message_size,
                max_queue=16,
                write_limit=limits.max_write_buffer,
                ping_interval=None,  # liveness is the idle timeout plus the peer's own keepalives
                server_header=None,
                logger=library_log,
                backlog=1024,
            )
        except BaseException:
            sock.close()
            raise
        self._local = sockaddr_to_address(sock.getsockname())
        log.info("%s listening on %s:%d", self.transport, *self._local)

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close(close_connections=False)
        for conn in list(self._own):
            conn.abort()
        await self._server.wait_closed()
        self._server = None

    def _select_subprotocol(self, ws: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        # RFC 7118 §4.1: the client MUST include "sip" in Sec-WebSocket-Protocol; without it, no SIP here.
        if SIP_SUBPROTOCOL in offered:
            return SIP_SUBPROTOCOL
        self.counters.handshake_rejects += 1
        raise NegotiationError("the sip subprotocol is required (RFC 7118)")

    def _admit(self, ws: ServerConnection, request: Request) -> Response | None:
        host, _ = sockaddr_to_address(ws.remote_address)
        refusal = self.connections.admit(host)
        if refusal is None:
            return None
        if refusal == "total":
            self.counters.connections_over_total_cap += 1
        else:
            self.counters.connections_over_source_cap += 1
        return ws.respond(503, "Too many connections\n")

    async def _serve_connection(self, ws: ServerConnection) -> None:
        remote = sockaddr_to_address(ws.remote_address)
        local = sockaddr_to_address(ws.local_address)
        flow = Flow(self.transport, remote[0], remote[1], local[0], local[1], next_connection_id())
        conn = WsConnection(ws, flow, self)
        self.connections.add(conn)
        self._own.add(conn)
        conn.start_timers()
        try:
            async for message in ws:
                data = message.encode("utf-8") if isinstance(message, str) else bytes(message)
                if is_keepalive_datagram(data):
                    self.counters.keepalives += 1
                    conn.touch()
                    if data == PING:
                        await ws.send(PONG)
                    continue
                conn.message_received()
                self._deliver(data, flow)
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == CLOSE_MESSAGE_TOO_BIG:
                self.counters.oversize_messages += 1
        finally:
            conn.closed = True
            conn.stop_timers()
            self.connections.remove(conn)
            self._own.discard(conn)

    async def send(self, target: Target, data: bytes, *, server_name: str | None = None) -> bool:
        conn: Connection | None = None
        if isinstance(target, Flow):
            if target.transport != self.transport:
                return False
            if target.connection_id is not None:
                conn = self.connections.by_id(target.connection_id)
            if conn is None:
                conn = self.connections.by_remote(self.transport, *target.remote)
        else:
            conn = self.connections.by_remote(self.transport, target[0], int(target[1]))
        if not isinstance(conn, WsConnection) or conn.closed:
            self.counters.send_failures += 1
            return False
        return await conn.send(data)


class WssListener(WsListener):
    """SIP over secure WebSocket (RFC 7118 §3). ``ssl_context`` is required."""

    transport = TransportName.WSS

    async def start(self) -> None:
        if self.ssl_context is None:
            raise ValueError("the wss listener needs an ssl_context (routr_ray.edge.tlsutil.server_context)")
        await super().start()
