"""The Location gRPC API over real sockets, with in-process shards (no Ray)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from routr_ray.grpcutil.auth import OpenPortRefused
from routr_ray.location.grpc_api import start_location_server
from routr_ray.location.local_client import LocalLocationClient
from routr_ray.location.service import LocationService
from routr_ray.location.stores.memory import MemoryStore
from routr_ray.proto.gen import common_pb2, location_pb2, location_pb2_grpc

TOKEN = "s3cret"


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    shards = [LocationService(MemoryStore(str(i)), shard_index=i, shard_count=2) for i in range(2)]
    server = await start_location_server(LocalLocationClient(shards), "127.0.0.1:0", token=TOKEN)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)


@pytest.fixture
def api(channel: grpc.aio.Channel) -> location_pb2_grpc.LocationStub:
    return location_pb2_grpc.LocationStub(channel)


AUTH = (("authorization", f"Bearer {TOKEN}"),)


def _route(host: str, port: int = 5060) -> location_pb2.Route:
    return location_pb2.Route(host=host, port=str(port), transport=common_pb2.UDP, expires=600)


async def test_add_then_find_then_remove(api: location_pb2_grpc.LocationStub) -> None:
    await api.AddRoute(location_pb2.AddRouteRequest(aor="sip:1001@sip.local", route=_route("10.0.0.7")), metadata=AUTH)
    found = await api.FindRoutes(location_pb2.FindRoutesRequest(aor="sip:1001@sip.local"), metadata=AUTH)
    assert [r.host for r in found.routes] == ["10.0.0.7"]
    assert found.routes[0].registered_on > 0
    await api.RemoveRoutes(location_pb2.RemoveRoutesRequest(aor="sip:1001@sip.local"), metadata=AUTH)
    found = await api.FindRoutes(location_pb2.FindRoutesRequest(aor="sip:1001@sip.local"), metadata=AUTH)
    assert list(found.routes) == []


async def test_bad_aor_scheme_is_invalid_argument(api: location_pb2_grpc.LocationStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.AddRoute(location_pb2.AddRouteRequest(aor="mailto:x@y", route=_route("10.0.0.7")), metadata=AUTH)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "mailto" in (err.value.details() or "")


async def test_max_contacts_is_invalid_argument_naming_the_limit(api: location_pb2_grpc.LocationStub) -> None:
    aor = "sip:1002@sip.local"
    await api.AddRoute(location_pb2.AddRouteRequest(aor=aor, route=_route("10.0.0.1"), max_contacts=1), metadata=AUTH)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await api.AddRoute(
            location_pb2.AddRouteRequest(aor=aor, route=_route("10.0.0.2"), max_contacts=1), metadata=AUTH
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1" in (err.value.details() or "")


async def test_missing_or_wrong_token_is_refused(api: location_pb2_grpc.LocationStub) -> None:
    for metadata in ((), (("authorization", "Bearer nope"),)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await api.FindRoutes(location_pb2.FindRoutesRequest(aor="sip:1001@sip.local"), metadata=metadata)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_health_service_reports_serving(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service="fonoster.routr.location.v2beta1.Location"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


@pytest.mark.parametrize("bind", ["0.0.0.0:0", "[::]:0", "192.0.2.1:0", "location.example:0"])
async def test_a_non_loopback_address_without_a_token_refuses_to_start(bind: str) -> None:
    shards = [LocationService(MemoryStore("0"), shard_index=0, shard_count=1)]
    with pytest.raises(OpenPortRefused, match="Location gRPC API .* without a token"):
        await start_location_server(LocalLocationClient(shards), bind)


async def test_a_non_loopback_address_with_a_token_serves_there_only() -> None:
    shards = [LocationService(MemoryStore("0"), shard_index=0, shard_count=1)]
    server = await start_location_server(LocalLocationClient(shards), "192.0.2.1:0", token=TOKEN)
    try:
        async with grpc.aio.insecure_channel(f"192.0.2.1:{server.bound_port}") as channel:
            stub = location_pb2_grpc.LocationStub(channel)
            await stub.FindRoutes(location_pb2.FindRoutesRequest(aor="sip:1001@sip.local"), metadata=AUTH, timeout=5)
    finally:
        await server.stop(0)
