"""The standalone processor server (grpc.aio on 127.0.0.1) with a plain grpcio client."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from routr_ray.processors.echo import EchoProcessor
from routr_ray.processors.server import SERVICE_NAME, load_processor, serve_processor, start_processor_server
from routr_ray.proto.convert import from_proto, make_message_request
from routr_ray.proto.gen import processor_pb2, processor_pb2_grpc
from routr_ray.sip import Response, parse

TOKEN = "s3cret"
AUTH = (("authorization", f"Bearer {TOKEN}"),)


def request(method: str) -> processor_pb2.MessageRequest:
    raw = (
        f"{method} sip:sip.local SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bK-1;rport\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:1001@sip.local>\r\n"
        "From: <sip:1001@sip.local>;tag=abc\r\n"
        "Call-ID: call-1@127.0.0.1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Contact: <sip:1001@127.0.0.1:5071>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    return make_message_request(parse(raw), edge_port_ref="ep1", sender=("127.0.0.1", 5071, "UDP"),
                                listening_points=[("127.0.0.1", 5060, "UDP")])


@pytest.fixture
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    server = await start_processor_server("routr_ray.processors.echo:EchoProcessor", "127.0.0.1:0", token=TOKEN)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}")
    try:
        yield channel
    finally:
        await channel.close()
        await server.stop(0)


@pytest.mark.parametrize("method", ["OPTIONS", "REGISTER"])
async def test_echo_answers_200_over_grpc(channel: grpc.aio.Channel, method: str) -> None:
    stub = processor_pb2_grpc.ProcessorStub(channel)
    resp = await stub.ProcessMessage(request(method), metadata=AUTH, timeout=5)
    sip = parse(bytes(from_proto(resp.message)))
    assert isinstance(sip, Response)
    assert (sip.status, sip.reason) == (200, "OK")
    assert sip.cseq is not None and sip.cseq.method == method
    assert sip.call_id == "call-1@127.0.0.1"


async def test_missing_or_wrong_token_is_refused(channel: grpc.aio.Channel) -> None:
    stub = processor_pb2_grpc.ProcessorStub(channel)
    for metadata in ((), (("authorization", "Bearer nope"),), (("x-routr-token", "nope"),)):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.ProcessMessage(request("OPTIONS"), metadata=metadata, timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    ok = await stub.ProcessMessage(request("OPTIONS"), metadata=(("x-routr-token", TOKEN),), timeout=5)
    assert ok.message.status_code == 200


async def test_health_service_reports_serving(channel: grpc.aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_without_a_token_every_caller_is_served() -> None:
    server = await start_processor_server(EchoProcessor, "127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.bound_port}") as channel:
            resp = await processor_pb2_grpc.ProcessorStub(channel).ProcessMessage(request("OPTIONS"), timeout=5)
        assert resp.message.status_code == 200
    finally:
        await server.stop(0)


async def test_serve_processor_runs_until_cancelled() -> None:
    probe = await start_processor_server(EchoProcessor(), "127.0.0.1:0")
    port = probe.bound_port
    await probe.stop(0)
    task = asyncio.create_task(serve_processor(EchoProcessor, f"127.0.0.1:{port}", grace=0.1))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = processor_pb2_grpc.ProcessorStub(channel)
            resp = await stub.ProcessMessage(request("OPTIONS"), timeout=5, wait_for_ready=True)
            assert resp.message.status_code == 200
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await processor_pb2_grpc.ProcessorStub(channel).ProcessMessage(request("OPTIONS"), timeout=1)
        assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


@pytest.mark.parametrize("spec", ["nocolon", "routr_ray.nope:X", "routr_ray.processors.echo:Missing",
                                  "routr_ray.processors.sdk:Context", "os:path.join"])
def test_load_processor_rejects_bad_specs(spec: str) -> None:
    with pytest.raises(ValueError, match="processor"):
        load_processor(spec)


def test_load_processor_returns_an_instance() -> None:
    assert isinstance(load_processor("routr_ray.processors.echo:EchoProcessor"), EchoProcessor)


async def test_a_non_loopback_address_without_a_token_is_refused() -> None:
    from routr_ray.grpcutil.auth import OpenPortRefused

    with pytest.raises(OpenPortRefused, match="ROUTR_RAY_PROCESSOR_TOKEN"):
        await start_processor_server(EchoProcessor(), "0.0.0.0:0")
    server = await start_processor_server(EchoProcessor(), "192.0.2.1:0", token=TOKEN)  # with one: it serves
    await server.stop(0)
