"""Redis store (redis-py asyncio), write-through, one key per binding.

Key layout (P = key prefix, default ``routr:location``; S = shard id; see docs/location.md):

    P:{S}:bind:<aor>|<binding id> STRING  AddRouteRequest{aor, route} protobuf bytes, PX = time left
    P:{S}:bind-index              SET     the binding keys of shard S (pruned on reload)
    P:{S}:aff:<aor>|<c|r>|<value> STRING  JSON affinity entry, PX = affinity TTL
    P:{S}:aff-index               SET     the affinity keys of shard S (pruned on reload)
    P:{S}:rr                      HASH    <aor> -> round-robin counter
    P:{S}:shard-count             STRING  the shard count S last loaded with (triggers a rebalance)

Redis 7.0 has no per-field hash TTL, so every binding is its own key and Redis itself drops it when
the registration runs out. `{S}` is a Redis Cluster hash tag: one shard's keys share a slot.
The binding id is `routes.route_id()`: `ob:<instance>|<reg-id>`, `ct:<contact>` or `<host>|<port>|<transport>`;
a key written under an older identity rule is rewritten under its current id (and deleted) when the shard loads.
Binding and affinity keys sit under different type segments, so AOR data, per-call data and
affinity data can never collide (Routr's `<aor>:` prefix matched its per-call keys, routr.md §12).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from google.protobuf.message import DecodeError
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from routr_ray.location.errors import LocationError, unavailable
from routr_ray.location.routes import Route, route_id
from routr_ray.location.stores.base import (
    AffinityEntry,
    AffinityKind,
    LocationStore,
    SlicePager,
    SliceSnapshot,
    StoredBinding,
)
from routr_ray.proto.gen import location_pb2

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "routr:location"
DEFAULT_HOST = "localhost"
DEFAULT_PORT = 6379
# A dead Redis must never hang a call: connect and read are bounded, one immediate retry lets a
# pooled connection broken by a Redis restart reconnect, and the whole operation is capped.
CONNECT_TIMEOUT_S = 0.5
SOCKET_TIMEOUT_S = 1.0
OPERATION_TIMEOUT_S = 2.0
# A shard's slice is read a page at a time (SSCAN/HSCAN COUNT + MGET), each page under its own operation timeout,
# so a slice of any size loads and a failed page is simply asked again (SlicePager).
LOAD_CHUNK = 1000
# Each write is one atomic EVALSHA (key + index together), ~1.7x faster than MULTI/EXEC in redis-py.
# All keys of a script share the shard's hash tag, so this also works on Redis Cluster.
_PUT_BINDING = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], KEYS[1])
return 1
"""
_DELETE_BINDING = """
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], KEYS[1])
return 1
"""
# KEYS: affinity index, counters hash, entry keys...; ARGV: ttl ms, counter field ('' = none),
# counter value, entry values...
_PUT_AFFINITIES = """
for i = 3, #KEYS do
  redis.call('SET', KEYS[i], ARGV[i + 1], 'PX', ARGV[1])
  redis.call('SADD', KEYS[1], KEYS[i])
end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[2], ARGV[2], ARGV[3]) end
return 1
"""
_ROUTR_PARAMETER_KEYS = ("host", "port", "username", "password", "secure", "db")
_TRUE = ("true", "yes", "1", "on")
_FALSE = ("false", "no", "0", "off", "")


@dataclass(frozen=True, slots=True)
class RedisSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    username: str | None = None
    password: str | None = None
    secure: bool = False
    db: int = 0

    def __repr__(self) -> str:  # never print the password
        shown = "***" if self.password else None
        return (
            f"RedisSettings(host={self.host!r}, port={self.port}, username={self.username!r}, "
            f"password={shown!r}, secure={self.secure}, db={self.db})"
        )


def parse_redis_parameters(parameters: str | None) -> RedisSettings:
    """Parse Routr's `cache.parameters` for the redis provider.

    Accepts Routr's ``host=...,port=...,username=...,password=...,secure=...`` (plus ``db``) or a
    ``redis://[user[:password]@]host[:port][/db]`` / ``rediss://`` URL. Raises ValueError naming
    the offending part.
    """
    text = (parameters or "").strip()
    if not text:
        return RedisSettings()
    if "://" in text:
        return _parse_url(text)
    values: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep:
            raise ValueError(f"redis parameter {item.strip()!r} is not key=value")
        if key not in _ROUTR_PARAMETER_KEYS:
            raise ValueError(
                f"unknown redis parameter {key!r}; allowed: {', '.join(_ROUTR_PARAMETER_KEYS)}"
            )
        values[key] = value.strip()
    secure = values.get("secure", "false").lower()
    if secure not in _TRUE + _FALSE:
        raise ValueError(f"redis parameter secure={values['secure']!r} is not true/false")
    return RedisSettings(
        host=values.get("host") or DEFAULT_HOST,
        port=_port(values.get("port") or str(DEFAULT_PORT)),
        username=values.get("username") or None,
        password=values.get("password") or None,
        secure=secure in _TRUE,
        db=_db(values.get("db") or "0"),
    )


