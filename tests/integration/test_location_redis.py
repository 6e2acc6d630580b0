"""Location against a real redis-server (Debian `redis-server`, started here on a free port).

Runs every rule of tests/unit/test_location_service.py on RedisStore, then the Redis-only
behaviour: key layout and TTLs, pruning on reload, outage -> UNAVAILABLE -> recovery without a
restart, and a Redis that accepts but never answers (bounded, never hangs).
"""

from __future__ import annotations

import asyncio
import importlib.util
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from routr_ray.location import LocationError, LocationErrorCode, LocationService
from routr_ray.location.stores import create_store
from routr_ray.location.stores.redis import RedisSettings, RedisStore
from routr_ray.proto.gen import location_pb2
from tests.support.redis_server import RedisServer as _SupportRedisServer
from tests.support.redis_server import free_port

_spec = importlib.util.spec_from_file_location(
    "location_rules", Path(__file__).resolve().parents[1] / "unit" / "test_location_service.py"
)
assert _spec is not None and _spec.loader is not None
rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rules)



class RedisServer(_SupportRedisServer):
    @property
    def settings(self) -> RedisSettings:
        return RedisSettings(host="127.0.0.1", port=self.port)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:12]}"


class TestRulesOnRedis(rules.LocationRules):
    @pytest.fixture
    async def store_factory(self, redis_server: RedisServer, prefix: str) -> AsyncIterator[rules.StoreFactory]:
        opened: list[RedisStore] = []

        def make(shard: str) -> RedisStore:
            store = RedisStore(redis_server.settings, shard, prefix=prefix)
            opened.append(store)
            return store

        yield make
        for store in opened:
            await store.close()


@pytest.fixture
async def store(redis_server: RedisServer, prefix: str) -> AsyncIterator[RedisStore]:
    store = RedisStore(redis_server.settings, "0", prefix=prefix)
    yield store
    await store.close()


async def test_key_layout_ttls_and_no_collisions(redis_server: RedisServer, store: RedisStore, prefix: str) -> None:
    service = LocationService(store, sweep_interval=0)
    aor = "backend:voice"
    await service.add_route(aor, location_pb2.Route(host="10.0.0.1", port="5060", expires=120))
    await service.find_routes(aor, call_id="aor", session_affinity_ref="backend:voice",
                              backend=rules.rr(affinity=True))
    client = redis_server.client()
    keys = sorted(k.decode() for k in client.keys(f"{prefix}:*"))
    shard = f"{prefix}:{{0}}"
    assert keys == sorted([
        f"{shard}:bind:backend:voice|10.0.0.1|5060|0",
        f"{shard}:bind-index",
        f"{shard}:aff:backend:voice|c|aor",
        f"{shard}:aff:backend:voice|r|backend:voice",
        f"{shard}:aff-index",
        f"{shard}:rr",
    ])
    assert 119_000 < client.pttl(f"{shard}:bind:backend:voice|10.0.0.1|5060|0") <= 120_000
    assert 3_599_000 < client.pttl(f"{shard}:aff:backend:voice|c|aor") <= 3_600_000
    stored = location_pb2.AddRouteRequest.FromString(client.get(f"{shard}:bind:backend:voice|10.0.0.1|5060|0"))
    assert stored.aor == aor and stored.route.host == "10.0.0.1" and stored.route.registered_on > 0
    assert client.hget(f"{shard}:rr", aor) == b"1"
    # An AOR lookup never sees the per-call or affinity data (Routr's prefix collision, routr.md §12).
    assert len(await service.find_routes(aor)) == 1
    client.close()


async def test_redis_drops_stale_bindings_and_reload_prunes_the_index(
    redis_server: RedisServer, store: RedisStore, prefix: str
) -> None:
    service = LocationService(store, sweep_interval=0)
    await service.add_route("sip:short@sip.local", location_pb2.Route(host="10.0.0.1", expires=1))
    await service.add_route("sip:long@sip.local", location_pb2.Route(host="10.0.0.2", expires=600))
    client = redis_server.client()
    assert client.scard(f"{prefix}:{{0}}:bind-index") == 2
    await asyncio.sleep(1.1)  # Redis expires the key by itself (PX from `expires`)
    assert client.exists(f"{prefix}:{{0}}:bind:sip:short@sip.local|10.0.0.1||0") == 0
    fresh = LocationService(RedisStore(redis_server.settings, "0", prefix=prefix), sweep_interval=0)
    assert await fresh.load() == 1
    assert client.scard(f"{prefix}:{{0}}:bind-index") == 1
    await fresh.close()
    client.close()


