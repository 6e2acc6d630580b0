"""LinkServer: answers call frames with a handler's bytes, many calls in flight per connection.

The first frame of a connection must be ``HELLO`` carrying the server's token (compared in constant time); any
other first frame, a wrong token or a malformed frame closes the connection. Each ``CALL`` runs the handler as its
own task, so a slow batch does not hold up the ones behind it; its result goes back as ``REPLY`` (or ``ERROR`` with
the exception's text). A connection may have at most ``max_calls`` calls running; beyond that a call is answered
``ERROR`` at once (backpressure instead of unbounded tasks).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable

from routr_ray.observability.ratelimit import RateLimitedLog

from .frames import CALL, ERROR, HELLO, MAX_FRAME, REPLY, FrameError, FrameReader, frame

log = logging.getLogger(__name__)

Handler = Callable[[bytes], Awaitable[bytes]]


class LinkServer:
    def __init__(self, handler: Handler, *, token: bytes, host: str = "127.0.0.1", port: int = 0,
                 max_frame: int = MAX_FRAME, max_calls: int = 4096) -> None:
        self.handler = handler
        self.token = token
        self.host = host
        self.port = port
        self.max_frame = max_frame
        self.max_calls = max_calls
        self._server: asyncio.Server | None = None
        self._connections: set[_ServerProtocol] = set()
        self.calls = 0
        self.rejected = 0
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
        self.reader = FrameReader(server.max_frame)
        self.transport: asyncio.Transport | None = None
        self.authenticated = False
        self.running: set[asyncio.Task[None]] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server._connections.discard(self)
        for task in self.running:
            task.cancel()
        self.running.clear()
        self.transport = None

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except FrameError as exc:
            self.server.errors.warning("frame", "link: closing a connection from %s: %s", self._peer(), exc)
            self.abort()
            return
        for kind, call_id, payload in frames:
            if not self.authenticated:
                if kind != HELLO or not hmac.compare_digest(payload, self.server.token):
                    self.server.errors.warning("token", "link: closing a connection from %s: no or wrong token",
                                               self._peer())
                    self.abort()
                    return
                self.authenticated = True
                continue
            if kind != CALL:
                self.server.errors.warning("kind", "link: closing a connection from %s: frame kind %d",
                                           self._peer(), kind)
                self.abort()
                return
            self._start_call(call_id, payload)

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
            return
        self._send(REPLY, call_id, task.result())

    def _send(self, kind: int, call_id: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frame(kind, call_id, payload))

    def _peer(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return f"{peer[0]}:{peer[1]}" if peer else "?"


__all__ = ["Handler", "LinkServer"]
