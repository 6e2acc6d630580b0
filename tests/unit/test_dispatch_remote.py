"""Processors by address: health states decide whether a call is tried or answered 503 at once.

The channel is real (grpc.aio opens no socket until used); the stubs are fakes, so no socket is opened here.
"""

from __future__ import annotations

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2
from test_dispatch_support import message_request

from routr_ray.dispatch.remote import SERVICE_NAME, GrpcProcessorClient, ProcessorUnavailable
from routr_ray.proto.gen import processor_pb2

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def rpc_error(code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=code.name.lower())


class FakeHealth:
    def __init__(self, answers: dict[str, int | grpc.StatusCode]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def Check(self, request, timeout=None, metadata=None):  # noqa: ANN001, ANN201, N802, ASYNC109
        self.asked.append(request.service)
        answer = self.answers[request.service]
        if isinstance(answer, grpc.StatusCode):
            raise rpc_error(answer)
        return health_pb2.HealthCheckResponse(status=answer)


class FakeProcessor:
    def __init__(self, error: grpc.StatusCode | None = None) -> None:
        self.calls: list[tuple[float | None, object]] = []
        self.error = error

    async def ProcessMessage(self, request, timeout=None, metadata=None):  # noqa: ANN001, ANN201, N802, ASYNC109
        self.calls.append((timeout, metadata))
        if self.error is not None:
            raise rpc_error(self.error)
        out = processor_pb2.MessageResponse()
        out.message.CopyFrom(request.message)
        return out


@pytest.fixture
async def client():  # noqa: ANN201
    c = GrpcProcessorClient("127.0.0.1:9", token="t0k", health_period=0)  # no background task: checks by hand
    c._stub = FakeProcessor()
    yield c
    await c.close()


async def test_a_healthy_processor_is_called_with_deadline_and_token(client: GrpcProcessorClient) -> None:
    client._health = FakeHealth({SERVICE_NAME: SERVING})
    assert await client.check_health() is True
    await client.call(message_request(), 1.5)
    assert client._stub.calls == [(1.5, (("authorization", "Bearer t0k"),))]


async def test_not_serving_fails_at_once_without_calling(client: GrpcProcessorClient) -> None:
    client._health = FakeHealth({SERVICE_NAME: NOT_SERVING})
    assert await client.check_health() is False
    with pytest.raises(ProcessorUnavailable, match="failing its health check .*NOT_SERVING"):
        await client.call(message_request(), 30.0)
    assert client._stub.calls == []
    client._health.answers[SERVICE_NAME] = SERVING  # it recovers on the next check
    assert await client.check_health() is True
    await client.call(message_request(), 30.0)


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED])
async def test_unreachable_or_silent_is_unhealthy(client: GrpcProcessorClient, code: grpc.StatusCode) -> None:
    client._health = FakeHealth({SERVICE_NAME: code})
    assert await client.check_health() is False
    assert code.name in client.health_reason


async def test_server_without_the_processor_name_is_asked_about_itself(client: GrpcProcessorClient) -> None:
    client._health = FakeHealth({SERVICE_NAME: grpc.StatusCode.NOT_FOUND, "": NOT_SERVING})
    assert await client.check_health() is False
    assert client._health.asked == [SERVICE_NAME, ""]


async def test_server_without_health_service_is_judged_by_its_calls(client: GrpcProcessorClient) -> None:
    client._health = FakeHealth({SERVICE_NAME: grpc.StatusCode.UNIMPLEMENTED})
    assert await client.check_health() is None
    assert client.has_health_service is False
    await client.call(message_request(), 1.0)  # tried
    client._stub.error = grpc.StatusCode.UNAVAILABLE
    with pytest.raises(ProcessorUnavailable, match="grpc UNAVAILABLE"):
        await client.call(message_request(), 1.0)


async def test_unknown_health_lets_calls_through(client: GrpcProcessorClient) -> None:
    assert client.healthy is None
    await client.call(message_request(), 1.0)
    assert len(client._stub.calls) == 1
