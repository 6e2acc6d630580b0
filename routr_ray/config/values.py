"""Parsing the small value formats found in configs: networks, `host:port` addresses.

Syntax only: no file is opened and no name is resolved here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TypeAlias

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_network(text: str) -> IPNetwork:
    """`10.0.0.0/8`, `127.0.0.1/8` (host bits allowed, as in Routr), a bare IP (/32 or /128), or a
    dotted netmask (`10.0.0.0/255.0.0.0`). Raises ValueError."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"expected an IP address or network such as 10.0.0.0/8; got {text!r}") from None


def to_networks(texts: Sequence[str] | None) -> tuple[IPNetwork, ...]:
    """Networks from a list the schema already checked (format `ip-network`)."""
    return tuple(parse_network(text) for text in texts or ())


PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "127.0.0.0/8",
                    "fc00::/7", "::1/128")
"""The default ``localnets`` (RFC 1918, RFC 6598 shared address space, loopback, RFC 4193 unique local): targets
inside are reached without the ``externalAddrs``."""


def to_localnets(texts: Sequence[str] | None) -> tuple[str, ...]:
    """``localnets`` entries as ``address/prefix`` with their host bits kept: Routr reads ``10.100.42.127/31`` as
    that network *and* our address on it (routr.md §3.6); ``10.0.0.0/8`` names no address of ours. Unset (None):
    :data:`PRIVATE_NETWORKS`; an empty list stays empty (every target is outside)."""
    if texts is None:
        return PRIVATE_NETWORKS
    result = []
    for text in texts:
        parse_network(text)  # the error message of a bad entry
        result.append(str(ipaddress.ip_interface(text.strip())))
    return tuple(result)


def parse_host_port(text: str) -> tuple[str, int]:
    """`host:port`, `1.2.3.4:5060` or `[::1]:5060`. Raises ValueError."""
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ValueError(f"expected [IPv6]:port; got {text!r}")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon or ":" in host:
            raise ValueError(f"expected host:port (IPv6 as [addr]:port); got {text!r}")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"expected host:port with a host; got {text!r}")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"expected a port from 1 to 65535 after the colon; got {text!r}")
    return host, int(port_text)


SERVE_SCHEME = "serve://"


def check_processor_addr(addr: str) -> None:
    """A processor or middleware address: `serve://<deployment>` in this Ray cluster, or `host:port`
    of any gRPC server speaking `fonoster.routr.processor.v2beta1.Processor`. Raises ValueError."""
    if addr.startswith(SERVE_SCHEME):
        name = addr.removeprefix(SERVE_SCHEME)
        if not name or "/" in name or any(c.isspace() for c in name):
            raise ValueError(f"expected serve://<deployment name>; got {addr!r}")
        return
    if "://" in addr:
        raise ValueError(
            f"expected serve://<deployment> or host:port; the scheme of {addr!r} is not supported"
        )
    try:
        parse_host_port(addr)
    except ValueError:
        raise ValueError(
            f"expected serve://<deployment> or host:port (IPv6 as [addr]:port); got {addr!r}"
        ) from None
