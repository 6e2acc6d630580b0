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
