"""UDP listener: one datagram is one SIP message (RFC 3261 §18.1, §18.2).

CRLF-only datagrams are keepalives and are ignored (RFC 5626 §3.5.1 sends STUN or CRLF over UDP; neither is
a SIP message). Datagrams larger than the configured maximum are dropped. ICMP errors reported for earlier
sends (port unreachable → ConnectionRefusedError) are counted, never fatal.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Any

from routr_ray.edge.transports.base import (
    Address,
    Flow,
    Listener,
    Target,
    TransportName,
    bind_socket,
    normalize_host,
    sockaddr_to_address,
)
from routr_ray.sip import is_keepalive_datagram

log = logging.getLogger(__name__)
_UNKNOWN = object()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, listener: UdpListener) -> None:
        self.listener = listener

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override,type-arg]
        self.listener._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        # Linux reports ICMP port-unreachable for an earlier sendto() here (ConnectionRefusedError).
        self.listener.counters.icmp_errors += 1
        log.debug("udp %s: %s", self.listener.local_address, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.warning("udp listener %s lost its socket: %s", self.listener.local_address, exc)


class UdpListener(Listener):
    transport = TransportName.UDP

    _endpoint: asyncio.DatagramTransport | None = None
    _family: int = socket.AF_INET

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # destination host -> the host text for sendto() in this socket's family (None: unreachable), memoised
        self._destinations: dict[str, str | None] = {}

    @property
    def is_listening(self) -> bool:
        return self._endpoint is not None and not self._endpoint.is_closing()

    async def start(self) -> None:
        sock = bind_socket(self.host, self.port, socket.SOCK_DGRAM, self.reuse_port)
        self._family = sock.family
        loop = asyncio.get_running_loop()
        self._endpoint, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=sock)
        self._local = sockaddr_to_address(sock.getsockname())
        log.info("udp listening on %s:%d", *self._local)

    async def stop(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None

    def _on_datagram(self, data: bytes, addr: tuple) -> None:  # type: ignore[type-arg]
        if len(data) > self.limits.max_message_size:
            self.counters.oversize_messages += 1
            return
        if is_keepalive_datagram(data):
            self.counters.keepalives += 1
            return
        # an IPv4 socket reports canonical dotted quads already; IPv6 ones need normalising (mapped IPv4)
        host = addr[0] if self._family == socket.AF_INET else normalize_host(addr[0])
        local_host, local_port = self._local  # type: ignore[misc]
        self._deliver(data, Flow(self.transport, host, addr[1], local_host, local_port, None))

    async def send(self, target: Target, data: bytes, *, server_name: str | None = None) -> bool:
        return self.send_now(target, data)

    def send_now(self, target: Target, data: bytes) -> bool:
        """Synchronous form of `send` (UDP never waits)."""
        if self._endpoint is None or self._endpoint.is_closing():
            return False
        address = target.remote if isinstance(target, Flow) else target
        sockaddr = self._sockaddr(address)
        if sockaddr is None:
            self.counters.send_failures += 1
            return False
        try:
            self._endpoint.sendto(data, sockaddr)
        except OSError as exc:
            self.counters.send_failures += 1
            log.debug("udp send to %s failed: %s", address, exc)
            return False
        return True

    def _sockaddr(self, address: Address) -> Address | None:
        """The destination in this socket's family: IPv4 goes IPv4-mapped on a dual-stack IPv6 socket."""
        host, port = address
        destination = self._destinations.get(host, _UNKNOWN)
        if destination is _UNKNOWN:
            destination = self._destination_host(host)
            if len(self._destinations) >= 65536:
                self._destinations.clear()
            self._destinations[host] = destination
        return None if destination is None else (destination, port)  # type: ignore[return-value]

    def _destination_host(self, host: str) -> str | None:
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            log.debug("udp send to %r: not an IP literal", host)
            return None
        if self._family == socket.AF_INET6:
            if isinstance(ip, ipaddress.IPv4Address):
                return f"::ffff:{ip}"
            return str(ip)
        if isinstance(ip, ipaddress.IPv6Address):
            if ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return None
        return str(ip)