def _parse_url(text: str) -> RedisSettings:
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"redis URL scheme must be redis:// or rediss://, got {parts.scheme!r}://")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"redis URL has an invalid port: {exc}") from None
    path = parts.path.strip("/")
    return RedisSettings(
        host=parts.hostname or DEFAULT_HOST,
        port=port or DEFAULT_PORT,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        secure=parts.scheme == "rediss",
        db=_db(path or "0"),
    )


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"redis port {text!r} is not a number in 1..65535")
    return int(text)


def _db(text: str) -> int:
    if not text.isdigit():
        raise ValueError(f"redis db {text!r} is not a non-negative number")
    return int(text)


class RedisStore(LocationStore):
    """Persists one shard's slice in Redis; every method returns only after Redis acknowledged."""

    durable = True

    def __init__(
        self,
        settings: RedisSettings,
        shard_id: str = "0",
        *,
        prefix: str = DEFAULT_PREFIX,
        operation_timeout: float = OPERATION_TIMEOUT_S,
        client: aioredis.Redis | None = None,
    ) -> None:
        shard_id = str(shard_id)
        if not shard_id or any(c in shard_id for c in "{}*?[]"):
            raise ValueError(f"shard id {shard_id!r} must be non-empty without braces or glob characters")
        self.shard_id = shard_id
        self.settings = settings
        self._prefix = prefix
        self._timeout = operation_timeout
        self._redis = client or aioredis.Redis(
            host=settings.host,
            port=settings.port,
            username=settings.username,
            password=settings.password,
            ssl=settings.secure,
            db=settings.db,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            retry=Retry(NoBackoff(), 1),
            decode_responses=False,
        )
        self._put_binding = self._redis.register_script(_PUT_BINDING)
        self._delete_binding = self._redis.register_script(_DELETE_BINDING)
        self._put_affinities = self._redis.register_script(_PUT_AFFINITIES)

    # ---- keys ---------------------------------------------------------------------------------

    def _shard_prefix(self, shard_id: str | None = None) -> str:
        return f"{self._prefix}:{{{shard_id or self.shard_id}}}"

    def binding_key(self, aor: str, rid: str, shard_id: str | None = None) -> str:
        return f"{self._shard_prefix(shard_id)}:bind:{aor}|{rid}"

    def binding_index(self, shard_id: str | None = None) -> str:
        return f"{self._shard_prefix(shard_id)}:bind-index"

    def affinity_key(self, aor: str, kind: AffinityKind, value: str, shard_id: str | None = None) -> str:
        return f"{self._shard_prefix(shard_id)}:aff:{aor}|{kind.value}|{value}"

    def affinity_index(self, shard_id: str | None = None) -> str:
        return f"{self._shard_prefix(shard_id)}:aff-index"

    def counters_key(self, shard_id: str | None = None) -> str:
        return f"{self._shard_prefix(shard_id)}:rr"

    # ---- fault mapping ------------------------------------------------------------------------

    @asynccontextmanager
    async def _guard(self, operation: str) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._timeout):
                yield
        except LocationError:
            raise
        except (RedisError, OSError, TimeoutError) as exc:
            where = f"{self.settings.host}:{self.settings.port}"
            raise unavailable(
                f"location store (redis {where}) unavailable during {operation}: {type(exc).__name__}"
            ) from exc

    # ---- writes -------------------------------------------------------------------------------

    async def put_binding(self, aor: str, route_id: str, route: Route, ttl_ms: int) -> None:
        key = self.binding_key(aor, route_id)
        value = location_pb2.AddRouteRequest(aor=aor, route=route).SerializeToString()
        async with self._guard("put_binding"):
            await self._put_binding(keys=[key, self.binding_index()], args=[value, max(1, ttl_ms)])

    async def delete_binding(self, aor: str, route_id: str) -> None:
        key = self.binding_key(aor, route_id)
        async with self._guard("delete_binding"):
            await self._delete_binding(keys=[key, self.binding_index()])

    async def delete_aor(
        self, aor: str, route_ids: Iterable[str], affinities: Iterable[tuple[AffinityKind, str]]
    ) -> None:
        binding_keys = [self.binding_key(aor, rid) for rid in route_ids]
        affinity_keys = [self.affinity_key(aor, kind, value) for kind, value in affinities]
        async with self._guard("delete_aor"):
            pipe = self._redis.pipeline(transaction=True)
            if binding_keys:
                pipe.delete(*binding_keys)
                pipe.srem(self.binding_index(), *binding_keys)
            if affinity_keys:
                pipe.delete(*affinity_keys)
                pipe.srem(self.affinity_index(), *affinity_keys)
            pipe.hdel(self.counters_key(), aor)
            await pipe.execute()

    async def put_counter(self, aor: str, value: int) -> None:
        async with self._guard("put_counter"):
            await self._redis.hset(self.counters_key(), aor, value)

    async def put_affinities(
        self, entries: Sequence[AffinityEntry], ttl_ms: int, *, counter: tuple[str, int] | None = None
    ) -> None:
        if not entries and counter is None:
            return
        keys = [self.affinity_index(), self.counters_key()]
        keys += [self.affinity_key(entry.aor, entry.kind, entry.value) for entry in entries]
        field, value = counter if counter is not None else ("", 0)
        args: list[Any] = [max(1, ttl_ms), field, value, *(_encode_affinity(entry) for entry in entries)]
        async with self._guard("put_affinities"):
            await self._put_affinities(keys=keys, args=args)

    async def delete_affinities(self, aor: str, keys: Iterable[tuple[AffinityKind, str]]) -> None:
        affinity_keys = [self.affinity_key(aor, kind, value) for kind, value in keys]
        if not affinity_keys:
            return
        async with self._guard("delete_affinities"):
            pipe = self._redis.pipeline(transaction=True)
            pipe.delete(*affinity_keys)
            pipe.srem(self.affinity_index(), *affinity_keys)
            await pipe.execute()

    async def adopt_binding(self, binding: StoredBinding, ttl_ms: int) -> None:
        key = self.binding_key(binding.aor, binding.route_id)
        old_key = binding.source_key or self.binding_key(binding.aor, binding.route_id, binding.shard_id)
        value = location_pb2.AddRouteRequest(aor=binding.aor, route=binding.route).SerializeToString()
        async with self._guard("adopt_binding"):
            await self._put_binding(keys=[key, self.binding_index()], args=[value, max(1, ttl_ms)])
            if old_key != key:  # written first, deleted second: a crash in between leaves a copy, never none
                await self._delete_key(old_key, self.binding_index(binding.shard_id))

    async def discard_copy(self, binding: StoredBinding) -> None:
        if not binding.source_key:
            return
        async with self._guard("discard_copy"):
            await self._delete_key(binding.source_key, self.binding_index(binding.shard_id))

    async def _delete_key(self, key: str, index: str) -> None:
        pipe = self._redis.pipeline(transaction=False)  # maybe another shard's slot: no MULTI (cluster)
        pipe.delete(key)
        pipe.srem(index, key)
        await pipe.execute()

    # ---- reload -------------------------------------------------------------------------------

    def pager(self, *, all_shards: bool = False, page_size: int = LOAD_CHUNK) -> SlicePager:
        return _RedisSlicePager(self, all_shards, page_size)

    async def load_slice(self, *, all_shards: bool = False) -> SliceSnapshot:
        """The whole slice at once (every page, no retry): prefer :meth:`pager` for a large slice."""
        snapshot = SliceSnapshot()
        pager = self.pager(all_shards=all_shards)
        while (page := await pager.next_page()) is not None:
            snapshot.bindings.extend(page.bindings)
            snapshot.counters.update(page.counters)
            snapshot.affinities.extend(page.affinities)
        return snapshot

    def _decode_binding(self, shard_id: str, raw_key: bytes, value: bytes) -> StoredBinding:
        """A binding whose key does not follow the current identity (a key written when bindings were identified
        by host|port|transport only) is flagged `needs_rewrite`: the service rewrites it under its current key and
        deletes the old one."""
        stored = location_pb2.AddRouteRequest.FromString(value)
        rid = route_id(stored.route)
        key = raw_key.decode("utf-8", "surrogateescape")
        return StoredBinding(
            stored.aor, rid, stored.route, shard_id,
            source_key=key, needs_rewrite=key != self.binding_key(stored.aor, rid, shard_id),
        )

    async def _values_of(self, index_key: str, members: list[bytes], *, prune: bool) -> list[tuple[bytes, bytes]]:
        """(key, value) of the listed keys that still exist; members whose key expired leave the index."""
        if not members:
            return []
        found: list[Any] = await self._redis.mget(members)
        gone = [key for key, value in zip(members, found, strict=True) if value is None]
        if gone and prune:
            await self._redis.srem(index_key, *gone)
        return [(key, value) for key, value in zip(members, found, strict=True) if value is not None]

    def shard_count_key(self) -> str:
        return f"{self._shard_prefix()}:shard-count"

    async def get_shard_count(self) -> int | None:
        async with self._guard("get_shard_count"):
            raw = await self._redis.get(self.shard_count_key())
        return int(raw) if raw is not None and raw.isdigit() else None

    async def put_shard_count(self, count: int) -> None:
        async with self._guard("put_shard_count"):
            await self._redis.set(self.shard_count_key(), count)

    async def ping(self) -> None:
        async with self._guard("ping"):
            await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()


