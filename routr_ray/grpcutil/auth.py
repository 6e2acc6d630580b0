"""Shared-token check for the gRPC ports, and the rule that keeps them closed by default (DESIGN §6b).

A caller sends ``authorization: Bearer <token>`` (or ``x-routr-token: <token>``) as gRPC metadata. Without a
configured token every caller who reaches the port is accepted, so a server without a token may only listen on
a loopback address: :func:`refuse_open_port` is called by every gRPC server of ours before it binds (the
dispatcher's front on 51901, the Location API on 51902, ``routr-ray processor serve``).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Iterable

TOKEN_METADATA_KEYS = ("authorization", "x-routr-token")


class OpenPortRefused(ValueError):
    """A server was asked to listen on a non-loopback address without a token."""


def token_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        key = key.lower()
        if key not in TOKEN_METADATA_KEYS:
            continue
        text = value.decode() if isinstance(value, bytes) else value
        if key == "authorization":
            scheme, _, credentials = text.partition(" ")
            if scheme.lower() != "bearer":
                continue
            text = credentials
        return text.strip()
    return None


def token_ok(expected: str | None, metadata: Iterable[tuple[str, str | bytes]] | None) -> bool:
    if not expected:
        return True
    given = token_from_metadata(metadata)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The gRPC metadata that carries ``token`` (nothing without one)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


def split_host_port(bind_addr: str) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` -> (host without brackets, port); an empty host is ``0.0.0.0``."""
    host, _, port = bind_addr.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and addresses in 127.0.0.0/8 or ``::1``; a wildcard, another address or any other
    name is not (a name may resolve to anything)."""
    host = host.strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def refuse_open_port(bind_addr: str, token: str | None, *, what: str, how: str) -> None:
    """Raise :class:`OpenPortRefused` when ``bind_addr`` is not a loopback address and there is no ``token``;
    ``what`` names the port (e.g. "the dispatcher's gRPC port"), ``how`` says where a token is set."""
    if token:
        return
    host, _ = split_host_port(bind_addr)
    if not is_loopback_host(host):
        raise OpenPortRefused(
            f"{what} would listen on {bind_addr} without a token: anyone who reaches it could use it. "
            f"Bind it to 127.0.0.1, or set a token ({how})")


__all__ = ["OpenPortRefused", "TOKEN_METADATA_KEYS", "bearer_metadata", "is_loopback_host", "refuse_open_port",
           "split_host_port", "token_from_metadata", "token_ok"]
