"""A short, stable name for an EdgePort in the SIP we write: ``edge_tag(ref)``.

Calls cross EdgePorts (docs/distributed.md): a branch says which EdgePort owns its client transaction, and a
Record-Route entry says which EdgePort it names (its ``rre`` parameter), so that a message reaching another
EdgePort can be handed to the right one. Those values go on the wire, so they carry a hash of the EdgePort's
``ref`` rather than the ref itself (a ref may hold any character but a space, and it is nobody's business outside).
The EdgePort, the Connect processor and the actors that wire EdgePorts together compute the same tag from the
same ref; nothing has to be looked up.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

TAG_CHARS = 8


@lru_cache(maxsize=256)
def edge_tag(ref: str) -> str:
    """Eight lower-case hex digits naming EdgePort ``ref`` (32 bits: a collision between the few EdgePorts of one
    cluster is a one-in-a-billion event, and the launcher refuses to start two EdgePorts whose tags collide)."""
    return hashlib.sha256(b"routr-ray edgeport\x00" + ref.encode("utf-8", "surrogateescape")).hexdigest()[:TAG_CHARS]


def is_edge_tag(text: str) -> bool:
    """``text`` has the form of a tag (it may still name no EdgePort)."""
    return len(text) == TAG_CHARS and all(c in "0123456789abcdef" for c in text)


__all__ = ["TAG_CHARS", "edge_tag", "is_edge_tag"]
