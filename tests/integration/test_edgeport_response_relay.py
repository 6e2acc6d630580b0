"""The EdgePort relays 1xx/2xx itself when the processor said ``routr-ray.responses=errors`` (sdk.Processor
``needs_success_responses = False``); every other response, and every response without that word, goes back
through the dispatcher to the processor (Routr's behaviour)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from routr_ray.edge.directives import RESPONSES_ERRORS_ONLY, RESPONSES_KEY
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.proto.convert import from_proto
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request, Response
from tests.integration.test_edgeport import FAST, UdpPeer, config, fake_processor, request

pytestmark = pytest.mark.timeout(30)


def marking(inner: Callable[[processor_pb2.MessageRequest], processor_pb2.MessageResponse],
            ) -> Callable[[processor_pb2.MessageRequest], processor_pb2.MessageResponse]:
    """The fake processor, saying on every forwarded request that it needs only the error responses."""
    def handle(mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        resp = inner(mreq)
        if resp.message.WhichOneof("message_type") == "request_uri":
            resp.metadata[RESPONSES_KEY] = RESPONSES_ERRORS_ONLY
        return resp

    return handle


def responses_seen(fake: FakeDispatcher) -> list[int]:
    messages = [from_proto(m.message) for m in fake.received]
    return [m.status for m in messages if isinstance(m, Response)]


@pytest.fixture
async def peers() -> AsyncIterator[tuple[UdpPeer, UdpPeer]]:
    client, callee = await UdpPeer.open(), await UdpPeer.open()
    yield client, callee
    client.close()
    callee.close()


async def _edge(fake: FakeDispatcher) -> EdgePort:
    port = EdgePort(config(), fake, options=EdgePortOptions(timers=FAST, cancel_wait=0.4))
    await port.start()
    return port


async def _invite(edge: EdgePort, client: UdpPeer, callee: UdpPeer) -> Request:
    client.send(request("INVITE", f"sip:bob@127.0.0.1:{callee.port}", client.port), edge.address("udp"))
    assert (await client.recv()).status == 100  # type: ignore[union-attr]
    invite = await callee.recv()
    assert isinstance(invite, Request)
    return invite


async def test_success_responses_skip_the_processor_and_lose_our_via(peers: tuple[UdpPeer, UdpPeer]) -> None:
    client, callee = peers
    fake = FakeDispatcher(marking(fake_processor(remove_via=False)))
    edge = await _edge(fake)
    try:
        invite = await _invite(edge, client, callee)
        for status in (180, 200):
            callee.send(make_response(invite, status, to_tag="b1"), edge.address("udp"))
            answer = await client.recv()
            assert isinstance(answer, Response) and answer.status == status
            assert [v.branch for v in answer.via] == ["z9hG4bKclient1"]  # our Via popped by the EdgePort
        assert responses_seen(fake) == []
        assert [m.message.request_uri.user for m in fake.received] == ["bob"]  # only the INVITE was dispatched
    finally:
        await edge.stop()


async def test_error_responses_still_go_to_the_processor(peers: tuple[UdpPeer, UdpPeer]) -> None:
    client, callee = peers
    fake = FakeDispatcher(marking(fake_processor()))
    edge = await _edge(fake)
    try:
        invite = await _invite(edge, client, callee)
        callee.send(make_response(invite, 486, to_tag="b1"), edge.address("udp"))
        final = await client.recv_final()
        assert final.status == 486 and [v.branch for v in final.via] == ["z9hG4bKclient1"]
        assert responses_seen(fake) == [486]
    finally:
        await edge.stop()


async def test_a_response_with_an_invalid_contact_goes_to_the_processor(peers: tuple[UdpPeer, UdpPeer]) -> None:
    client, callee = peers
    fake = FakeDispatcher(marking(fake_processor()))
    edge = await _edge(fake)
    try:
        invite = await _invite(edge, client, callee)
        ok = make_response(invite, 200, to_tag="b1", extra=[("Contact", "<sip:x@df7jal23ls0d.invalid;transport=ws>")])
        callee.send(ok, edge.address("udp"))
        answer = await client.recv_final()
        assert answer.status == 200
        assert responses_seen(fake) == [200]  # the processor makes a WebRTC callee's Contact reachable
    finally:
        await edge.stop()


async def test_without_the_word_every_response_goes_to_the_processor(peers: tuple[UdpPeer, UdpPeer]) -> None:
    client, callee = peers
    fake = FakeDispatcher(fake_processor())  # a Routr processor: no routr-ray.responses
    edge = await _edge(fake)
    try:
        invite = await _invite(edge, client, callee)
        for status in (180, 200):
            callee.send(make_response(invite, status, to_tag="b1"), edge.address("udp"))
            assert (await client.recv()).status == status  # type: ignore[union-attr]
        assert responses_seen(fake) == [180, 200]
    finally:
        await edge.stop()
