"""Location shards on a real local Ray: gRPC API, shard kill and reload from Redis, balancing across callers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import grpc
import pytest
import ray

from routr_ray.actors.location import (
    SHARD_NAME,
    ShardedLocationClient,
    deploy_api,
    deploy_shards,
)
from routr_ray.location.hashing import shard_for_aor
from routr_ray.proto.gen import common_pb2, location_pb2, location_pb2_grpc
from tests.support.redis_server import RedisServer, free_port

SHARDS = 4
N_AORS = 1000
Backend = location_pb2.FindRoutesRequest.Backend


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def location(ray_session: None, redis_server: RedisServer) -> Iterator[int]:
    handles = deploy_shards(SHARDS, "redis", redis_server.url)
    port = free_port()
    api = deploy_api(f"127.0.0.1:{port}", SHARDS)
    yield port
    for handle in [*handles, api]:
        ray.kill(handle, no_restart=True)


def _route(i: int, port: int = 5060, **kw: object) -> location_pb2.Route:
    return location_pb2.Route(host=f"10.1.{i // 250}.{i % 250}", port=str(port), transport=common_pb2.UDP,
                              expires=3600, **kw)


async def _register_all(stub: location_pb2_grpc.LocationStub) -> None:
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> None:
        async with sem:
            await stub.AddRoute(location_pb2.AddRouteRequest(aor=f"sip:user{i:04d}@sip.local", route=_route(i)))

    await asyncio.gather(*(one(i) for i in range(N_AORS)))


async def _count_found(stub: location_pb2_grpc.LocationStub) -> int:
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> bool:
        async with sem:
            reply = await stub.FindRoutes(location_pb2.FindRoutesRequest(aor=f"sip:user{i:04d}@sip.local"))
            return [r.host for r in reply.routes] == [_route(i).host]

    return sum(await asyncio.gather(*(one(i) for i in range(N_AORS))))


def test_killed_shard_reloads_every_binding_from_redis(location: int) -> None:
    async def scenario() -> tuple[int, int]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{location}") as channel:
            stub = location_pb2_grpc.LocationStub(channel)
            await _register_all(stub)
            before = await _count_found(stub)
            victim = ray.get_actor(SHARD_NAME.format(index=1), namespace="routr")
            ray.kill(victim, no_restart=False)
            deadline = time.monotonic() + 30
            while True:  # calls fail with UNAVAILABLE while the shard restarts and reloads
                try:
                    await stub.FindRoutes(location_pb2.FindRoutesRequest(aor="sip:probe@sip.local"))
                    after = await _count_found(stub)
                    break
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                    assert time.monotonic() < deadline, "shard did not come back"
                    await asyncio.sleep(0.2)
            return before, after

    before, after = asyncio.run(scenario())
    assert before == N_AORS
    assert after == N_AORS, f"{N_AORS - after} AORs lost after the shard restart"
    owned = sum(1 for i in range(N_AORS) if shard_for_aor(f"sip:user{i:04d}@sip.local", SHARDS) == 1)
    assert owned > 100  # the killed shard really held a share of them


def test_an_operation_sent_as_a_shard_dies_waits_for_it_instead_of_failing(location: int) -> None:
    """Issue 18 item 5: the shard is killed (Ray restarts it) and an AddRoute for an AOR it owns is sent at once;
    the client holds it until the shard is back (ShardedLocationClient's hold) instead of answering UNAVAILABLE,
    and the binding is found after."""
    aor = next(a for a in (f"sip:held{i}@sip.local" for i in range(1000)) if shard_for_aor(a, SHARDS) == 2)

    async def scenario() -> tuple[float, list[str]]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{location}") as channel:
            stub = location_pb2_grpc.LocationStub(channel)
            await stub.FindRoutes(location_pb2.FindRoutesRequest(aor=aor))  # the API's link to shard 2 is up
            ray.kill(ray.get_actor(SHARD_NAME.format(index=2), namespace="routr"), no_restart=False)
            started = time.monotonic()
            await stub.AddRoute(location_pb2.AddRouteRequest(aor=aor, route=_route(7, port=5099)), timeout=10)
            took = time.monotonic() - started
            reply = await stub.FindRoutes(location_pb2.FindRoutesRequest(aor=aor), timeout=10)
            return took, [f"{r.host}:{r.port}" for r in reply.routes]

    took, found = asyncio.run(scenario())
    assert found == [f"{_route(7).host}:5099"]
    assert took < 8.0


def test_round_robin_is_fair_across_two_callers(location: int) -> None:
    aor = "backend:voice"

    async def scenario() -> list[str]:
        callers = [ShardedLocationClient([ray.get_actor(SHARD_NAME.format(index=i), namespace="routr")
                                          for i in range(SHARDS)]) for _ in range(2)]
        for i in range(3):
            await callers[0].add_route(location_pb2.AddRouteRequest(aor=aor, route=_route(i, 5070 + i)))
        picks = []
        for n in range(30):
            reply = await callers[n % 2].find_routes(location_pb2.FindRoutesRequest(
                aor=aor, backend=Backend(ref="voice", algorithm=Backend.ROUND_ROBIN)))
            picks.append(reply.routes[0].port)
        return picks

    picks = asyncio.run(scenario())
    assert sorted(set(picks)) == ["5070", "5071", "5072"]
    assert all(picks[i] != picks[i + 1] for i in range(len(picks) - 1))
    assert all(picks.count(p) == 10 for p in set(picks))


def test_least_sessions_and_session_affinity(location: int) -> None:
    aor = "backend:conf"

    async def scenario() -> tuple[str, set[str]]:
        client = ShardedLocationClient([ray.get_actor(SHARD_NAME.format(index=i), namespace="routr")
                                        for i in range(SHARDS)])
        for i, sessions in enumerate((7, 2, 9)):
            await client.add_route(location_pb2.AddRouteRequest(
                aor=aor, route=_route(i, 5080 + i, session_count=sessions)))
        least = await client.find_routes(location_pb2.FindRoutesRequest(
            aor=aor, backend=Backend(ref="conf", algorithm=Backend.LEAST_SESSIONS)))
        picks = set()
        for _ in range(100):
            reply = await client.find_routes(location_pb2.FindRoutesRequest(
                aor=aor, call_id="call-42",
                backend=Backend(ref="conf", algorithm=Backend.ROUND_ROBIN, with_session_affinity=True)))
            picks.add(reply.routes[0].port)
        return least.routes[0].port, picks

    least, picks = asyncio.run(scenario())
    assert least == "5081"
    assert len(picks) == 1


def test_api_with_a_token_refuses_callers_without_it(location: int) -> None:
    port = free_port()
    token = "cluster-test-token-0123456789"
    api = deploy_api(f"127.0.0.1:{port}", SHARDS, token, name="location-api-with-token")

    async def scenario() -> tuple[grpc.StatusCode, int]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = location_pb2_grpc.LocationStub(channel)
            request = location_pb2.AddRouteRequest(aor="sip:tok@sip.local", route=_route(7))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.AddRoute(request, metadata=(("authorization", "Bearer wrong"),))
            await stub.AddRoute(request, metadata=(("authorization", f"Bearer {token}"),))
            reply = await stub.FindRoutes(location_pb2.FindRoutesRequest(aor="sip:tok@sip.local"),
                                          metadata=(("x-routr-token", token),))
            return refused.value.code(), len(reply.routes)

    try:
        code, found = asyncio.run(scenario())
    finally:
        ray.kill(api, no_restart=True)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert found == 1


def test_a_redeploy_with_a_new_token_takes_effect_and_an_open_address_needs_one(location: int) -> None:
    from routr_ray.grpcutil.auth import OpenPortRefused

    port = free_port()
    name = "location-api-rotated"
    with pytest.raises(OpenPortRefused, match="ROUTR_RAY_LOCATION_TOKEN"):
        deploy_api(f"0.0.0.0:{port}", SHARDS, None, name=name)  # refused before any actor starts

    async def find(token: str) -> grpc.StatusCode:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                await location_pb2_grpc.LocationStub(channel).FindRoutes(
                    location_pb2.FindRoutesRequest(aor="sip:rot@sip.local"), metadata=(("x-routr-token", token),),
                    timeout=10)
            except grpc.aio.AioRpcError as exc:
                return exc.code()
            return grpc.StatusCode.OK

    old, new = "old-token-0123456789abcdef", "new-token-0123456789abcdef"
    api = deploy_api(f"127.0.0.1:{port}", SHARDS, old, name=name)
    try:
        assert asyncio.run(find(old)) == grpc.StatusCode.OK
        api = deploy_api(f"127.0.0.1:{port}", SHARDS, new, name=name)  # the running actor had the old one
        assert asyncio.run(find(old)) == grpc.StatusCode.UNAUTHENTICATED
        assert asyncio.run(find(new)) == grpc.StatusCode.OK
    finally:
        ray.kill(api, no_restart=True)


def test_contacts_from_one_address_are_separate_bindings_through_the_shards(location: int) -> None:
    aor = "sip:multi@sip.local"

    async def scenario() -> list[str]:
        client = ShardedLocationClient([ray.get_actor(SHARD_NAME.format(index=i), namespace="routr")
                                        for i in range(SHARDS)])
        for port in (5060, 5062):
            await client.add_route(location_pb2.AddRouteRequest(
                aor=aor, route=_route(1, contact_uri=f"sip:multi@10.1.0.1:{port}")))
        reply = await client.find_routes(location_pb2.FindRoutesRequest(aor=aor))
        return sorted(r.contact_uri for r in reply.routes)

    assert asyncio.run(scenario()) == ["sip:multi@10.1.0.1:5060", "sip:multi@10.1.0.1:5062"]


def test_shards_export_bindings_and_operation_metrics(location: int) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    aor = next(f"sip:metrics{i}@sip.local" for i in range(100) if shard_for_aor(f"sip:metrics{i}@sip.local", SHARDS) == 2)

    async def touch() -> None:
        client = ShardedLocationClient([ray.get_actor(SHARD_NAME.format(index=i), namespace="routr")
                                        for i in range(SHARDS)])
        await client.add_route(location_pb2.AddRouteRequest(aor=aor, route=_route(3)))
        await client.find_routes(location_pb2.FindRoutesRequest(aor=aor))

    asyncio.run(touch())
    shard = ray.get_actor(SHARD_NAME.format(index=2), namespace="routr")
    text = ray.get(shard.metrics_text.remote()).decode()
    values = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for family in text_string_to_metric_families(text) for s in family.samples}
    bindings = values[("routr_location_bindings", (("shard", "2"),))]
    stats = ray.get(shard.stats.remote())
    assert bindings == stats["bindings"] > 0
    finds = values[("routr_location_operations_total", (("operation", "find"), ("result", "OK"), ("shard", "2")))]
    assert finds > 0


def test_a_shard_restarted_while_redis_is_down_serves_again_when_redis_is_back(
    location: int, redis_server: RedisServer
) -> None:
    """Issue 14: a shard that restarts while Redis is down used to fail its constructor (one 2 s load, no retry):
    a dead actor for good. Now its constructor returns at once, calls get UNAVAILABLE quickly (503 + retry for
    the processor), and its slice loads when Redis is back."""
    index = 3
    owned = [i for i in range(N_AORS) if shard_for_aor(f"sip:user{i:04d}@sip.local", SHARDS) == index]

    async def scenario() -> tuple[list[float], int]:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{location}") as channel:
            stub = location_pb2_grpc.LocationStub(channel)
            await _register_all(stub)
            client = redis_server.client()
            try:
                client.shutdown(save=True)  # the data survives in dump.rdb; connections are refused meanwhile
            except Exception:  # noqa: BLE001 - the connection drops as the server exits
                pass
            finally:
                client.close()
            redis_server.stop()
            ray.kill(ray.get_actor(SHARD_NAME.format(index=index), namespace="routr"), no_restart=False)
            down_at = time.monotonic()
            while True:  # ray.kill returns at once: wait until the restarted shard answers (it is loading)
                try:
                    shard = ray.get_actor(SHARD_NAME.format(index=index), namespace="routr")
                    if (await shard.stats.remote())["loading"]:
                        break
                except ray.exceptions.RayError:
                    pass
                assert time.monotonic() - down_at < 30, "the shard actor did not come back while Redis is down"
                await asyncio.sleep(0.2)
            waits: list[float] = []
            while time.monotonic() - down_at < 10.0:  # Redis down for 10 s: answers come, and quickly
                started = time.monotonic()
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await stub.FindRoutes(location_pb2.FindRoutesRequest(aor=f"sip:user{owned[0]:04d}@sip.local"),
                                          timeout=10)
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value
                waits.append(time.monotonic() - started)
                await asyncio.sleep(0.5)
            redis_server.start()  # same port and directory: the data is back
            deadline = time.monotonic() + 60
            while True:
                try:
                    found = sum([[r.host for r in (await stub.FindRoutes(location_pb2.FindRoutesRequest(
                        aor=f"sip:user{i:04d}@sip.local"))).routes] == [_route(i).host] for i in owned])
                    if found == len(owned):
                        return waits, found
                except grpc.aio.AioRpcError as exc:
                    assert exc.code() == grpc.StatusCode.UNAVAILABLE, exc
                assert time.monotonic() < deadline, "the shard did not serve again after Redis came back"
                await asyncio.sleep(0.5)

    waits, found = asyncio.run(scenario())
    assert found == len(owned) > 100
    stats = ray.get(ray.get_actor(SHARD_NAME.format(index=index), namespace="routr").stats.remote(), timeout=10)
    assert stats["loading"] is False
    assert len(waits) >= 10 and max(waits[1:]) < 2.5, waits  # the first call may wait for the actor to start
