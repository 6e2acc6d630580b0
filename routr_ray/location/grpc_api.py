"""`fonoster.routr.location.v2beta1.Location` over gRPC: converts and delegates, nothing else.

The servicer forwards to a :class:`~routr_ray.location.ops.LocationClient` (in production the sharded client in
``routr_ray.actors.location``), maps :class:`LocationError` codes to gRPC status codes, checks the optional shared
token and serves the standard ``grpc.health.v1`` health service beside it. AddRoute and RemoveRoutes rewrite
where calls go, so the server refuses to listen on a non-loopback address without a token (DESIGN §6b).
"""

from __future__ import annotations

import grpc
from google.protobuf import empty_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from routr_ray.grpcutil.auth import refuse_open_port, token_ok
from routr_ray.location.errors import LocationError
from routr_ray.location.ops import LocationClient
from routr_ray.proto.gen import location_pb2, location_pb2_grpc

SERVICE_NAME = "fonoster.routr.location.v2beta1.Location"
TOKEN_HINT = "spec.token in the Location config, or $ROUTR_RAY_LOCATION_TOKEN"
SERVER_OPTIONS = (("grpc.so_reuseport", 0),)  # no other process may bind beside us and take our callers


class LocationServicer(location_pb2_grpc.LocationServicer):
    def __init__(self, client: LocationClient, token: str | None = None) -> None:
        self._client = client
        self._token = token

    async def _guard(self, context: grpc.aio.ServicerContext) -> None:
        if not token_ok(self._token, context.invocation_metadata()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong token")

    async def AddRoute(self, request: location_pb2.AddRouteRequest, context: grpc.aio.ServicerContext) -> empty_pb2.Empty:
        await self._guard(context)
        try:
            await self._client.add_route(request)
        except LocationError as exc:
            await context.abort(grpc.StatusCode[exc.code.name], exc.message)
        return empty_pb2.Empty()

    async def FindRoutes(
        self, request: location_pb2.FindRoutesRequest, context: grpc.aio.ServicerContext
    ) -> location_pb2.FindRoutesResponse:
        await self._guard(context)
        try:
            return await self._client.find_routes(request)
        except LocationError as exc:
            await context.abort(grpc.StatusCode[exc.code.name], exc.message)
            raise  # unreachable: abort raises

    async def RemoveRoutes(
        self, request: location_pb2.RemoveRoutesRequest, context: grpc.aio.ServicerContext
    ) -> empty_pb2.Empty:
        await self._guard(context)
        try:
            await self._client.remove_routes(request)
        except LocationError as exc:
            await context.abort(grpc.StatusCode[exc.code.name], exc.message)
        return empty_pb2.Empty()


async def start_location_server(client: LocationClient, bind_addr: str, token: str | None = None) -> grpc.aio.Server:
    """Start a grpc.aio server on ``bind_addr`` (``host:port``) and return it; raise OSError if it cannot bind,
    :class:`~routr_ray.grpcutil.auth.OpenPortRefused` for a non-loopback address without a token."""
    refuse_open_port(bind_addr, token, what="the Location gRPC API", how=TOKEN_HINT)
    server = grpc.aio.server(options=list(SERVER_OPTIONS))
    location_pb2_grpc.add_LocationServicer_to_server(LocationServicer(client, token), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        port = server.add_insecure_port(bind_addr)
    except RuntimeError as exc:  # grpcio raises instead of returning 0 on some failures
        raise OSError(f"cannot bind the Location gRPC API to {bind_addr}: {exc}") from exc
    if port == 0:
        raise OSError(f"cannot bind the Location gRPC API to {bind_addr}")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await health_servicer.set(SERVICE_NAME, health_pb2.HealthCheckResponse.SERVING)
    server.bound_port = port  # type: ignore[attr-defined]
    return server
