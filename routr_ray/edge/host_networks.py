"""This host's own addresses and their networks, for EdgePorts listening on a wildcard address.

Routr fills an empty ``localnets`` with the first address/prefix of each interface (routr.md §5.2), so that a
localnet entry doubles as "my address on that network". routr-ray keeps the configured (or default private)
``localnets`` as they are and, when a listening point is a wildcard, puts one ``address/prefix`` entry per
interface address in front of them in every MessageRequest: a processor then advertises, toward a target on one
of those networks, our address on it (Routr's ``getEdgeInterface``), and knows every address that names us.
Link-local IPv6 addresses (they need a zone) are left out. Read with psutil (getifaddrs).
"""

from __future__ import annotations

import ipaddress
import socket

import psutil

__all__ = ["host_networks"]


def host_networks(*, ipv4: bool = True, ipv6: bool = True) -> list[str]:
    """``address/prefix`` of every address of this host, loopback last (their order is the order they are
    tried in: the first network that holds a target names the address advertised toward it)."""
    entries: list[tuple[bool, str]] = []
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and ipv4:
                entry = _entry(address.address, address.netmask, 32)
            elif address.family == socket.AF_INET6 and ipv6:
                entry = _entry(address.address.split("%", 1)[0], address.netmask, 128)
            else:
                continue
            if entry is not None:
                entries.append(entry)
    seen: set[str] = set()
    ordered = []
    for _, entry in sorted(entries, key=lambda e: e[0]):
        if entry not in seen:
            seen.add(entry)
            ordered.append(entry)
    return ordered


def _entry(address: str, netmask: str | None, full: int) -> tuple[bool, str] | None:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    if ip.is_link_local or ip.is_unspecified:
        return None
    prefix = full
    if netmask:
        try:
            prefix = bin(int(ipaddress.ip_address(netmask.split("/", 1)[0]))).count("1")
        except ValueError:
            prefix = full
    return ip.is_loopback, f"{ip}/{prefix}"
