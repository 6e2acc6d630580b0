"""Attacks on the dispatcher's gRPC port (51901, issue 14 item 1), on the wire: the port as it is started
(routr_ray/dispatch/front.py) in front of the real dispatcher routing (DispatchRuntime) and the real Connect
processor with an in-memory Location, in this process, no Ray.

The attacker is any process that reaches the port. What it must not get: a port listening beyond loopback
without a token, trunk credentials (``routr-ray.gateway-auth``) or any other internal metadata in a reply, or an
ACL pass by writing a trusted address into ``sender``. Each attack is paired with a control through the same port
with the token (an authenticated EdgePort), so a test fails if the defence goes, not only if the attack does.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from routr_ray.config import load_dispatcher
from routr_ray.config.dispatcher import DispatcherConfig, ProcessorConfig
from routr_ray.dispatch.front import DispatcherFront, start_front_server
from routr_ray.dispatch.runtime import DispatchRuntime
from routr_ray.grpcutil.auth import OpenPortRefused, is_loopback_host, split_host_port
from routr_ray.proto.convert import read_message_response
from routr_ray.proto.gen import processor_pb2, processor_pb2_grpc
from routr_ray.sip.message import Request, Response
from tests.unit.test_connect_support import Harness, authorize, sip, to_message_request

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
ROOT = Path(__file__).resolve().parents[2]
NON_LOOPBACK = "192.0.2.1"  # on lo inside scripts/in-netns
TOKEN = "edgeport-token-0123456789"
TRUNK_ADDRESS = ("198.51.100.7", 5060, "UDP")  # inside trunk-01's ACL (tests/unit/test_connect_support.py)
TRUNK_CREDENTIALS = b"pbx-1:trunkpw"  # trunk-01's outbound credentials


@dataclass
class Stack:
    harness: Harness
    open_port: int  # bound as shipped: loopback, no token
    token_port: int  # the same dispatcher behind a front that asks for TOKEN


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    harness = Harness()
    await harness.register("1001", "<sip:1001@10.0.0.5:5060>")  # through the EdgePort's (trusted) path

    def deployment_send(name: str):  # type: ignore[no-untyped-def]
        async def send(requests: list[MessageRequest]) -> Sequence[MessageResponse]:
            return [await harness.processor.process(r) for r in requests]
        return send

    runtime = DispatchRuntime(deployment_send)
    runtime.apply(DispatcherConfig(processors=(ProcessorConfig("connect", "serve://connect",
                                                               ("INVITE", "CANCEL", "ACK", "BYE", "MESSAGE")),)))
    shipped_host, _ = split_host_port(load_dispatcher(ROOT / "config" / "dispatcher.yaml").bind_addr)
    servers = [await start_front_server(DispatcherFront(runtime.current().handle), f"{shipped_host}:0"),
               await start_front_server(DispatcherFront(runtime.current().handle, token=TOKEN), "127.0.0.1:0")]
    try:
        yield Stack(harness, servers[0].bound_port, servers[1].bound_port)
    finally:
        for server in servers:
            await server.stop(0)


class Caller:
    """One gRPC connection to the port (a digest challenge and its answer come from the same peer)."""

    def __init__(self, port: int, host: str = "127.0.0.1", token: str | None = None) -> None:
        self.channel = grpc.aio.insecure_channel(f"{host}:{port}")
        self.stub = processor_pb2_grpc.ProcessorStub(self.channel)
        self.metadata = (("x-routr-token", token),) if token else None

    async def send(self, msg: Request, sender: tuple[str, int, str]) -> tuple[Request | Response, MessageResponse]:
        reply = await self.stub.ProcessMessage(to_message_request(msg, sender), metadata=self.metadata, timeout=5)
        return read_message_response(reply), reply

    async def authed(self, msg: Request, sender: tuple[str, int, str], user: str = "1001",
                     password: str = "1234") -> tuple[Request | Response, MessageResponse]:
        challenge, _ = await self.send(msg, sender)
        assert isinstance(challenge, Response) and challenge.status in (401, 407), challenge
        return await self.send(authorize(msg, challenge, user, password), sender)

    async def close(self) -> None:
        await self.channel.close()


def leaks(reply: MessageResponse) -> list[str]:
    """Everything in a reply that an outside caller must never see."""
    found = [key for key in reply.metadata if key.lower().startswith("routr-ray.")]
    text = reply.SerializeToString()
    if TRUNK_CREDENTIALS in text or base64.b64encode(TRUNK_CREDENTIALS) in text:
        found.append("trunk credentials")
    return found


def test_the_shipped_config_keeps_51901_on_loopback() -> None:
    config = load_dispatcher(ROOT / "config" / "dispatcher.yaml")
    host, port = split_host_port(config.bind_addr)
    assert port == 51901 and is_loopback_host(host) and config.token is None


async def test_51901_on_a_non_loopback_address_without_a_token_refuses_to_start() -> None:
    with pytest.raises(OpenPortRefused):
        await start_front_server(DispatcherFront(lambda r: None), f"{NON_LOOPBACK}:0")  # type: ignore[arg-type, return-value]
    with pytest.raises(OpenPortRefused):
        await start_front_server(DispatcherFront(lambda r: None), "[::]:0")  # type: ignore[arg-type, return-value]


async def test_51901_without_a_token_from_a_non_loopback_address_is_refused(stack: Stack) -> None:
    # as shipped, nothing answers on the machine's other addresses (Serve's proxy listened on [::])
    outsider = Caller(stack.open_port, host=NON_LOOPBACK)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as unreachable:
            await outsider.send(sip("OPTIONS", "sip:sip.local", from_="sip:x@sip.local", to="sip:sip.local"),
                                TRUNK_ADDRESS)
        assert unreachable.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await outsider.close()
    # opened to the network with a token: a caller without it is refused
    server = await start_front_server(DispatcherFront(lambda r: None, token=TOKEN), f"{NON_LOOPBACK}:0")  # type: ignore[arg-type, return-value]
    outsider = Caller(server.bound_port, host=NON_LOOPBACK)
    try:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await outsider.send(sip("OPTIONS", "sip:sip.local", from_="sip:x@sip.local", to="sip:sip.local"),
                                TRUNK_ADDRESS)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await outsider.close()
        await server.stop(0)


async def test_a_cancel_with_a_pstn_request_uri_returns_nothing_with_gateway_auth(stack: Stack) -> None:
    attacker = Caller(stack.open_port)
    try:
        cancel = sip("CANCEL", "sip:+15551234567@sip.local", from_="sip:1001@sip.local",
                     to="sip:+15551234567@sip.local")
        _, reply = await attacker.send(cancel, ("10.0.0.5", 5060, "UDP"))
    finally:
        await attacker.close()
    assert leaks(reply) == []


async def test_an_authorised_pstn_call_through_51901_does_not_reveal_the_trunk_credentials(stack: Stack) -> None:
    invite = sip("INVITE", "sip:+15551234567@sip.local", from_="sip:1001@sip.local", to="sip:+15551234567@sip.local",
                 contact="<sip:1001@10.0.0.5:5060>")
    control = Caller(stack.token_port, token=TOKEN)  # an EdgePort with the token: the directive is its due
    attacker = Caller(stack.open_port)  # knows 1001's password even: still no trunk credentials
    try:
        forwarded, trusted = await control.authed(invite, ("10.0.0.5", 5060, "UDP"))
        assert isinstance(forwarded, Request) and base64.b64decode(trusted.metadata["routr-ray.gateway-auth"]) \
            == TRUNK_CREDENTIALS
        forwarded, reply = await attacker.authed(invite.copy(), ("10.0.0.5", 5060, "UDP"))  # type: ignore[arg-type]
    finally:
        await control.close()
        await attacker.close()
    assert isinstance(forwarded, Request)  # the call itself was allowed (loopback is in the domain's ACL)
    assert leaks(reply) == []


async def test_a_forged_sender_inside_a_trunk_acl_gains_nothing(stack: Stack) -> None:
    def from_pstn() -> Request:
        return sip("INVITE", "sip:+17066041487@trunk01.provider.net", from_="sip:+15550001111@provider.net",
                   to="sip:+17066041487@trunk01.provider.net", via="SIP/2.0/UDP 198.51.100.7:5060",
                   contact="<sip:pstn@198.51.100.7:5060>")

    control = Caller(stack.token_port, token=TOKEN)
    attacker = Caller(stack.open_port)
    try:
        routed, _ = await control.send(from_pstn(), TRUNK_ADDRESS)  # what the trunk itself gets
        answer, reply = await attacker.send(from_pstn(), TRUNK_ADDRESS)  # the same claim from anyone else
    finally:
        await control.close()
        await attacker.close()
    assert isinstance(routed, Request) and routed.uri == "sip:1001@10.0.0.5:5060"
    assert isinstance(answer, Response) and answer.status >= 400  # not routed to 1001: the ACL saw 127.0.0.1
    assert leaks(reply) == []
