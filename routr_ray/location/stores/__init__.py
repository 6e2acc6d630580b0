"""Location stores and the provider switch (`cache.provider` in the Location config)."""

from __future__ import annotations

from routr_ray.location.stores.base import (
    AffinityEntry,
    AffinityKind,
    LocationStore,
    SlicePager,
    SliceSnapshot,
    StoredBinding,
)
from routr_ray.location.stores.memory import MemoryStore

PROVIDERS = ("memory", "redis")


def create_store(
    provider: str = "memory", parameters: str | None = None, *, shard_id: str | int = "0", **redis_options: object
) -> LocationStore:
    """Build the store for `provider` (case-insensitive `memory` | `redis`).

    `parameters` is Routr's `host=...,port=...` string or a redis:// / rediss:// URL (redis only).
    Raises ValueError for an unknown provider or bad parameters.
    """
    name = (provider or "memory").strip().lower()
    if name == "memory":
        return MemoryStore(str(shard_id))
    if name == "redis":
        from routr_ray.location.stores.redis import RedisStore, parse_redis_parameters

        return RedisStore(parse_redis_parameters(parameters), str(shard_id), **redis_options)  # type: ignore[arg-type]
    raise ValueError(f"unknown location cache provider {provider!r}; expected one of {', '.join(PROVIDERS)}")


__all__ = [
    "PROVIDERS",
    "AffinityEntry",
    "AffinityKind",
    "LocationStore",
    "MemoryStore",
    "SlicePager",
    "SliceSnapshot",
    "StoredBinding",
    "create_store",
]
