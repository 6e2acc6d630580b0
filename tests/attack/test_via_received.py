"""Issue 14 item 5: a client's own ``received=`` (or ``rport=<port>``) in its top Via must not steer our UDP
responses. Every answer to a UDP INVITE from 127.0.0.1 (100 Trying, the 407 and its retransmissions) goes to
127.0.0.1 and its source port, and nothing is sent anywhere else: a socket bound where the reflection would land
(192.0.2.1, on lo inside scripts/in-netns) hears nothing, and the listener never tries an unroutable address.

In-process EdgePort on real UDP sockets; the fake processor challenges every INVITE (407) as Connect does, so
the EdgePort retransmits the 407 until the ACK (RFC 3261 §17.2.1 Timer G).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from routr_ray.edge.dispatcher_client import PROCESSOR_METADATA_KEY, FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.edge.transports import TransportName
from routr_ray.proto.convert import from_proto, make_message_response
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request, Response
from tests.integration.test_edgeport import FAST, UdpPeer, config

pytestmark = pytest.mark.timeout(30)

REFLECTOR = "192.0.2.1"  # on lo inside scripts/in-netns: a datagram sent there would be captured


def challenge_everything(mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
    msg = from_proto(mreq.message)
    assert isinstance(msg, Request)
    challenge = make_response(msg, 407, to_tag="t407",
                              extra=[("Proxy-Authenticate", 'Digest realm="sip.local", nonce="n1", algorithm=MD5')])
    return make_message_response(challenge, metadata={PROCESSOR_METADATA_KEY: "fake-connect"})


@pytest.fixture
async def edge() -> AsyncIterator[EdgePort]:
    port = EdgePort(config(), FakeDispatcher(challenge_everything), options=EdgePortOptions(timers=FAST))
    await port.start()
    yield port
    await port.stop()


def invite(via: str) -> bytes:
    return (
        "INVITE sip:1002@sip.local SIP/2.0\r\n"
        f"Via: {via}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:1001@sip.local>;tag=a1\r\n"
        "To: <sip:1002@sip.local>\r\n"
        "Call-ID: reflect-1@attacker\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:1001@127.0.0.1>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def collect(peer: UdpPeer, seconds: float) -> list[Request | Response]:
    got: list[Request | Response] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (left := deadline - loop.time()) > 0:
        try:
            got.append(await peer.recv(left))
        except TimeoutError:
            break
    return got


@pytest.fixture
def reflector() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((REFLECTOR, 0))
    except OSError:
        sock.close()
        pytest.fail(f"{REFLECTOR} is not local: run inside scripts/in-netns")
    sock.setblocking(False)
    return sock


def drained(sock: socket.socket) -> list[bytes]:
    out: list[bytes] = []
    while True:
        try:
            out.append(sock.recv(65535))
        except BlockingIOError:
            return out


@pytest.mark.parametrize("params", [
    "received={reflector}",  # sent-by is the source, no rport: the case the old code kept
    "rport={rport};received={reflector}",  # a filled-in rport too
])
async def test_a_received_of_the_clients_choosing_reflects_nothing(
    edge: EdgePort, reflector: socket.socket, params: str
) -> None:
    rport = reflector.getsockname()[1]
    # the victim's port on the reflector address is the client's own port: the datagram would land there
    client = await UdpPeer.open("127.0.0.1")
    try:
        sent_by = f"127.0.0.1:{client.port}"
        via = f"SIP/2.0/UDP {sent_by};" + params.format(reflector=REFLECTOR, rport=rport) + ";branch=z9hG4bKrefl1"
        victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        victim.bind((REFLECTOR, client.port))  # where received=REFLECTOR without rport would send
        victim.setblocking(False)
        try:
            client.send(invite(via), edge.address("udp"))
            answers = await collect(client, 0.8)  # 100, 407 and Timer G retransmissions (T1 = 20 ms)
            statuses = [m.status for m in answers if isinstance(m, Response)]
            assert 100 in statuses and statuses.count(407) >= 2, statuses
            for answer in answers:
                assert isinstance(answer, Response) and answer.top_via is not None
                assert answer.top_via.params["received"] == "127.0.0.1"
            assert drained(victim) == [] and drained(reflector) == []
        finally:
            victim.close()
    finally:
        client.close()
        reflector.close()


async def test_an_unroutable_received_gets_every_answer_at_the_source(edge: EdgePort) -> None:
    """The issue's scenario: ``received=198.51.100.99`` (no route inside the namespace): the answers all reach
    127.0.0.1 and the listener never even tries 198.51.100.99 (no send failure counted)."""
    client = await UdpPeer.open("127.0.0.1")
    try:
        udp = edge.listeners[TransportName.UDP]
        failures_before = udp.counters.send_failures
        via = f"SIP/2.0/UDP 127.0.0.1:{client.port};received=198.51.100.99;branch=z9hG4bKrefl2"
        client.send(invite(via), edge.address("udp"))
        answers = await collect(client, 0.8)
        statuses = [m.status for m in answers if isinstance(m, Response)]
        assert 100 in statuses and statuses.count(407) >= 2, statuses
        assert udp.counters.send_failures == failures_before
    finally:
        client.close()
