"""A client of one RTPEngine's ng control port: bencoded dictionaries over UDP, matched by cookie.

Each request is ``<cookie> <bencoded dict>`` and RTPEngine answers ``<cookie> <bencoded dict>`` with the same
cookie; it remembers recent cookies, so a retransmission of the same bytes gets the same answer instead of being
executed twice (rtpengine docs, "The ng Control Protocol"). :meth:`NgClient.command` sends a command, retransmits
it ``retries`` times evenly within ``timeout`` and returns the reply dictionary:

* ``result: error`` -> :class:`NgRejected` (RTPEngine is alive and said no: a bad SDP, an unknown call);
* no reply within ``timeout``, or the port refused (ICMP port unreachable on the connected socket: RTPEngine is
  not running there) -> :class:`NgUnreachable` (the instance failed; the pool marks it down and fails over).

One connected UDP socket per instance (so ICMP errors reach us), opened on first use and again after an error.
Cookies are a random per-client prefix and a counter: two clients (two middleware replicas) never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
from typing import Any

from routr_ray.media.bencode import BencodeError, decode, encode

__all__ = ["NgClient", "NgError", "NgRejected", "NgUnreachable"]

log = logging.getLogger(__name__)

MAX_PENDING = 10_000  # commands in flight on one client; beyond that the instance counts as overloaded


class NgError(Exception):
    """A command did not succeed."""


class NgUnreachable(NgError):
    """The instance did not answer in time or refused the datagram: it is down."""


class NgRejected(NgError):
    """RTPEngine answered ``result: error``; ``reason`` is its ``error-reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, client: NgClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.client._received(data)

    def error_received(self, exc: Exception) -> None:
        self.client._failed(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost()


class NgClient:
    """Commands to one ng control port (``host``, ``port``)."""

    def __init__(self, host: str, port: int, *, timeout: float = 1.0, retries: int = 2) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self._prefix = secrets.token_hex(4)
        self._counter = itertools.count(1)
        self._pending: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self._opening: asyncio.Lock | None = None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    async def _open(self) -> asyncio.DatagramTransport:
        if self._transport is not None:
            return self._transport
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            if self._transport is None:
                loop = asyncio.get_running_loop()
                try:
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: _Protocol(self), remote_addr=(self.host, self.port))
                except OSError as exc:
                    raise NgUnreachable(f"cannot reach {self.address}: {exc}") from exc
                self._transport = transport  # type: ignore[assignment]
        assert self._transport is not None
        return self._transport

    async def command(self, command: dict[str, Any]) -> dict[str, Any]:
        """Send ``command`` (``{"command": "offer", ...}``) and return the reply; raises :class:`NgRejected` or
        :class:`NgUnreachable`."""
        if len(self._pending) >= MAX_PENDING:
            raise NgUnreachable(f"{self.address}: {MAX_PENDING} commands already waiting")
        try:
            body = encode(command)
        except BencodeError as exc:
            raise NgRejected(f"cannot encode the command: {exc}") from exc
        transport = await self._open()
        cookie = f"{self._prefix}_{next(self._counter)}".encode()
        payload = cookie + b" " + body
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[cookie] = future
        total = self.timeout
        interval = total / (self.retries + 1)
        try:
            for _ in range(self.retries + 1):
                transport.sendto(payload)
                done, _ = await asyncio.wait((future,), timeout=interval)
                if done:
                    break
            else:
                raise NgUnreachable(f"{self.address}: no answer to {command.get('command')!r} within {total:g}s")
            reply = future.result()
        finally:
            self._pending.pop(cookie, None)
            if not future.done():
                future.cancel()
        result = reply.get("result")
        if result == "error":
            raise NgRejected(str(reply.get("error-reason") or "error without a reason"))
        if result not in ("ok", "pong"):
            raise NgRejected(f"unexpected result {result!r}")
        return reply

    def _received(self, data: bytes) -> None:
        cookie, space, body = data.partition(b" ")
        future = self._pending.get(cookie)
        if future is None or future.done() or not space:
            return  # a late answer to a retransmission, or not for us
        try:
            reply = decode(body)
        except BencodeError as exc:
            future.set_exception(NgUnreachable(f"{self.address}: unreadable answer: {exc}"))
            return
        if not isinstance(reply, dict):
            future.set_exception(NgUnreachable(f"{self.address}: the answer is not a dictionary"))
            return
        future.set_result(reply)

    def _failed(self, exc: Exception) -> None:
        """ICMP error on the connected socket (port unreachable: nothing listens there)."""
        for future in self._pending.values():
            if not future.done():
                future.set_exception(NgUnreachable(f"{self.address}: {exc}"))

    def _lost(self) -> None:
        self._transport = None
        self._failed(ConnectionError("socket closed"))

    def close(self) -> None:
        transport, self._transport = self._transport, None
        if transport is not None:
            with contextlib.suppress(Exception):
                transport.close()