class _RedisSlicePager(SlicePager):
    """A shard's slice from Redis, one bounded step per page: (rebalance only) the shard ids, by SCAN of the
    ``bind-index`` keys; the round-robin counters, by HSCAN; each shard's bindings, by SSCAN of its index + MGET;
    the affinity entries, by SSCAN + MGET. A step that fails leaves the cursors as they were, so the next call
    asks the same page again. SCAN may return a member twice: the service's merge takes a copy once."""

    def __init__(self, store: RedisStore, all_shards: bool, page_size: int) -> None:
        self.store = store
        self.page_size = page_size
        self._phase = "shards" if all_shards else "counters"
        self._cursor = 0
        self._shard_ids: set[str] = {store.shard_id}
        self._pending: list[str] = []  # shard ids whose bindings are still to read (own first)

    async def next_page(self) -> SliceSnapshot | None:
        if self._phase == "done":
            return None
        store = self.store
        async with store._guard("load page"):
            page, cursor = await getattr(self, "_" + self._phase)()
        self._cursor = cursor  # only now: a failed step is asked again with the same cursor
        if cursor == 0:
            self._next_phase()
        return page

    def _next_phase(self) -> None:
        if self._phase == "shards":
            own = self.store.shard_id
            self._pending = [own, *sorted(self._shard_ids - {own})]
            self._phase = "counters"
        elif self._phase == "counters":
            if not self._pending:
                self._pending = [self.store.shard_id]
            self._phase = "bindings"
        elif self._phase == "bindings":
            self._pending.pop(0)
            self._phase = "bindings" if self._pending else "affinities"
        else:
            self._phase = "done"

    async def _shards(self) -> tuple[SliceSnapshot, int]:
        store = self.store
        head = f"{store._prefix}:{{"
        cursor, keys = await store._redis.scan(self._cursor, match=f"{store._prefix}:{{*}}:bind-index",
                                               count=self.page_size)
        for raw in keys:
            key = raw.decode()
            self._shard_ids.add(key[len(head) : key.rindex("}")])
        return SliceSnapshot(), int(cursor)

    async def _counters(self) -> tuple[SliceSnapshot, int]:
        cursor, raw = await self.store._redis.hscan(self.store.counters_key(), self._cursor, count=self.page_size)
        return SliceSnapshot(counters={k.decode(): int(v) for k, v in raw.items()}), int(cursor)

    async def _bindings(self) -> tuple[SliceSnapshot, int]:
        store = self.store
        shard_id = self._pending[0]
        index = store.binding_index(shard_id)
        cursor, members = await store._redis.sscan(index, self._cursor, count=self.page_size)
        pairs = await store._values_of(index, list(members), prune=shard_id == store.shard_id)
        page = SliceSnapshot()
        for key, value in pairs:
            try:
                page.bindings.append(store._decode_binding(shard_id, key, value))
            except (DecodeError, ValueError) as exc:  # one bad value must not stop the load of the slice
                log.warning("location shard %s: skipping the unreadable binding %r (%s)", store.shard_id, key, exc)
        return page, int(cursor)

    async def _affinities(self) -> tuple[SliceSnapshot, int]:
        store = self.store
        index = store.affinity_index()
        cursor, members = await store._redis.sscan(index, self._cursor, count=self.page_size)
        pairs = await store._values_of(index, list(members), prune=True)
        page = SliceSnapshot()
        for key, value in pairs:
            try:
                page.affinities.append(_decode_affinity(value))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("location shard %s: skipping the unreadable affinity entry %r (%s)", store.shard_id,
                            key, exc)
        return page, int(cursor)


def _encode_affinity(entry: AffinityEntry) -> bytes:
    return json.dumps(
        {
            "aor": entry.aor,
            "kind": entry.kind.value,
            "value": entry.value,
            "route_id": entry.route_id,
            "expires_at": entry.expires_at,
        },
        separators=(",", ":"),
    ).encode()


def _decode_affinity(raw: bytes) -> AffinityEntry:
    data = json.loads(raw)
    expires_at = float(data["expires_at"])
    return AffinityEntry(
        aor=data["aor"],
        kind=AffinityKind(data["kind"]),
        value=data["value"],
        route_id=data["route_id"],
        expires_at=expires_at if math.isfinite(expires_at) else 0.0,
    )
