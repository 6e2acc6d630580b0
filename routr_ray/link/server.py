"""LinkServer: answers call frames with a handler's bytes, many calls in flight per connection.

The first frame of a connection must be ``HELLO`` carrying the server's token (compared in constant time); any
other first frame, a wrong token or a malformed frame closes the connection. Each ``CALL`` runs the handler as its
own task, so a slow batch does not hold up the ones behind it; its result goes back as ``REPLY`` (or ``ERROR`` with
the exception's text). A connection may have at most ``max_calls`` calls running; beyond that a call is answered
``ERROR`` at once (backpressure instead of unbounded tasks).

Before the token is checked nothing is buffered beyond one small frame (DESIGN §6b): a first frame that is not a
``HELLO`` of at most ``hello_limit`` bytes is refused as soon as its 9-byte header arrives (a HELLO declaring 64 MiB
is closed after those 9 bytes), a connection that has not authenticated within ``handshake_timeout`` seconds is
closed, at most ``max_pending`` connections may be waiting to authenticate (a new one evicts the oldest, so a flood
of idle connections cannot lock the cluster's own clients out), and at most ``max_connections`` may be open at all
(beyond that a new connection is closed at once; the client then falls back to a Ray call).

:meth:`LinkServer.drain` is the graceful stop (a replica Serve stops): no new connections, every connection told
to send no more (``GOAWAY``, :mod:`.frames`), the calls that arrived answered, each connection closed once its
client acknowledged (or left) and its calls are answered; what is still open after the timeout is closed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable

from routr_ray.observability.ratelimit import RateLimitedLog

from .frames import (
    CALL,
    ERROR,
    GOAWAY,
    GOAWAY_ACK,
    GOAWAY_ID,
    HEADER,
    HELLO,
    MAX_FRAME,
    REPLY,
    FrameError,
    FrameReader,
    frame,
)

log = logging.getLogger(__name__)

Handler = Callable[[bytes], Awaitable[bytes]]

HELLO_LIMIT = 256  # bytes of HELLO payload (tokens are 32): all a peer may make us hold before it authenticates
HANDSHAKE_TIMEOUT_S = 5.0
MAX_PENDING = 64  # connections waiting to authenticate
MAX_CONNECTIONS = 1024  # a server's clients are the cluster's processes: one connection each per event loop


class LinkServer:
    def __init__(self, handler: Handler, *, token: bytes, host: str = "127.0.0.1", port: int = 0,
                 max_frame: int = MAX_FRAME, max_calls: int = 4096, hello_limit: int = HELLO_LIMIT,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT_S, max_pending: int = MAX_PENDING,
                 max_connections: int = MAX_CONNECTIONS) -> None:
        self.handler = handler
        self.token = token
        self.host = host
        self.port = port
        self.max_frame = max_frame
        self.max_calls = max_calls
        self.hello_limit = hello_limit
        self.handshake_timeout = handshake_timeout
        self.max_pending = max_pending
        self.max_connections = max_connections
        self._server: asyncio.Server | None = None
        self._connections: set[_ServerProtocol] = set()
        self._pending: dict[_ServerProtocol, None] = {}  # not yet authenticated, oldest first
        self.calls = 0
        self.rejected = 0
        self.refused_connections = 0  # closed before authenticating: cap, eviction, timeout, bad or wrong HELLO
        self.draining = False
        self._drained: asyncio.Event | None = None
        self.errors = RateLimitedLog(log, interval=1.0)  # whatever a peer sends, a bounded number of lines

    async def start(self) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ServerProtocol(self), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.host, self.port

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def connections(self) -> int:
        return len(self._connections)

    @property
    def pending(self) -> int:
        """Connections open but not authenticated yet."""
        return len(self._pending)

    @property
    def running(self) -> int:
        """Calls being answered, over all connections."""
        return sum(len(conn.running) for conn in self._connections)

    async def drain(self, within: float) -> bool:
        """Stop taking work and finish what arrived (see the module docstring), then :meth:`close`; True when every
        connection finished within ``within`` seconds (else the rest is closed with its calls unanswered)."""
        self.draining = True
        self._drained = asyncio.Event()
        if self._server is not None:
            self._server.close()  # the listening socket: connections already open stay
        for conn in list(self._connections):
            if conn.authenticated:
                conn.go_away()
            else:
                conn.abort()  # nothing of it can be in flight
        self._check_drained()
        try:
            await asyncio.wait_for(self._drained.wait(), within)
            finished = True
        except TimeoutError:
            finished = False
        await self.close()
        return finished

    def _check_drained(self) -> None:
        if self._drained is not None and not self._connections:
            self._drained.set()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for conn in list(self._connections):
                conn.abort()
            await self._server.wait_closed()
            self._server = None



class _ServerProtocol(asyncio.Protocol):
    def __init__(self, server: LinkServer) -> None:
        self.server = server
        self.reader: FrameReader | None = None  # made once the peer authenticated
        self.hello = bytearray()  # what arrived before: at most one read beyond a small HELLO
        self.transport: asyncio.Transport | None = None
        self.authenticated = False
        self.running: set[asyncio.Task[None]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.going_away = False
        self.acknowledged = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        server = self.server
        if server.draining:
            self._refuse("draining")
            return
        if len(server._connections) >= server.max_connections:
            self._refuse("connection cap (%d) reached", server.max_connections)
            return
        if len(server._pending) >= server.max_pending:
            oldest = next(iter(server._pending))
            oldest._refuse("evicted: %d connections waiting to authenticate", server.max_pending)
        server._connections.add(self)
        server._pending[self] = None
        self._timer = asyncio.get_running_loop().call_later(server.handshake_timeout, self._handshake_expired)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        self.server._pending.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for task in self.running:
            task.cancel()
        self.running.clear()
        self.transport = None
        self.server._check_drained()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def go_away(self) -> None:
        """Tell the client to send no more calls here (it answers GOAWAY_ACK)."""
        self.going_away = True
        self._send(ERROR, GOAWAY_ID, GOAWAY)

    def _close_when_done(self) -> None:
        """After the client's GOAWAY_ACK every call of this connection has arrived: close once they are answered."""
        if self.acknowledged and not self.running and self.transport is not None:
            self.transport.close()  # after what is buffered is written

    def _refuse(self, reason: str, *args: object) -> None:
        self.server.refused_connections += 1
        self.server.errors.warning("refused", "link: closing a connection from %s: " + reason, self._peer(), *args)
        self.server._connections.discard(self)
        self.server._pending.pop(self, None)
        self.abort()

    def _handshake_expired(self) -> None:
        self._timer = None
        if not self.authenticated:
            self._refuse("no HELLO within %gs", self.server.handshake_timeout)

    def data_received(self, data: bytes) -> None:
        if not self.authenticated:
            rest = self._handshake(data)
            if rest is None:
                return
            data = rest
        assert self.reader is not None
        try:
            frames = self.reader.feed(data)
        except FrameError as exc:
            self.server.errors.warning("frame", "link: closing a connection from %s: %s", self._peer(), exc)
            self.abort()
            return
        for kind, call_id, payload in frames:
            if kind == GOAWAY_ACK and self.going_away:
                self.acknowledged = True
                self._close_when_done()
                continue
            if kind != CALL:
                self.server.errors.warning("kind", "link: closing a connection from %s: frame kind %d",
                                           self._peer(), kind)
                self.abort()
                return
            self._start_call(call_id, payload)

    def _handshake(self, data: bytes) -> bytes | None:
        """The bytes after a valid HELLO (the peer is now authenticated), or None (wait for more, or refused)."""
        if self.transport is None or self.transport.is_closing():
            return None
        self.hello += data
        if len(self.hello) < HEADER.size:
            return None
        length, _, kind = HEADER.unpack_from(self.hello)
        if kind != HELLO or length > self.server.hello_limit:
            self._refuse("first frame is not a HELLO of at most %d bytes", self.server.hello_limit)
            return None
        end = HEADER.size + length
        if len(self.hello) < end:
            return None
        if not hmac.compare_digest(bytes(self.hello[HEADER.size:end]), self.server.token):
            self._refuse("wrong token")
            return None
        rest = bytes(self.hello[end:])
        self.hello = bytearray()
        self.authenticated = True
        self.server._pending.pop(self, None)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.reader = FrameReader(self.server.max_frame)
        if self.server.draining:
            self.go_away()
        return rest

    def _start_call(self, call_id: int, payload: bytes) -> None:
        if len(self.running) >= self.server.max_calls:
            self.server.rejected += 1
            self._send(ERROR, call_id, b"busy: too many calls in flight on this connection")
            return
        self.server.calls += 1
        task = asyncio.get_running_loop().create_task(self.server.handler(payload))
        self.running.add(task)
        task.add_done_callback(lambda t, cid=call_id: self._finished(cid, t))

    def _finished(self, call_id: int, task: asyncio.Task[bytes]) -> None:
        self.running.discard(task)  # type: ignore[arg-type]
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.server.errors.warning("call", "link: a call failed: %r", exc)
            self._send(ERROR, call_id, repr(exc).encode("utf-8", "replace")[:1000])
        else:
            self._send(REPLY, call_id, task.result())
        if self.acknowledged:
            self._close_when_done()

    def _send(self, kind: int, call_id: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(kind, call_id, payload))

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"


__all__ = ["Handler", "LinkServer"]
