"""Location config: Routr's `kind: Location` plus the number of shards.

spec:
  bindAddr: 127.0.0.1:51902     # gRPC Location API for outside callers (it can rewrite bindings)
  token: "..."                  # optional shared token for that API (env ROUTR_RAY_LOCATION_TOKEN wins)
  shards: 2
  cache:
    provider: memory            # memory | redis, any letter case (as in Routr)
    parameters: host=localhost,port=6379,username=u,password=p,secure=false
    # or: parameters: rediss://user:pass@redis.example:6380/0
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from routr_ray.config.problems import Place


class CacheProvider(StrEnum):
    MEMORY = "memory"
    REDIS = "redis"


@dataclass(frozen=True)
class RedisParameters:
    host: str = "localhost"
    port: int = 6379
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    secure: bool = False
    db: int = 0

    def url(self) -> str:
        """A URL for `redis.asyncio.Redis.from_url` (the password is in it: do not log it)."""
        scheme = "rediss" if self.secure else "redis"
        auth = ""
        if self.username is not None or self.password is not None:
            auth = quote(self.username or "", safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{auth}{host}:{self.port}/{self.db}"


@dataclass(frozen=True)
class CacheConfig:
    provider: CacheProvider = CacheProvider.MEMORY
    redis: RedisParameters | None = None  # set when provider is redis


@dataclass(frozen=True)
class LocationConfig:
    ref: str = "location"
    bind_addr: str = "127.0.0.1:51902"
    shards: int = 2
    cache: CacheConfig = CacheConfig()
    # Shared token callers of the gRPC API must send (`authorization: Bearer <token>` or `x-routr-token`);
    # None: every caller who reaches bindAddr is accepted. Never logged.
    token: str | None = field(default=None, repr=False)


TOKEN_ENV = "ROUTR_RAY_LOCATION_TOKEN"
SHORT_TOKEN = 16


_PARAMETER_KEYS = ("host", "port", "username", "password", "secure", "db")
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off")


def parse_redis_parameters(text: str) -> RedisParameters:
    """Routr's `host=...,port=...,username=...,password=...,secure=...` (plus `db`) or a `redis://` /
    `rediss://` URL. Raises ValueError naming the offending part. A password holding a comma needs the
    URL form (percent-encoded)."""
    text = text.strip()
    if text.startswith(("redis://", "rediss://")):
        return _parse_redis_url(text)
    values: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, equals, value = item.partition("=")
        key = key.strip().lower()
        if not equals:
            raise ValueError(f"expected key=value, got {item!r}")
        if key not in _PARAMETER_KEYS:
            raise ValueError(f"unknown parameter {key!r}; known: {', '.join(_PARAMETER_KEYS)}")
        if key in values:
            raise ValueError(f"parameter {key!r} is given twice")
        values[key] = value.strip()
    secure_text = values.get("secure", "false").lower()
    if secure_text not in _TRUE + _FALSE:
        raise ValueError(f"secure must be true or false, got {values['secure']!r}")
    return RedisParameters(
        host=values.get("host") or "localhost",
        port=_number("port", values.get("port", "6379"), 1, 65535),
        username=values.get("username") or None,
        password=values.get("password") or None,
        secure=secure_text in _TRUE,
        db=_number("db", values.get("db", "0"), 0, 1_000_000),
    )


def _parse_redis_url(text: str) -> RedisParameters:
    parts = urlsplit(text)
    if parts.query or parts.fragment:
        raise ValueError("query and fragment are not supported in the Redis URL")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ValueError("the port in the Redis URL is not a number from 1 to 65535") from None
    path = parts.path.strip("/")
    return RedisParameters(
        host=parts.hostname or "localhost",
        port=port,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        secure=parts.scheme == "rediss",
        db=_number("db (URL path)", path, 0, 1_000_000) if path else 0,
    )


def _number(name: str, text: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise ValueError(f"{name} must be a number from {low} to {high}, got {text!r}")
    return int(text)


def build_location(
    document: dict[str, Any], place: Place, environ: Mapping[str, str] | None = None
) -> LocationConfig:
    spec: dict[str, Any] = document["spec"]
    at = place.child("spec")
    bind_addr = spec.get("bindAddr", LocationConfig.bind_addr)
    return LocationConfig(
        ref=document.get("ref", LocationConfig.ref),
        bind_addr=bind_addr,
        shards=int(spec.get("shards", LocationConfig.shards)),
        cache=_cache(spec.get("cache") or {}, at.child("cache")),
        token=location_token(spec.get("token"), at.child("token"), os.environ if environ is None else environ),
    )


def location_token(configured: str | None, at: Place, environ: Mapping[str, str]) -> str | None:
    """The `ROUTR_RAY_LOCATION_TOKEN` environment variable (it wins, as `ROUTR_RAY_DISPATCHER_TOKEN` does for the
    dispatcher, and keeps the secret out of config files), else `spec.token`, else None (no token).

    Blank values count as unset. Problems are reported without the token itself.
    """
    from_env = environ.get(TOKEN_ENV, "").strip()
    token = from_env or (configured or "").strip() or None
    if token is None:
        return None
    where = TOKEN_ENV if from_env else "the Location API token"
    if any(not 0x21 <= ord(c) <= 0x7E for c in token):
        at.error(f"{where} must be printable ASCII without blanks (it travels as gRPC metadata)")
        return None
    if len(token) < SHORT_TOKEN:
        at.warn(f"{where} is shorter than {SHORT_TOKEN} characters: easy to guess")
    return token


def _cache(raw: dict[str, Any], at: Place) -> CacheConfig:
    provider = CacheProvider(raw.get("provider", "memory").lower())
    parameters = raw.get("parameters")
    if provider is CacheProvider.MEMORY:
        if parameters:
            at.child("parameters").warn("ignored: the memory provider takes no parameters")
        return CacheConfig(provider)
    return CacheConfig(provider, parse_redis_parameters(parameters or ""))  # the schema checked it
