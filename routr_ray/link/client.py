"""LinkClient (one pipelined connection to a LinkServer) and LinkPool (the least busy of a service's servers).

Errors say whether the call may have reached the server, which is what a caller needs to decide whether it may
try elsewhere: :class:`LinkConnectError` means nothing was sent (no endpoint, connection refused or timed out);
any other :class:`LinkError` (connection lost with the call in flight, or the server's ``ERROR`` answer) means the
call may have run.

A server that drains (its replica is stopping) says so on each connection (``GOAWAY``, :mod:`.frames`): the client
acknowledges, sends nothing more there and is no longer picked by its pool; the calls it had sent are answered.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from .frames import (
    CALL,
    ERROR,
    GOAWAY,
    GOAWAY_ACK,
    GOAWAY_ID,
    HELLO,
    MAX_FRAME,
    REPLY,
    Endpoint,
    FrameError,
    FrameReader,
    frame,
)


class LinkError(ConnectionError):
    """The call failed; it may have reached the server."""


class LinkConnectError(LinkError):
    """No connection: the call was not sent."""


class LinkRemoteError(LinkError):
    """The server answered ``ERROR`` (its handler raised, or it was too busy)."""


_ID_WRAP = 1 << 32


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, max_frame: int) -> None:
        self.reader = FrameReader(max_frame)
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.closed = False
        self.draining = False  # the server said GOAWAY: no more calls on this connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            frames = self.reader.feed(data)
        except FrameError as exc:
            self._fail(LinkError(f"bad frame from the server: {exc}"))
            if self.transport is not None:
                self.transport.abort()
            return
        pending = self.pending
        for kind, call_id, payload in frames:
            if call_id == GOAWAY_ID and kind == ERROR and payload == GOAWAY:
                self.draining = True
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.write(frame(GOAWAY_ACK, GOAWAY_ID))
                continue
            future = pending.pop(call_id, None)
            if future is None or future.done():
                continue  # its caller gave up (timeout, cancellation)
            if kind == REPLY:
                future.set_result(payload)
            elif kind == ERROR:
                future.set_exception(LinkRemoteError(payload.decode("utf-8", "replace")))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(LinkError(f"link connection lost ({exc!r})" if exc else "link connection closed"))

    def _fail(self, error: LinkError) -> None:
        self.closed = True
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(error)


class LinkClient:
    """One connection to ``endpoint``, opened on first use and again after it is lost (not before
    ``retry_after`` seconds following a failed attempt)."""

    def __init__(self, endpoint: Endpoint, *, connect_timeout: float = 2.0, retry_after: float = 1.0,
                 max_frame: int = MAX_FRAME) -> None:
        self.endpoint = endpoint
        self.connect_timeout = connect_timeout
        self.retry_after = retry_after
        self.max_frame = max_frame
        self._protocol: _ClientProtocol | None = None
        self._lock: asyncio.Lock | None = None
        self._next_id = 0
        self.broken_until = 0.0
        self.calls = 0

    @property
    def outstanding(self) -> int:
        protocol = self._protocol
        return len(protocol.pending) if protocol is not None else 0

    @property
    def draining(self) -> bool:
        """Its server is going away: it takes no new calls (those in flight are answered)."""
        protocol = self._protocol
        return protocol is not None and protocol.draining

    @property
    def usable(self) -> bool:
        return self.broken_until <= time.monotonic() and not self.draining

    async def _connect(self) -> _ClientProtocol:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            protocol = self._protocol
            if protocol is not None and not protocol.closed:
                return protocol
            if not self.usable:
                raise LinkConnectError(f"link to {self.endpoint.host}:{self.endpoint.port} failed recently")
            loop = asyncio.get_running_loop()
            try:
                _, protocol = await asyncio.wait_for(
                    loop.create_connection(lambda: _ClientProtocol(self.max_frame), self.endpoint.host,
                                           self.endpoint.port),
                    self.connect_timeout)
            except (TimeoutError, OSError) as exc:
                self.broken_until = time.monotonic() + self.retry_after
                raise LinkConnectError(f"cannot connect to {self.endpoint.host}:{self.endpoint.port}: {exc!r}") \
                    from exc
            assert protocol.transport is not None
            protocol.transport.write(frame(HELLO, 0, self.endpoint.token))
            self._protocol = protocol
            return protocol

    async def call(self, payload: bytes) -> bytes:
        """Send one call and wait for its answer (callers bound the wait: ``asyncio.timeout``)."""
        protocol = self._protocol
        if protocol is None or protocol.closed:
            protocol = await self._connect()
        if protocol.draining:
            raise LinkConnectError(f"link to {self.endpoint.host}:{self.endpoint.port} is draining")
        self._next_id = call_id = self._next_id % (_ID_WRAP - 1) + 1  # 1 .. 2**32-1: never GOAWAY_ID
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        protocol.pending[call_id] = future
        assert protocol.transport is not None
        protocol.transport.write(frame(CALL, call_id, payload))
        self.calls += 1
        try:
            return await future
        finally:
            protocol.pending.pop(call_id, None)

    def close(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None and protocol.transport is not None:
            protocol.transport.close()


class LinkPool:
    """The servers of one service: each call goes to the usable one with the fewest calls in flight (ties in
    turn). Endpoints dropped by :meth:`update` take no new calls and are closed once their calls are answered."""

    def __init__(self, **client_options: float) -> None:
        self._client_options = client_options
        self._clients: dict[str, LinkClient] = {}
        self._retiring: list[LinkClient] = []
        self._turn = 0

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def endpoints(self) -> list[Endpoint]:
        return [c.endpoint for c in self._clients.values()]

    def update(self, endpoints: Iterable[Endpoint]) -> None:
        wanted = {e.member: e for e in endpoints}
        for member, client in list(self._clients.items()):
            if wanted.get(member) != client.endpoint:
                del self._clients[member]
                self._retiring.append(client)
        for member, endpoint in wanted.items():
            if member not in self._clients:
                self._clients[member] = LinkClient(endpoint, **self._client_options)  # type: ignore[arg-type]
        still = []
        for client in self._retiring:
            if client.outstanding:
                still.append(client)
            else:
                client.close()
        self._retiring = still

    def pick(self) -> LinkClient | None:
        clients = [c for c in self._clients.values() if c.usable]
        if not clients:
            return None
        self._turn = (self._turn + 1) % len(clients)
        best = clients[self._turn]
        for client in clients:
            if client.outstanding < best.outstanding:
                best = client
        return best

    async def call(self, payload: bytes) -> bytes:
        """Call the least busy server; one that cannot take the call (refused, draining: nothing was sent) is
        passed over for the next, until none is left (LinkConnectError)."""
        for _ in range(len(self._clients)):
            client = self.pick()
            if client is None:
                break
            try:
                return await client.call(payload)
            except LinkConnectError:
                continue  # that client is now unusable (backing off or draining): pick() passes it over
        raise LinkConnectError("no usable endpoint")

    def close(self) -> None:
        for client in (*self._clients.values(), *self._retiring):
            client.close()
        self._clients.clear()
        self._retiring.clear()


__all__ = ["LinkClient", "LinkConnectError", "LinkError", "LinkPool", "LinkRemoteError"]
