"""Issue 13 item 5 on the wire: an ACK is never answered (RFC 3261 §17.1.1.3, §17.2.1), nor is a response
(§18.1.2); what cannot be read is dropped and counted in /metrics. Empty URI parameters (``;transport=``, as
Routr's SIPp scenarios send them) are accepted. A request other than ACK that cannot be processed gets 400 with a
Warning.

Each test sends over UDP from a fresh socket and then waits: the ACK's sender must receive nothing at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from routr_ray.config.edgeport import HealthConfig
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.proto.convert import from_proto, make_message_response
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request, Response
from tests.integration.test_edgeport import FAST, UdpPeer, config, fake_processor, request
from tests.support.probes import metric_value, scrape

pytestmark = pytest.mark.timeout(30)

SILENCE = 0.5  # seconds an unanswered message is waited on
EMPTY_TRANSPORT_ACK = (  # the ACK of Routr's SIPp scenario: ";transport=" with nothing after it
    "ACK sip:1002@127.0.0.1:{callee};transport= SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 127.0.0.1:{port};branch={branch};rport\r\n"
    "From: <sip:1001@sip.local>;tag=caller1\r\n"
    "To: <sip:1002@sip.local>;tag={to_tag}\r\n"
    "Call-ID: {call_id}\r\n"
    "CSeq: {cseq} ACK\r\n"
    "Contact: <sip:1001@127.0.0.1:{port};transport=>\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Length: 0\r\n\r\n"
)


def empty_transport_ack(port: int, *, callee: int = 9, branch: str = "z9hG4bKack1", call_id: str = "ack-1",
                        cseq: int = 1, to_tag: str = "callee1") -> bytes:
    return EMPTY_TRANSPORT_ACK.format(port=port, callee=callee, branch=branch, call_id=call_id, cseq=cseq,
                                      to_tag=to_tag).encode()


def challenging_processor() -> object:
    """fake_processor, but an INVITE without credentials gets 407 (as Connect answers an agent's first INVITE)."""
    forward = fake_processor()

    def handle(mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        msg = from_proto(mreq.message)
        if isinstance(msg, Request) and msg.method == "INVITE" and "Proxy-Authorization" not in msg.headers:
            return make_message_response(make_response(msg, 407, to_tag="auth1", extra=[
                ("Proxy-Authenticate", 'Digest realm="sip.local", nonce="n1"')]))
        return forward(mreq)

    return handle


@pytest.fixture
async def fake() -> FakeDispatcher:
    return FakeDispatcher(challenging_processor())  # type: ignore[arg-type]


@pytest.fixture
async def edge(fake: FakeDispatcher) -> AsyncIterator[EdgePort]:
    port = EdgePort(config(health=HealthConfig(port=0, bind_addr="127.0.0.1")), fake,
                    options=EdgePortOptions(timers=FAST, cancel_wait=0.4))
    await port.start()
    yield port
    await port.stop()


@pytest.fixture
async def client() -> AsyncIterator[UdpPeer]:
    peer = await UdpPeer.open()
    yield peer
    peer.close()


def rejected(edge: EdgePort, reason: str) -> float:
    assert edge.health is not None
    host, port = edge.health.local_address
    samples = scrape(f"http://{host}:{port}/metrics")  # blocking, but tiny: the loop answers once this returns
    return metric_value(samples, "routr_sip_rejected_messages_total", reason=reason)


async def metrics(edge: EdgePort, reason: str) -> float:
    return await asyncio.to_thread(rejected, edge, reason)


async def silence(peer: UdpPeer) -> None:
    with pytest.raises(TimeoutError):
        answer = await peer.recv(timeout=SILENCE)
        pytest.fail(f"an answer came: {answer}")


async def test_an_ack_with_an_empty_transport_parameter_is_accepted_and_never_answered(
    edge: EdgePort, fake: FakeDispatcher, client: UdpPeer
) -> None:
    client.send(empty_transport_ack(client.port), edge.address("udp"))
    await silence(client)
    # it parsed: it went through the dispatcher (an ACK matching no transaction, RFC 3261 §16.11) ...
    acks = [r for r in fake.received if r.message.method == "ACK"]
    assert len(acks) == 1 and acks[0].message.request_uri.transport_param == ""
    # ... and nothing was counted as malformed
    assert await metrics(edge, "malformed_ack") == 0 and await metrics(edge, "malformed") == 0


async def test_the_ack_for_a_407_with_an_empty_transport_parameter_is_absorbed(
    edge: EdgePort, fake: FakeDispatcher, client: UdpPeer
) -> None:
    client.send(request("INVITE", "sip:1002@sip.local", client.port, branch="z9hG4bKinv1", call_id="inv-1"),
                edge.address("udp"))
    challenge = await client.recv_final()
    assert challenge.status == 407
    to_tag = challenge.to.tag  # type: ignore[union-attr]
    # §17.1.1.3: the ACK of a non-2xx final has the INVITE's branch; the EdgePort's transaction absorbs it
    client.send(empty_transport_ack(client.port, branch="z9hG4bKinv1", call_id="inv-1", to_tag=to_tag or ""),
                edge.address("udp"))
    await silence(client)
    assert [r.message.method for r in fake.received] == ["INVITE"]  # hop by hop: not passed on


async def test_a_malformed_ack_is_dropped_and_counted_never_answered(edge: EdgePort, client: UdpPeer) -> None:
    broken = [
        empty_transport_ack(client.port).replace(b"CSeq: 1 ACK", b"CSeq: one ACK"),
        empty_transport_ack(client.port).replace(b"CSeq: 1 ACK", b"CSeq: 1 INVITE"),  # CSeq method mismatch
        empty_transport_ack(client.port).replace(b"Max-Forwards: 70", b"Max-Forwards: many"),
        empty_transport_ack(client.port).replace(b"sip:1002@127.0.0.1:9;transport=", b"sip:1002@[::1"),
    ]
    for data in broken:
        client.send(data, edge.address("udp"))
    await silence(client)
    assert await metrics(edge, "malformed_ack") == len(broken)
    assert await metrics(edge, "malformed") == 0


async def test_a_malformed_response_is_dropped_and_counted(edge: EdgePort, client: UdpPeer) -> None:
    client.send(b"SIP/2.0 200 OK\r\nVia: garbage\r\nCSeq: x\r\n\r\n", edge.address("udp"))
    await silence(client)
    assert await metrics(edge, "malformed_response") == 1


async def test_an_ack_of_a_method_not_allowed_gets_no_405(fake: FakeDispatcher, client: UdpPeer) -> None:
    edge = EdgePort(config(methods=("REGISTER", "INVITE")), fake, options=EdgePortOptions(timers=FAST))
    await edge.start()
    try:
        client.send(empty_transport_ack(client.port), edge.address("udp"))
        await silence(client)
        client.send(request("MESSAGE", "sip:bob@127.0.0.1:9", client.port), edge.address("udp"))
        answer = await client.recv()
        assert isinstance(answer, Response) and answer.status == 405  # requests other than ACK still get it
    finally:
        await edge.stop()


async def test_a_malformed_request_other_than_ack_gets_400_with_a_warning(edge: EdgePort, client: UdpPeer) -> None:
    bad = request("MESSAGE", "sip:bob@127.0.0.1:9", client.port).replace(b"Max-Forwards: 70", b"Max-Forwards: ab")
    client.send(bad, edge.address("udp"))
    answer = await client.recv()
    assert isinstance(answer, Response) and answer.status == 400
    assert (answer.headers.get("Warning") or "").startswith('399 routr-ray "')
    assert await metrics(edge, "malformed") == 1
