"""The dispatcher's gRPC port for outside callers (routr_ray/dispatch/front.py) and the tokens that flow end to end
(EdgePort -> dispatcher, dispatcher -> host:port processor), over real gRPC on loopback and 192.0.2.1 (on lo
inside scripts/in-netns). No Ray: the front's ``send`` is a DispatchRuntime or a recording fake."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import pytest

from routr_ray.config.dispatcher import DispatcherConfig, ProcessorConfig
from routr_ray.dispatch.front import DispatcherFront, start_front_server
from routr_ray.dispatch.runtime import DispatchRuntime, OutboundTokens
from routr_ray.edge.dispatcher_client import client_for_addr
from routr_ray.grpcutil.auth import OpenPortRefused
from routr_ray.processors.echo import EchoProcessor
from routr_ray.processors.sdk import Context, MessageResponse
from routr_ray.processors.server import start_processor_server
from routr_ray.proto.convert import from_proto, make_message_request
from routr_ray.proto.gen import processor_pb2, processor_pb2_grpc
from routr_ray.sip import Response, parse

MessageRequest = processor_pb2.MessageRequest
TOKEN = "front-token-0123456789"
IN_NETNS_ADDR = "192.0.2.1"  # on lo inside scripts/in-netns
SECRET = "dHJ1bmstdXNlcjp0cnVuay1wYXNzd29yZA=="  # base64 "trunk-user:trunk-password"


def request(method: str = "OPTIONS", *, sender: tuple[str, int, str] = ("203.0.113.7", 5060, "UDP"),
            metadata: dict[str, str] | None = None) -> MessageRequest:
    raw = (
        f"{method} sip:sip.local SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 203.0.113.7:5060;branch=z9hG4bK-1;rport\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:1001@sip.local>\r\n"
        "From: <sip:1001@sip.local>;tag=abc\r\n"
        "Call-ID: front-1@203.0.113.7\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    return make_message_request(parse(raw), edge_port_ref="ep1", sender=sender,
                                listening_points=[("127.0.0.1", 5060, "UDP")], metadata=metadata)


class Recording:
    """The dispatcher behind the front: keeps what it got, answers with a directive and a customer key."""

    def __init__(self) -> None:
        self.seen: list[MessageRequest] = []

    async def __call__(self, req: MessageRequest) -> MessageResponse:
        self.seen.append(req)
        resp = MessageResponse()
        resp.message.CopyFrom(req.message)
        resp.metadata.update({"routr-ray.gateway-auth": SECRET, "routr-ray.next-hop": "sip:198.51.100.1",
                              "x-customer": "kept"})
        return resp


@pytest.fixture
async def front() -> AsyncIterator[Callable[..., Awaitable[tuple[Recording, int]]]]:
    servers: list[grpc.aio.Server] = []

    async def start(bind: str = "127.0.0.1:0", token: str | None = None) -> tuple[Recording, int]:
        dispatcher = Recording()
        server = await start_front_server(DispatcherFront(dispatcher, token=token), bind)
        servers.append(server)
        return dispatcher, server.bound_port

    yield start
    for server in servers:
        await server.stop(0)


async def call(addr: str, req: MessageRequest, metadata: tuple[tuple[str, str], ...] = ()) -> MessageResponse:
    async with grpc.aio.insecure_channel(addr) as channel:
        return await processor_pb2_grpc.ProcessorStub(channel).ProcessMessage(req, metadata=metadata or None,
                                                                              timeout=5)


async def test_an_outside_caller_is_known_by_its_connection_and_sees_no_internal_metadata(front) -> None:  # noqa: ANN001
    dispatcher, port = await front()
    forged = request(sender=("203.0.113.7", 5060, "UDP"),
                     metadata={"routr-ray.processor": "connect", "routr-ray.trunk-ref": "trunk-01", "x-mine": "1"})
    reply = await call(f"127.0.0.1:{port}", forged)
    (seen,) = dispatcher.seen
    assert seen.sender.host == "127.0.0.1" and seen.sender.port != 5060  # the gRPC peer, not the claim
    assert dict(seen.metadata) == {"x-mine": "1"}
    assert dict(reply.metadata) == {"x-customer": "kept"}  # no gateway-auth, no next hop


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer wrong"),), (("authorization", f"Basic {TOKEN}"),)])
async def test_with_a_token_callers_without_it_are_refused(front, metadata) -> None:  # noqa: ANN001
    dispatcher, port = await front(token=TOKEN)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call(f"127.0.0.1:{port}", request(), metadata)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert dispatcher.seen == []


@pytest.mark.parametrize("metadata", [(("authorization", f"Bearer {TOKEN}"),), (("x-routr-token", TOKEN),)])
async def test_a_caller_with_the_token_is_trusted_as_an_edgeport(front, metadata) -> None:  # noqa: ANN001
    dispatcher, port = await front(token=TOKEN)
    reply = await call(f"127.0.0.1:{port}", request(metadata={"routr-ray.trunk-ref": "trunk-01"}), metadata)
    (seen,) = dispatcher.seen
    assert seen.sender.host == "203.0.113.7" and seen.metadata["routr-ray.trunk-ref"] == "trunk-01"
    assert reply.metadata["routr-ray.gateway-auth"] == SECRET  # the EdgePort needs its directives


async def test_a_non_loopback_address_without_a_token_is_refused_before_binding() -> None:
    with pytest.raises(OpenPortRefused, match="without a token"):
        await start_front_server(DispatcherFront(Recording()), f"{IN_NETNS_ADDR}:0")
    with pytest.raises(OpenPortRefused):
        await start_front_server(DispatcherFront(Recording()), "0.0.0.0:0")


async def test_the_port_is_bound_on_exactly_its_host(front) -> None:  # noqa: ANN001
    _, port = await front(f"{IN_NETNS_ADDR}:0", token=TOKEN)
    with socket.socket() as probe:  # unlike Serve's proxy ([::]), nothing listens on loopback
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    reply = await call(f"{IN_NETNS_ADDR}:{port}", request(), (("x-routr-token", TOKEN),))
    assert reply.metadata["x-customer"] == "kept"


async def test_a_dispatcher_that_fails_is_unavailable_to_the_caller() -> None:
    async def down(req: MessageRequest) -> MessageResponse:
        raise ConnectionError("no replica")

    server = await start_front_server(DispatcherFront(down), "127.0.0.1:0")
    try:
        with pytest.raises(grpc.aio.AioRpcError) as failed:
            await call(f"127.0.0.1:{server.bound_port}", request())
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0)


async def test_an_edgeport_pointed_at_the_dispatcher_sends_its_token(front) -> None:  # noqa: ANN001
    dispatcher, port = await front(token=TOKEN)
    client = client_for_addr(f"127.0.0.1:{port}", token=TOKEN)
    try:
        (reply,) = await client.process([request(metadata={"routr-ray.processor": "connect"})])
    finally:
        await client.close()
    assert reply.metadata["routr-ray.next-hop"] == "sip:198.51.100.1"
    assert dispatcher.seen[0].metadata["routr-ray.processor"] == "connect"


class RecordingEcho(EchoProcessor):
    seen: list[MessageRequest] = []

    def handle(self, ctx: Context) -> MessageResponse:
        RecordingEcho.seen.append(ctx.request)
        return ctx.ok()


@pytest.mark.parametrize(("configured", "status"), [("proc-token-0123456789", 200), (None, 503)])
async def test_the_dispatcher_sends_a_remote_processor_its_token(configured: str | None, status: int) -> None:
    RecordingEcho.seen = []
    server = await start_processor_server(RecordingEcho(), "127.0.0.1:0", token="proc-token-0123456789")
    runtime = DispatchRuntime(lambda name: None, health_period=0)  # type: ignore[arg-type, return-value]
    config = DispatcherConfig(processors=(ProcessorConfig("ext", f"127.0.0.1:{server.bound_port}", ("OPTIONS",)),),
                              deadline_seconds=3)
    await runtime.reconfigure(config, OutboundTokens(configured))
    try:
        result = await runtime.current().handle(request(metadata={"routr-ray.gateway-auth": SECRET, "x": "1"}))
    finally:
        await runtime.close()
        await server.stop(0)
    assert result is not None
    answer = parse(bytes(from_proto(result.message)))
    assert isinstance(answer, Response) and answer.status == status
    if status == 200:  # an external processor that did not ask for it gets no internal metadata
        assert dict(RecordingEcho.seen[0].metadata) == {"x": "1"}
