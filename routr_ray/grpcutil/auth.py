"""Optional shared-token check for the internal gRPC ports (DESIGN §6b).

A caller sends ``authorization: Bearer <token>`` (or ``x-routr-token: <token>``) as gRPC metadata. Without a
configured token every caller is accepted: the port must then be firewalled (see cluster/README.md).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

TOKEN_METADATA_KEYS = ("authorization", "x-routr-token")


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
