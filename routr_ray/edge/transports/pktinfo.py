"""Which of our addresses a datagram reached, and which one a reply leaves from, on a wildcard UDP socket.

A UDP socket bound to ``0.0.0.0`` or ``::`` receives on every local address, and the kernel picks the source
address of what it sends by route. On a host with several addresses that is not always the address the peer
wrote to (on one host, toward a peer's own address, it is the peer's address itself), and a SIP server must
advertise, and answer from, an address the peer can reach (issue 13; Kamailio's ``mhomed``):

* ``IP_PKTINFO`` (IPv4) / ``IPV6_RECVPKTINFO`` (IPv6, and IPv4-mapped on a dual-stack socket) make ``recvmsg``
  report each datagram's destination address;
* the same ancillary data given to ``sendmsg`` sets the source address of one datagram.

Linux constants are used where Python 3.11's ``socket`` module lacks them (``IP_PKTINFO`` arrived in 3.12).
"""

from __future__ import annotations

import ipaddress
import socket
import struct

__all__ = ["ANCILLARY_SIZE", "destination_of", "enable", "source_ancillary", "unreachable_destinations"]

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
IPV6_RECVPKTINFO = getattr(socket, "IPV6_RECVPKTINFO", 49)
IPV6_PKTINFO = getattr(socket, "IPV6_PKTINFO", 50)

_IN_PKTINFO = struct.Struct("=I4s4s")  # struct in_pktinfo: ifindex, spec_dst, addr
_IN6_PKTINFO = struct.Struct("=16sI")  # struct in6_pktinfo: addr, ifindex
ANCILLARY_SIZE = socket.CMSG_SPACE(_IN6_PKTINFO.size) + socket.CMSG_SPACE(_IN_PKTINFO.size)
_ZERO4 = bytes(4)


def enable(sock: socket.socket) -> None:
    """Ask the kernel for the destination address of every datagram ``sock`` receives, and to queue ICMP errors
    with the destination they are about (``IP_RECVERR``: read with :func:`unreachable_destinations`)."""
    if sock.family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)  # IPv4 peers of a dual-stack socket
    else:
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)


def unreachable_destinations(sock: socket.socket, limit: int = 64) -> list[tuple[str, int]]:
    """The destinations of datagrams the network refused (ICMP unreachable, RFC 3261 §18.4), from the socket's
    error queue (``MSG_ERRQUEUE``; never blocks). IPv4-mapped addresses are reported as IPv4."""
    found: list[tuple[str, int]] = []
    for _ in range(limit):
        try:
            _data, _ancillary, _flags, address = sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
        except (BlockingIOError, InterruptedError):
            break
        except OSError:
            break
        if address:
            host = str(address[0])
            if host.startswith("::ffff:"):
                host = host[7:]
            found.append((host, int(address[1])))
    return found


def destination_of(ancillary: list[tuple[int, int, bytes]]) -> str | None:
    """The destination address in ``recvmsg``'s ancillary data (IPv4-mapped IPv6 reported as IPv4), or None."""
    for level, kind, data in ancillary:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= _IN_PKTINFO.size:
            return socket.inet_ntop(socket.AF_INET, _IN_PKTINFO.unpack_from(data)[2])
        if level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO and len(data) >= _IN6_PKTINFO.size:
            ip = ipaddress.IPv6Address(_IN6_PKTINFO.unpack_from(data)[0])
            return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)
    return None


def source_ancillary(family: int, source: str) -> list[tuple[int, int, bytes]]:
    """Ancillary data for ``sendmsg`` that makes one datagram leave from ``source`` (an address of ours).
    On a dual-stack IPv6 socket an IPv4 source is given IPv4-mapped (Linux ``ip_cmsg_send`` takes it)."""
    ip = ipaddress.ip_address(source)
    if family == socket.AF_INET6:
        if isinstance(ip, ipaddress.IPv4Address):
            ip = ipaddress.IPv6Address(f"::ffff:{ip}")
        return [(socket.IPPROTO_IPV6, IPV6_PKTINFO, _IN6_PKTINFO.pack(ip.packed, 0))]
    return [(socket.IPPROTO_IP, IP_PKTINFO, _IN_PKTINFO.pack(0, ip.packed, _ZERO4))]