async def test_shards_keep_separate_slices(redis_server: RedisServer, prefix: str) -> None:
    a = LocationService(RedisStore(redis_server.settings, "0", prefix=prefix), sweep_interval=0)
    b = LocationService(RedisStore(redis_server.settings, "1", prefix=prefix), sweep_interval=0)
    await a.add_route("sip:a@x", location_pb2.Route(host="10.0.0.1", expires=60))
    await b.add_route("sip:b@x", location_pb2.Route(host="10.0.0.2", expires=60))
    a2 = LocationService(RedisStore(redis_server.settings, "0", prefix=prefix), sweep_interval=0)
    assert await a2.load() == 1 and await a2.find_routes("sip:b@x") == []
    for service in (a, b, a2):
        await service.close()


async def test_outage_is_unavailable_then_recovers_without_restart() -> None:
    server = RedisServer()
    server.start()
    service = LocationService(create_store("redis", f"redis://127.0.0.1:{server.port}", shard_id="0"), sweep_interval=0)
    try:
        await service.add_route("sip:1001@sip.local", location_pb2.Route(host="10.0.0.1", expires=60))
        server.stop()
        started = time.monotonic()
        with pytest.raises(LocationError) as info:
            await service.add_route("sip:1001@sip.local", location_pb2.Route(host="10.0.0.2", expires=60))
        assert info.value.code is LocationErrorCode.UNAVAILABLE
        assert "unavailable" in info.value.message and time.monotonic() - started < 2.5
        with pytest.raises(LocationError) as info:
            await service.remove_routes("sip:1001@sip.local")
        assert info.value.code is LocationErrorCode.UNAVAILABLE
        assert [r.host for r in await service.find_routes("sip:1001@sip.local")] == ["10.0.0.1"]
        server.start()  # same port, empty (no persistence): the service writes on, no restart
        await service.add_route("sip:1001@sip.local", location_pb2.Route(host="10.0.0.2", expires=60))
        assert len(await service.find_routes("sip:1001@sip.local")) == 2
        client = server.client()
        assert client.scard("routr:location:{0}:bind-index") == 1
        client.close()
    finally:
        await service.close()
        server.cleanup()


async def test_unreachable_redis_never_falls_back_to_memory() -> None:
    service = LocationService(RedisStore(RedisSettings("127.0.0.1", free_port()), "0"), sweep_interval=0)
    with pytest.raises(LocationError) as info:
        await service.load()
    assert info.value.code is LocationErrorCode.UNAVAILABLE
    with pytest.raises(LocationError) as info:
        await service.add_route("sip:1001@sip.local", location_pb2.Route(host="10.0.0.1", expires=60))
    assert info.value.code is LocationErrorCode.UNAVAILABLE
    assert service.binding_count == 0
    await service.close()


async def test_a_redis_that_never_answers_is_bounded() -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections (kernel backlog) but never replies
    port = silent.getsockname()[1]
    service = LocationService(RedisStore(RedisSettings("127.0.0.1", port), "0"), sweep_interval=0)
    try:
        started = time.monotonic()
        with pytest.raises(LocationError) as info:
            await service.add_route("sip:1001@sip.local", location_pb2.Route(host="10.0.0.1", expires=60))
        elapsed = time.monotonic() - started
        assert info.value.code is LocationErrorCode.UNAVAILABLE
        assert elapsed < 2.5, elapsed
    finally:
        await service.close()
        silent.close()


# ---- binding identity on Redis: key layout and migration of keys written by host|port|transport ----------


async def test_contact_and_outbound_bindings_have_their_own_keys(
    redis_server: RedisServer, store: RedisStore, prefix: str
) -> None:
    service = LocationService(store, sweep_interval=0)
    aor = "sip:1001@sip.local"
    await service.add_route(aor, location_pb2.Route(host="10.0.0.5", port="5060", expires=60,
                                                    contact_uri="<sip:1001@10.0.0.5:5060;ob>"))
    await service.add_route(aor, location_pb2.Route(host="10.0.0.5", port="5060", expires=60,
                                                    contact_uri="sip:1001@10.0.0.5:5062"))
    await service.add_route(aor, location_pb2.Route(host="10.0.0.5", port="5060", expires=60,
                                                    instance_id="<urn:uuid:AB>", reg_id=1))
    client = redis_server.client()
    shard = f"{prefix}:{{0}}"
    assert sorted(k.decode() for k in client.smembers(f"{shard}:bind-index")) == sorted([
        f"{shard}:bind:{aor}|ct:sip:1001@10.0.0.5:5060",
        f"{shard}:bind:{aor}|ct:sip:1001@10.0.0.5:5062",
        f"{shard}:bind:{aor}|ob:<urn:uuid:ab>|1",
    ])
    client.close()


def _write_legacy(client: object, prefix: str, aor: str, route: location_pb2.Route, ttl_ms: int = 60_000) -> str:
    """A key as the host|port|transport identity wrote it (before contact/outbound identity)."""
    key = f"{prefix}:{{0}}:bind:{aor}|{route.host.lower()}|{route.port}|{int(route.transport)}"
    value = location_pb2.AddRouteRequest(aor=aor, route=route).SerializeToString()
    client.set(key, value, px=ttl_ms)  # type: ignore[attr-defined]
    client.sadd(f"{prefix}:{{0}}:bind-index", key)  # type: ignore[attr-defined]
    return key


