"""Location service logic (bindings, expiry, balancing, affinity) and its stores. No Ray here."""

from routr_ray.location.aor import normalize_aor
from routr_ray.location.errors import LocationError, LocationErrorCode
from routr_ray.location.hashing import jump_hash, shard_for_aor
from routr_ray.location.service import LocationService
from routr_ray.location.stores import create_store

__all__ = [
    "LocationError",
    "LocationErrorCode",
    "LocationService",
    "create_store",
    "jump_hash",
    "normalize_aor",
    "shard_for_aor",
]
