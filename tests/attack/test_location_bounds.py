"""Issue 14 item 10 (Location): the affinity table is bounded, a shard's slice loads in pages however large it
is, and a shard that restarts while Redis is down serves again when Redis is back.

Integration level: the shard's own code (LocationService with the store the shard actor builds) driven directly,
against a real redis-server started here on a free port (tests/support/redis_server.py; never 6379).

* 100,000 distinct Call-IDs to a backend with session affinity: the table holds at most its cap and the memory
  of the shard stops growing once the cap is reached. The test sets a cap of 10,000 (the shipped cap is
  100,000: showing the bound at that size would need several hundred thousand calls, and nothing else differs).
* 1,000,000 bindings in Redis: a restarted shard loads them page by page (each page under its own 2 s timeout;
  before, one SMEMBERS + MGETs under one 2 s timeout failed); the time is printed (`-s` shows it).
* Redis down for 10 s while the shard (re)starts: every call meanwhile is answered UNAVAILABLE within the
  store's timeout (no hang; the processor answers 503 + Retry-After), and once Redis is back the load resumes
  and every binding is served.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
import uuid
from collections.abc import Iterator

import pytest

from routr_ray.location import LocationError, LocationErrorCode, LocationService
from routr_ray.location.routes import route_id
from routr_ray.location.stores import MemoryStore
from routr_ray.location.stores.redis import RedisSettings, RedisStore
from routr_ray.proto.gen import location_pb2
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.timeout(600)

Backend = location_pb2.FindRoutesRequest.Backend


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


# ---- the affinity table ------------------------------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_100k_distinct_call_ids_leave_the_affinity_table_and_memory_bounded() -> None:
    cap = 10_000
    service = LocationService(MemoryStore("0", max_affinities=cap), sweep_interval=0, max_affinities=cap)
    backend = Backend(ref="conf", algorithm=Backend.ROUND_ROBIN, with_session_affinity=True)
    for i in range(3):
        await service.add_route("backend:conf", location_pb2.Route(host=f"10.0.0.{i}", port="5060", expires=3600))

    async def calls(start: int, stop: int) -> None:
        for n in range(start, stop):
            routes = await service.find_routes("backend:conf", call_id=f"{uuid.uuid4().hex}-{n}", backend=backend)
            assert len(routes) == 1

    await calls(0, 4 * cap)  # past the cap: the table is full, evicting
    gc.collect()
    at_cap = rss_bytes()
    await calls(4 * cap, 100_000)  # 60,000 more distinct Call-IDs
    gc.collect()
    after = rss_bytes()
    assert service.affinity_count == cap
    assert len(service.store._affinities) == cap  # type: ignore[attr-defined]  # the memory store's copy too
    # unbounded, 60,000 more entries (table + store) grow the process by ~40 MB; bounded, by nothing
    assert after - at_cap < 8_000_000, (at_cap, after)
    # a call still in progress keeps its pin while it is used: the most recent pins are the ones kept
    recent = "recent-call"
    first = await service.find_routes("backend:conf", call_id=recent, backend=backend)
    await calls(100_000, 100_000 + cap // 2)
    again = await service.find_routes("backend:conf", call_id=recent, backend=backend)
    assert [r.host for r in again] == [r.host for r in first]


# ---- a large slice -----------------------------------------------------------------------------------------

# Bindings written server-side by a Lua script from one template (Python would take ~25 s to send a million):
# the template's 7-digit placeholder becomes the binding's number in the AOR, its Contact and its key.
_POPULATE = """
local prefix, template, first, last, ttl = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local members = {}
for i = first, last do
  local n = string.format('%07d', i)
  local key = string.gsub(ARGV[5], '0000000', n)
  redis.call('SET', key, (string.gsub(template, '0000000', n)), 'PX', ttl)
  members[#members + 1] = key
  if #members == 5000 then redis.call('SADD', prefix, unpack(members)); members = {} end
end
if #members > 0 then redis.call('SADD', prefix, unpack(members)) end
return 1
"""


def populate(server: RedisServer, store: RedisStore, count: int) -> None:
    now_ms = int(time.time() * 1000)
    aor = "sip:u0000000@sip.local"
    route = location_pb2.Route(host="10.0.0.1", port="5060", expires=3600, registered_on=now_ms,
                               contact_uri="sip:u0000000@10.0.0.1:5060")
    template = location_pb2.AddRouteRequest(aor=aor, route=route).SerializeToString()
    key = store.binding_key(aor, route_id(route))
    client = server.client()
    try:
        script = client.register_script(_POPULATE)
        for first in range(0, count, 100_000):
            script(keys=[store.binding_index()],
                   args=[template, first, min(first + 100_000, count) - 1, 3_600_000, key])
        assert client.scard(store.binding_index()) == count
    finally:
        client.close()


def aor_of(i: int) -> str:
    return f"sip:u{i:07d}@sip.local"


async def test_a_restarted_shard_loads_a_million_bindings_in_pages(redis_server: RedisServer) -> None:
    settings = RedisSettings("127.0.0.1", redis_server.port)
    count = 1_000_000
    started = time.monotonic()
    populate(redis_server, RedisStore(settings, "0"), count)
    populated = time.monotonic() - started
    service = LocationService(RedisStore(settings, "0"), sweep_interval=0)
    try:
        started = time.monotonic()
        service.start_loading()
        # the shard serves while it loads: calls are answered (found, or UNAVAILABLE if not read yet), never hang
        await asyncio.sleep(0.5)
        assert service.loading
        for i in (1, count // 2, count - 1):
            probe = time.monotonic()
            try:
                found = await service.find_routes(aor_of(i))
                assert [r.host for r in found] == ["10.0.0.1"]
            except LocationError as exc:
                assert exc.code is LocationErrorCode.UNAVAILABLE
            assert time.monotonic() - probe < 1.0
        # a registration made during the load is kept (and wins over the stored copy the load reads later)
        await service.add_route(aor_of(7), location_pb2.Route(
            host="10.9.9.9", port="5060", expires=3600, contact_uri="sip:u0000007@10.0.0.1:5060"))
        loaded = await asyncio.wait_for(service.loaded(), 300)
        elapsed = time.monotonic() - started
        print(f"\n1,000,000 bindings: populated in {populated:.1f}s, loaded in {elapsed:.1f}s")
        assert not service.loading
        assert service.binding_count == count and loaded == count - 1
        for i in (0, 123_456, count - 1):
            assert [r.host for r in await service.find_routes(aor_of(i))] == ["10.0.0.1"]
        assert [r.host for r in await service.find_routes(aor_of(7))] == ["10.9.9.9"]
    finally:
        await service.close()


# ---- Redis down during a shard restart ---------------------------------------------------------------------


async def test_a_shard_restarted_while_redis_is_down_serves_again_when_redis_is_back(
    redis_server: RedisServer,
) -> None:
    settings = RedisSettings("127.0.0.1", redis_server.port)
    count = 5_000
    populate(redis_server, RedisStore(settings, "0"), count)
    client = redis_server.client()
    try:
        client.shutdown(save=True)  # the data survives in dump.rdb; the port refuses connections meanwhile
    except Exception:  # noqa: BLE001 - the connection drops as the server exits
        pass
    finally:
        client.close()
    redis_server.stop()
    service = LocationService(RedisStore(settings, "0"), sweep_interval=0)
    try:
        down_at = time.monotonic()
        service.start_loading()  # what the shard actor's constructor does: it returns at once
        while time.monotonic() - down_at < 10.0:  # Redis down for 10 s
            for call in (
                service.find_routes(aor_of(42)),
                service.add_route(aor_of(43), location_pb2.Route(host="10.0.0.2", expires=60)),
                service.remove_routes(aor_of(44)),
            ):
                probe = time.monotonic()
                with pytest.raises(LocationError) as info:
                    await call
                assert info.value.code is LocationErrorCode.UNAVAILABLE
                assert time.monotonic() - probe < 2.5  # bounded by the store's timeout: 503 + retry, not a hang
            assert service.loading
            await asyncio.sleep(0.5)
        redis_server.start()  # same port and directory: the data is back
        back_at = time.monotonic()
        loaded = await asyncio.wait_for(service.loaded(), 60)
        print(f"\nRedis back: {loaded} bindings loaded {time.monotonic() - back_at:.1f}s later")
        assert loaded == count and not service.loading
        assert [r.host for r in await service.find_routes(aor_of(42))] == ["10.0.0.1"]
        await service.add_route(aor_of(43), location_pb2.Route(host="10.0.0.2", port="5060", expires=60))
        assert len(await service.find_routes(aor_of(43))) == 2
    finally:
        await service.close()
