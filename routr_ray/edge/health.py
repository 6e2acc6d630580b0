"""A tiny HTTP/1.1 server for probes and scraping: ``/healthz``, ``/readyz`` and ``/metrics``.

- ``/healthz`` (liveness): 200 when the event loop answers (this server runs on it) and the ``liveness`` check
  passes (e.g. every listener bound); else 503.
- ``/readyz`` (readiness): 200 when ``liveness`` and ``readiness`` (e.g. the dispatcher is reachable) pass.
- ``/metrics``: prometheus_client's text exposition of the registry passed in.

Checks are callables returning a bool, or an awaitable of one; a check that raises or takes longer than
``check_timeout`` counts as failing. One request per connection (``Connection: close``), GET and HEAD only,
requests over 8 KiB or slower than ``request_timeout`` are dropped.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from routr_ray.edge.transports.base import Address, bind_socket, sockaddr_to_address

log = logging.getLogger(__name__)

Check = Callable[[], bool | Awaitable[bool]]

MAX_REQUEST_HEAD = 8192
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class HealthServer:
    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 8080,
        *,
        registry: CollectorRegistry | None = None,
        liveness: Check | None = None,
        readiness: Check | None = None,
        check_timeout: float = 2.0,
        request_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = port
        self.registry = registry
        self.liveness = liveness
        self.readiness = readiness
        self.check_timeout = check_timeout
        self.request_timeout = request_timeout
        self._server: asyncio.Server | None = None
        self._local: Address | None = None

    @property
    def local_address(self) -> Address:
        if self._local is None:
            raise RuntimeError("health server is not started")
        return self._local

    async def start(self) -> None:
        sock = bind_socket(self.host, self.port, socket.SOCK_STREAM)
        try:
            self._server = await asyncio.start_server(self._serve, sock=sock, limit=MAX_REQUEST_HEAD)
        except BaseException:
            sock.close()
            raise
        self._local = sockaddr_to_address(sock.getsockname())
        log.info("health endpoint on http://%s:%d", *self._local)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.request_timeout)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                return
            status, content_type, body, method = await self._respond(head)
            reason = _REASONS.get(status, "")
            headers = (
                f"HTTP/1.1 {status} {reason}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Cache-Control: no-store\r\n"
                "Connection: close\r\n\r\n"
            ).encode("ascii")
            writer.write(headers if method == "HEAD" else headers + body)
            await asyncio.wait_for(writer.drain(), self.request_timeout)
        except (ConnectionError, TimeoutError):
            pass
        finally:
            writer.close()

    async def _respond(self, head: bytes) -> tuple[int, str, bytes, str]:
        text = "text/plain; charset=utf-8"
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return 400, text, b"bad request\n", "GET"
        method = parts[0].decode("ascii", "replace")
        path = parts[1].decode("ascii", "replace").split("?", 1)[0]
        if path not in ("/healthz", "/readyz", "/metrics"):
            return 404, text, b"not found\n", method
        if method not in ("GET", "HEAD"):
            return 405, text, b"method not allowed\n", method
        if path == "/metrics":
            if self.registry is None:
                return 404, text, b"no metrics registry\n", method
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry), method
        alive = await self._passes(self.liveness)
        if path == "/healthz":
            return (200, text, b"ok\n", method) if alive else (503, text, b"not alive\n", method)
        ready = alive and await self._passes(self.readiness)
        return (200, text, b"ready\n", method) if ready else (503, text, b"not ready\n", method)

    async def _passes(self, check: Check | None) -> bool:
        if check is None:
            return True
        try:
            result = check()
            if inspect.isawaitable(result):
                result = await asyncio.wait_for(result, self.check_timeout)
            return bool(result)
        except Exception:
            log.debug("health check %r failed", check, exc_info=True)
            return False
