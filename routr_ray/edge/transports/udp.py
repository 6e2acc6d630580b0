"""UDP listener: one datagram is one SIP message (RFC 3261 §18.1, §18.2).

CRLF-only datagrams are keepalives and are ignored (RFC 5626 §3.5.1 sends STUN or CRLF over UDP; neither is
a SIP message). Datagrams larger than the configured maximum are dropped. ICMP errors reported for earlier
sends (port unreachable → ConnectionRefusedError) are counted, never fatal.

A listener bound to a wildcard address (``0.0.0.0``, ``::``) reads its socket with ``recvmsg`` so that each
`Flow` names the local address the datagram was sent to, and sends with ``sendmsg`` from the address it is
told (a reply leaves from the address its request reached; see ``pktinfo.py``). A concrete bind keeps asyncio's
datagram transport (the kernel has only one source address to choose).

Its ICMP errors are queued (``IP_RECVERR``), and a socket with a queued error reports ``POLLERR``. libuv (uvloop, on
which Ray runs the EdgePort actors) then stops polling it and never calls its reader again: the listener would
receive nothing more. So the listener takes any error its reader has not taken, and starts its reader again, when
a send finds an error pending and every :data:`ERROR_WATCH` seconds (a quiet socket: one non-blocking
``recvmsg(MSG_ERRQUEUE)``); what arrived meanwhile waits in the socket's buffer.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
from collections.abc import Callable
from typing import Any

from routr_ray.edge.transports import pktinfo
from routr_ray.edge.transports.base import (
    Address,
    Flow,
    Listener,
    Target,
    TransportName,
    bind_socket,
    is_wildcard,
    normalize_host,
    sockaddr_to_address,
)
from routr_ray.sip import is_keepalive_datagram

log = logging.getLogger(__name__)
_UNKNOWN = object()
_RECV_SIZE = 65536  # the largest UDP payload is 65,507 bytes
_READS_PER_WAKEUP = 64  # datagrams read in one go before the loop runs other callbacks
ERROR_WATCH = 0.2  # seconds between two looks for ICMP errors the reader did not take (see the module docstring)
# errors a UDP socket with IP_RECVERR reports for an earlier datagram's ICMP message (RFC 3261 §18.4)
_PENDING_ICMP_ERRORS = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN,
                                  errno.ENETDOWN, errno.EPROTO})


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
    _sock: socket.socket | None = None  # a wildcard bind: read and written directly (recvmsg/sendmsg)
    _watch: asyncio.TimerHandle | None = None  # the look for errors the reader did not take (wildcard binds)
    # RFC 3261 §18.4: told the destinations the network refused (ICMP unreachable; wildcard binds, which read
    # their error queue): the transactions waiting on them fail at once instead of at Timer B/F
    on_unreachable: Callable[[list[tuple[str, int]]], None] | None = None
    _family: int = socket.AF_INET

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # destination host -> the host text for sendto() in this socket's family (None: unreachable), memoised
        self._destinations: dict[str, str | None] = {}
        self._sources: dict[str, list[tuple[int, int, bytes]]] = {}  # source address -> sendmsg ancillary data

    @property
    def is_listening(self) -> bool:
        if self._sock is not None:
            return self._sock.fileno() >= 0
        return self._endpoint is not None and not self._endpoint.is_closing()

    @property
    def wildcard(self) -> bool:
        """Bound to every local address: flows name the address each datagram reached."""
        return self._sock is not None

    async def start(self) -> None:
        sock = bind_socket(self.host, self.port, socket.SOCK_DGRAM, self.reuse_port)
        self._family = sock.family
        self._local = sockaddr_to_address(sock.getsockname())
        loop = asyncio.get_running_loop()
        if is_wildcard(self.host):
            try:
                pktinfo.enable(sock)
                loop.add_reader(sock.fileno(), self._read_ready)
            except BaseException:
                sock.close()
                raise
            self._sock = sock
            self._watch = loop.call_later(ERROR_WATCH, self._watch_errors)
        else:
            self._endpoint, _ = await loop.create_datagram_endpoint(lambda: _UdpProtocol(self), sock=sock)
        log.info("udp listening on %s:%d", *self._local)

    async def stop(self) -> None:
        if self._endpoint is not None:
            self._endpoint.close()
            self._endpoint = None
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._sock is not None:
            sock, self._sock = self._sock, None
            try:
                asyncio.get_running_loop().remove_reader(sock.fileno())
            finally:
                sock.close()

    def _read_ready(self) -> None:
        sock = self._sock
        if sock is None:
            return
        local_port = self._local[1]  # type: ignore[index]
        wildcard_host = self._local[0]  # type: ignore[index]
        for _ in range(_READS_PER_WAKEUP):
            try:
                data, ancillary, _flags, addr = sock.recvmsg(_RECV_SIZE, pktinfo.ANCILLARY_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error for an earlier send (ConnectionRefusedError), as error_received
                self.counters.icmp_errors += 1
                log.debug("udp %s: %s", self._local, exc)
                refused = pktinfo.unreachable_destinations(sock)
                if refused:
                    asyncio.get_running_loop().call_soon(self._errors_taken, refused)
                    return
                continue
            self._on_datagram(data, addr, pktinfo.destination_of(ancillary) or wildcard_host, local_port)

    def _watch_errors(self) -> None:
        sock = self._sock
        if sock is None:
            return
        self._watch = asyncio.get_running_loop().call_later(ERROR_WATCH, self._watch_errors)
        refused = pktinfo.unreachable_destinations(sock)
        if refused:
            self._errors_taken(refused)

    def _errors_taken(self, refused: list[tuple[str, int]]) -> None:
        """ICMP errors taken off the queue outside the reader: the reader may have been stopped (libuv), so it is
        started again and runs once for what arrived meanwhile; then the refused destinations are reported."""
        sock = self._sock
        if sock is not None:
            loop = asyncio.get_running_loop()
            loop.remove_reader(sock.fileno())
            loop.add_reader(sock.fileno(), self._read_ready)
            loop.call_soon(self._read_ready)
        if self.on_unreachable is not None:
            self.on_unreachable(refused)

    def _on_datagram(self, data: bytes, addr: tuple, local_host: str | None = None,  # type: ignore[type-arg]
                     local_port: int = 0) -> None:
        if len(data) > self.limits.max_message_size:
            self.counters.oversize_messages += 1
            return
        if is_keepalive_datagram(data):
            self.counters.keepalives += 1
            return
        # an IPv4 socket reports canonical dotted quads already; IPv6 ones need normalising (mapped IPv4)
        host = addr[0] if self._family == socket.AF_INET else normalize_host(addr[0])
        if local_host is None:
            local_host, local_port = self._local  # type: ignore[misc]
        self._deliver(data, Flow(self.transport, host, addr[1], local_host, local_port, None))

    async def send(self, target: Target, data: bytes, *, server_name: str | None = None,
                   source: str | None = None) -> bool:
        return self.send_now(target, data, source)

    def send_now(self, target: Target, data: bytes, source: str | None = None) -> bool:
        """Synchronous form of `send` (UDP never waits). ``source``: the local address the datagram leaves from
        on a wildcard bind (default: a `Flow` target's local address, i.e. where its request arrived; else the
        kernel's choice by route)."""
        sock = self._sock
        if sock is None and (self._endpoint is None or self._endpoint.is_closing()):
            return False
        if isinstance(target, Flow):
            address = target.remote
            if source is None and target.local_host != self._local[0]:  # type: ignore[index]
                source = target.local_host
        else:
            address = target
        sockaddr = self._sockaddr(address)
        if sockaddr is None:
            self.counters.send_failures += 1
            return False
        try:
            if sock is None:
                self._endpoint.sendto(data, sockaddr)  # type: ignore[union-attr]
            else:
                self._send_direct(sock, data, sockaddr, source)
        except OSError as exc:
            self.counters.send_failures += 1
            log.debug("udp send to %s failed: %s", address, exc)
            return False
        return True

    def _send_direct(self, sock: socket.socket, data: bytes, sockaddr: Address, source: str | None) -> None:
        ancillary = self._source_ancillary(source) if source else None
        for attempt in (1, 2):
            try:
                if ancillary is not None:
                    sock.sendmsg([data], ancillary, 0, sockaddr)
                else:
                    sock.sendto(data, sockaddr)
                return
            except (ConnectionRefusedError, ConnectionResetError, OSError) as exc:
                # with IP_RECVERR the socket reports a pending ICMP error of an *earlier* datagram on the next
                # call, whatever its destination: take it from the error queue and send again, once
                if attempt == 2 or exc.errno not in _PENDING_ICMP_ERRORS:
                    raise
                self.counters.icmp_errors += 1
                refused = pktinfo.unreachable_destinations(sock)
                if refused:
                    self._errors_taken(refused)

    def _source_ancillary(self, source: str) -> list[tuple[int, int, bytes]]:
        ancillary = self._sources.get(source)
        if ancillary is None:
            ancillary = pktinfo.source_ancillary(self._family, source)
            if len(self._sources) >= 1024:
                self._sources.clear()
            self._sources[source] = ancillary
        return ancillary

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
