"""IP address helpers shared by the EdgePort's guards and Connect's ACLs (longest-prefix matching)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from functools import lru_cache

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8192)  # a pure function of the text, asked for every message; the addresses are immutable
def ip_of(host: str) -> IPAddress | None:
    """The IP address `host` names (IPv4-mapped IPv6 as IPv4, brackets stripped), or None for a name."""
    try:
        ip = ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def longest_match(ip: IPAddress, networks: Iterable[IPNetwork]) -> int:
    """Prefix length of the most specific network containing `ip`; -1 when none does."""
    best = -1
    for net in networks:
        if net.version == ip.version and ip in net and net.prefixlen > best:
            best = net.prefixlen
    return best


class NetworkSet:
    """"Is this host in one of these networks?", answered from a per-host memo (asked for every message; the
    memo is cleared when it reaches ``max_cached`` hosts, so a spoofed flood costs only the lookups it causes)."""

    def __init__(self, networks: Iterable[IPNetwork] = (), *, max_cached: int = 65536) -> None:
        self.networks = tuple(networks)
        self.max_cached = max_cached
        self._cache: dict[str, bool] = {}

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str) or not self.networks:
            return False
        found = self._cache.get(host)
        if found is None:
            ip = ip_of(host)
            found = ip is not None and longest_match(ip, self.networks) >= 0
            if len(self._cache) >= self.max_cached:
                self._cache.clear()
            self._cache[host] = found
        return found

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __len__(self) -> int:
        return len(self.networks)
