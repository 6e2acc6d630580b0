"""Which of our addresses the kernel sends from toward a destination (Kamailio's ``mhomed=1``).

An EdgePort listening on a wildcard address advertises, toward each next hop, the address its packets to that
hop leave from: the source address the routing table picks, read from an unconnected-then-connected UDP socket
(``connect`` sends nothing; ``getsockname`` tells the source). Answers are cached per destination for a short
time (addresses and routes change: DHCP, VPNs), with a bound on the cache.

A destination that is itself one of our addresses (phones on this host) routes "from" that same address, which
names the peer and not us; for it, and for a destination with no route, :meth:`SourceAddresses.toward` answers
None and the caller uses the address the request arrived on.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable

__all__ = ["SourceAddresses"]


class SourceAddresses:
    def __init__(self, *, ttl: float = 30.0, max_size: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._cache: dict[str, tuple[float, str | None]] = {}

    def toward(self, host: str) -> str | None:
        """Our source address toward the IP literal ``host``; None when it is one of ours, unroutable or not an
        IP literal."""
        now = self._clock()
        hit = self._cache.get(host)
        if hit is not None and hit[0] > now:
            return hit[1]
        source = _route_source(host)
        if len(self._cache) >= self.max_size:
            self._cache.clear()
        self._cache[host] = (now + self.ttl, source)
        return source


def _route_source(host: str) -> str | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((str(ip), 9))  # UDP connect: a route lookup, no packet
            source = ipaddress.ip_address(sock.getsockname()[0].split("%", 1)[0])
    except OSError:
        return None
    if source == ip:
        return None  # the destination is an address of this host
    return str(source)