async def test_reload_rewrites_keys_of_the_old_identity(redis_server: RedisServer, prefix: str) -> None:
    client = redis_server.client()
    aor = "sip:1001@sip.local"
    now_ms = int(time.time() * 1000)
    legacy = _write_legacy(client, prefix, aor, location_pb2.Route(
        host="10.0.0.5", port="5060", expires=600, registered_on=now_ms, contact_uri="sip:1001@10.0.0.5:5060"),
        ttl_ms=600_000)
    untouched = _write_legacy(client, prefix, aor, location_pb2.Route(
        host="10.0.0.7", port="5060", expires=600, registered_on=now_ms))  # a Routr client: same key today
    service = LocationService(RedisStore(redis_server.settings, "0", prefix=prefix), sweep_interval=0)
    assert await service.load() == 2
    new_key = f"{prefix}:{{0}}:bind:{aor}|ct:sip:1001@10.0.0.5:5060"
    assert client.exists(legacy) == 0 and client.exists(new_key) == 1 and client.exists(untouched) == 1
    assert 590_000 < client.pttl(new_key) <= 600_000  # TTL kept: time left of the registration
    assert sorted(k.decode() for k in client.smembers(f"{prefix}:{{0}}:bind-index")) == sorted([new_key, untouched])
    # expires 0 for that Contact now removes it for good: nothing resurrects on the next reload
    await service.add_route(aor, location_pb2.Route(host="10.0.0.9", expires=0, contact_uri="sip:1001@10.0.0.5:5060"))
    await service.close()
    fresh = LocationService(RedisStore(redis_server.settings, "0", prefix=prefix), sweep_interval=0)
    assert await fresh.load() == 1
    assert [r.host for r in await fresh.find_routes(aor)] == ["10.0.0.7"]
    await fresh.close()
    client.close()


async def test_reload_keeps_the_newest_of_duplicate_old_keys(redis_server: RedisServer, prefix: str) -> None:
    client = redis_server.client()
    aor = "sip:1001@sip.local"
    now_ms = int(time.time() * 1000)
    contact = "sip:1001@pc.example:5060"
    older = _write_legacy(client, prefix, aor, location_pb2.Route(
        host="10.0.0.5", port="5060", expires=600, registered_on=now_ms - 5000, contact_uri=contact))
    newer = _write_legacy(client, prefix, aor, location_pb2.Route(
        host="10.0.0.6", port="5060", expires=600, registered_on=now_ms, contact_uri=contact))
    # and a current-layout copy older than both (written before an in-place upgrade went wrong)
    store = RedisStore(redis_server.settings, "0", prefix=prefix)
    current_key = store.binding_key(aor, f"ct:{contact}")
    await store.put_binding(aor, f"ct:{contact}", location_pb2.Route(
        host="10.0.0.4", port="5060", expires=600, registered_on=now_ms - 9000, contact_uri=contact), 600_000)
    service = LocationService(store, sweep_interval=0)
    assert await service.load() == 1
    assert [r.host for r in await service.find_routes(aor)] == ["10.0.0.6"]
    assert client.exists(older) == 0 and client.exists(newer) == 0
    assert [k.decode() for k in client.smembers(f"{prefix}:{{0}}:bind-index")] == [current_key]
    stored = location_pb2.AddRouteRequest.FromString(client.get(current_key))
    assert stored.route.host == "10.0.0.6"
    await service.close()
    client.close()


async def test_an_unreadable_value_is_skipped_and_the_rest_of_the_slice_loads(
    redis_server: RedisServer, prefix: str
) -> None:
    store = RedisStore(redis_server.settings, "0", prefix=prefix)
    service = LocationService(store, sweep_interval=0)
    await service.add_route("sip:good@sip.local", location_pb2.Route(host="10.0.0.1", expires=60))
    client = redis_server.client()
    bad = f"{prefix}:{{0}}:bind:sip:bad@sip.local|x"
    client.set(bad, b"\xff\xff not a protobuf", px=60_000)
    client.sadd(f"{prefix}:{{0}}:bind-index", bad)
    client.set(f"{prefix}:{{0}}:aff:x", b"{not json", px=60_000)
    client.sadd(f"{prefix}:{{0}}:aff-index", f"{prefix}:{{0}}:aff:x")
    fresh = LocationService(RedisStore(redis_server.settings, "0", prefix=prefix), sweep_interval=0)
    assert await fresh.load() == 1
    assert [r.host for r in await fresh.find_routes("sip:good@sip.local")] == ["10.0.0.1"]
    for s in (service, fresh):
        await s.close()
    client.close()
