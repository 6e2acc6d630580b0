"""AOR -> shard mapping with jump consistent hashing.

Lamping & Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm" (2014): when the bucket
count grows from N to N+1 only ~1/(N+1) of the keys move, and they all move to the new bucket.
The 64-bit key comes from BLAKE2b of the canonical AOR, so the mapping is the same in every
process (Python's built-in hash() is salted per process).
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from routr_ray.location.aor import normalize_aor

_MASK64 = (1 << 64) - 1
_JUMP_MULTIPLIER = 2862933555777941757


def jump_hash(key: int, buckets: int) -> int:
    """Return the bucket in [0, buckets) for a 64-bit key."""
    if buckets < 1:
        raise ValueError(f"bucket count must be >= 1, got {buckets}")
    key &= _MASK64
    bucket, candidate = -1, 0
    while candidate < buckets:
        bucket = candidate
        key = (key * _JUMP_MULTIPLIER + 1) & _MASK64
        candidate = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def key_of(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


@lru_cache(maxsize=65536)  # a pure function; the same AORs are hashed again and again (an AOR that fails: not kept)
def shard_for_aor(aor: str, shard_count: int) -> int:
    """Shard index that owns `aor` (normalised first, so every spelling of one AOR agrees).

    Raises LocationError(INVALID_ARGUMENT) for an AOR the service would reject anyway.
    """
    return jump_hash(key_of(normalize_aor(aor)), shard_count)


def shard_for_normalized_aor(aor: str, shard_count: int) -> int:
    """Like shard_for_aor for an AOR already in canonical form (skips the parse)."""
    return jump_hash(key_of(aor), shard_count)
