"""The EdgePort on real loopback sockets with an in-process fake dispatcher (issue 3 "Done when").

The fake processor behaves like Connect for what matters here: REGISTER -> 200; other requests are forwarded
to their Request-URI with a top Via WITHOUT branch and a Record-Route (the EdgePort must set the branch and add
no Record-Route of its own); responses get their top Via (ours) removed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator, Callable

import pytest

from routr_ray.config.edgeport import EdgePortConfig, HealthConfig, RateLimit, Transport, TransportProtocol
from routr_ray.edge.dispatcher_client import PROCESSOR_METADATA_KEY, FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.proto.convert import from_proto, make_message_response
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request, Response, parse
from routr_ray.sip.timers import TimerConfig

pytestmark = pytest.mark.timeout(30)

FAST = TimerConfig(t1=0.02, t2=0.08, t4=0.1, timer_d=0.2, timer_c=5.0)


def fake_processor(*, remove_via: bool = True) -> Callable[[processor_pb2.MessageRequest], processor_pb2.MessageResponse]:
    def handle(mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        msg = from_proto(mreq.message)
        meta = {PROCESSOR_METADATA_KEY: "fake-connect"}
        if isinstance(msg, Response):
            if remove_via:
                msg.headers.remove_first_value("Via")
            return make_message_response(msg, metadata=meta)
        assert isinstance(msg, Request)
        if msg.method == "REGISTER":
            ok = make_response(msg, 200, to_tag="reg1", extra=[("Contact", msg.headers.get("Contact") or "")])
            return make_message_response(ok, metadata=meta)
        lp = mreq.listening_points[0]
        msg.headers.prepend("Via", f"SIP/2.0/UDP {lp.host}:{lp.port};rport")
        msg.headers.prepend("Record-Route", f"<sip:{lp.host}:{lp.port};lr>")
        if msg.max_forwards is not None:
            msg.headers.set("Max-Forwards", str(msg.max_forwards - 1))
        return make_message_response(msg, metadata=meta)

    return handle


def config(**changes: object) -> EdgePortConfig:
    base: dict[str, object] = dict(
        ref="edge-test",
        transports=(
            Transport(TransportProtocol.UDP, 0, "127.0.0.1"),
            Transport(TransportProtocol.TCP, 0, "127.0.0.1"),
            Transport(TransportProtocol.WS, 0, "127.0.0.1"),
        ),
        rate_limit=RateLimit(trusted=(ipaddress.ip_network("127.0.0.1/32"),)),
        health=HealthConfig(enabled=False),
    )
    base.update(changes)
    return EdgePortConfig(**base)  # type: ignore[arg-type]


class UdpPeer(asyncio.DatagramProtocol):
    """A SIP UA on a UDP socket: everything it receives is queued, parsed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Request | Response] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, host: str = "127.0.0.1") -> UdpPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(cls, local_addr=(host, 0))
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait(parse(data))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, data: bytes | Request | Response, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(bytes(data), addr)

    async def recv(self, timeout: float = 2.0) -> Request | Response:  # noqa: ASYNC109
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def recv_final(self, timeout: float = 3.0) -> Response:  # noqa: ASYNC109
        while True:
            msg = await self.recv(timeout)
            if isinstance(msg, Response) and msg.status >= 200:
                return msg

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def request(
    method: str,
    uri: str,
    port: int,
    *,
    branch: str = "z9hG4bKclient1",
    call_id: str = "call-1@test",
    transport: str = "UDP",
    host: str = "127.0.0.1",
    max_forwards: int = 70,
    cseq: int = 1,
    extra: str = "",
) -> bytes:
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {host}:{port};rport;branch={branch}\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"From: <sip:alice@example.com>;tag=a1\r\n"
        f"To: <sip:bob@example.com>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:alice@{host}:{port}>\r\n"
        f"{extra}"
        f"Content-Length: 0\r\n\r\n"
    ).encode()


@pytest.fixture
async def fake() -> FakeDispatcher:
    return FakeDispatcher(fake_processor())


@pytest.fixture
async def edge(fake: FakeDispatcher) -> AsyncIterator[EdgePort]:
    port = EdgePort(config(), fake, options=EdgePortOptions(timers=FAST, cancel_wait=0.4))
    await port.start()
    yield port
    await port.stop()


@pytest.fixture
async def client() -> AsyncIterator[UdpPeer]:
    peer = await UdpPeer.open()
    yield peer
    peer.close()


@pytest.fixture
async def callee() -> AsyncIterator[UdpPeer]:
    peer = await UdpPeer.open()
    yield peer
    peer.close()


async def test_register_over_udp_reaches_the_dispatcher_and_the_answer_comes_back(
    edge: EdgePort, fake: FakeDispatcher, client: UdpPeer
) -> None:
    client.send(request("REGISTER", "sip:example.com", client.port), edge.address("udp"))
    answer = await client.recv()
    assert isinstance(answer, Response) and answer.status == 200
    # RFC 3581: rport filled with the source port, received added
    assert answer.top_via is not None
    assert answer.top_via.params["rport"] == str(client.port)
    assert answer.top_via.params["received"] == "127.0.0.1"
    [mreq] = fake.received
    assert mreq.edge_port_ref == "edge-test"
    assert (mreq.sender.host, mreq.sender.port) == ("127.0.0.1", client.port)
    assert {lp.transport for lp in mreq.listening_points} == {0, 1, 4}
    assert mreq.method == processor_pb2.REGISTER


async def test_register_over_tcp_is_answered_on_the_same_connection(edge: EdgePort, fake: FakeDispatcher) -> None:
    reader, writer = await asyncio.open_connection(*edge.address("tcp"))
    local_port = writer.get_extra_info("sockname")[1]
    writer.write(request("REGISTER", "sip:example.com", local_port, transport="TCP"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    answer = parse(head)
    assert isinstance(answer, Response) and answer.status == 200
    assert len(fake.received) == 1
    writer.close()


async def test_register_over_ws_is_answered_on_the_same_connection(edge: EdgePort) -> None:
    from websockets.asyncio.client import connect

    host, port = edge.address("ws")
    async with connect(f"ws://{host}:{port}", subprotocols=["sip"]) as ws:  # type: ignore[list-item]
        await ws.send(request("REGISTER", "sip:example.com", 0, transport="WS", host="df7jal23ls0d.invalid")
                      .replace(b"df7jal23ls0d.invalid:0", b"df7jal23ls0d.invalid"))
        answer = parse(str(await asyncio.wait_for(ws.recv(), 2)).encode())
    assert isinstance(answer, Response) and answer.status == 200
    assert answer.top_via is not None and answer.top_via.params["received"] == "127.0.0.1"


async def test_udp_retransmissions_reach_the_dispatcher_once(client: UdpPeer) -> None:
    async def slow(mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        await asyncio.sleep(0.1)
        return fake_processor()(mreq)

    fake = FakeDispatcher(slow)
    port = EdgePort(config(), fake, options=EdgePortOptions(timers=FAST))
    await port.start()
    try:
        data = request("REGISTER", "sip:example.com", client.port, branch="z9hG4bKretrans")
        for _ in range(3):
            client.send(data, port.address("udp"))
            await asyncio.sleep(0.01)
        assert (await client.recv()).status == 200  # type: ignore[union-attr]
        client.send(data, port.address("udp"))  # after the final: the 200 is resent by the transaction
        assert (await client.recv()).status == 200  # type: ignore[union-attr]
        assert len(fake.received) == 1
    finally:
        await port.stop()


async def test_an_answered_udp_request_is_kept_as_bytes_for_timer_j(
    edge: EdgePort, fake: FakeDispatcher, client: UdpPeer
) -> None:
    """RFC 3261 §17.2.2: in the Completed state a retransmission gets the same final response again, for 64*T1
    (1.28 s with FAST); the machine itself is gone (only the response's bytes are kept), and after Timer J the
    same request is a new transaction."""
    data = request("REGISTER", "sip:example.com", client.port, branch="z9hG4bKkeptj")
    client.send(data, edge.address("udp"))
    first = await client.recv()
    assert isinstance(first, Response) and first.status == 200
    assert len(edge.server_txns) == 0 and len(edge.completed) == 1
    client.send(data, edge.address("udp"))
    again = await client.recv()
    assert bytes(again) == bytes(first)
    assert len(fake.received) == 1
    await asyncio.sleep(64 * FAST.t1 + 0.1)
    assert len(edge.completed) == 0
    client.send(data, edge.address("udp"))
    assert (await client.recv()).status == 200  # type: ignore[union-attr]
    assert len(fake.received) == 2


async def test_an_answered_tcp_request_keeps_nothing(edge: EdgePort) -> None:
    """Timer J is zero on a reliable transport (§17.2.2): no retransmission can come, nothing is kept."""
    reader, writer = await asyncio.open_connection(*edge.address("tcp"))
    local_port = writer.get_extra_info("sockname")[1]
    writer.write(request("REGISTER", "sip:example.com", local_port, transport="TCP", branch="z9hG4bKtcpj"))
    answer = parse(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2))
    assert isinstance(answer, Response) and answer.status == 200
    assert len(edge.server_txns) == 0 and len(edge.completed) == 0
    writer.close()


async def test_forwarded_request_has_our_branch_the_processors_record_route_and_received(
    edge: EdgePort, client: UdpPeer, callee: UdpPeer
) -> None:
    client.send(request("MESSAGE", f"sip:bob@127.0.0.1:{callee.port}", client.port), edge.address("udp"))
    forwarded = await callee.recv()
    assert isinstance(forwarded, Request) and forwarded.method == "MESSAGE"
    top, second = forwarded.via[0], forwarded.via[1]
    assert (top.host, top.port) == edge.address("udp")
    assert top.branch is not None and top.branch.startswith("z9hG4bK") and top.branch != "z9hG4bKclient1"
    assert second.params["received"] == "127.0.0.1" and second.params["rport"] == str(client.port)
    assert [str(rr.uri) for rr in forwarded.record_routes] == [f"sip:127.0.0.1:{edge.address('udp')[1]};lr"]
    assert forwarded.max_forwards == 69
    callee.send(make_response(forwarded, 200, to_tag="b1"), edge.address("udp"))
    answer = await client.recv()
    assert isinstance(answer, Response) and answer.status == 200
    assert len(answer.via) == 1 and answer.via[0].branch == "z9hG4bKclient1"


async def test_our_via_is_removed_when_the_processor_leaves_it(client: UdpPeer, callee: UdpPeer) -> None:
    fake = FakeDispatcher(fake_processor(remove_via=False))
    port = EdgePort(config(), fake, options=EdgePortOptions(timers=FAST))
    await port.start()
    try:
        client.send(request("MESSAGE", f"sip:bob@127.0.0.1:{callee.port}", client.port), port.address("udp"))
        forwarded = await callee.recv()
        fake.failing = True  # and a dispatcher failure must not lose the response either
        callee.send(make_response(forwarded, 202, to_tag="b1"), port.address("udp"))  # type: ignore[arg-type]
        answer = await client.recv()
        assert isinstance(answer, Response) and answer.status == 202
        assert [v.branch for v in answer.via] == ["z9hG4bKclient1"]
    finally:
        await port.stop()


async def test_invite_to_a_dead_next_hop_gets_408(edge: EdgePort, client: UdpPeer, callee: UdpPeer) -> None:
    client.send(request("INVITE", f"sip:bob@127.0.0.1:{callee.port}", client.port), edge.address("udp"))
    trying = await client.recv()
    assert isinstance(trying, Response) and trying.status == 100
    copies = [await callee.recv(), await callee.recv()]  # Timer A retransmits over UDP
    assert all(isinstance(m, Request) and m.method == "INVITE" for m in copies)
    final = await client.recv_final(timeout=3)
    assert final.status == 408


async def _ringing_call(edge: EdgePort, client: UdpPeer, callee: UdpPeer) -> Request:
    client.send(request("INVITE", f"sip:bob@127.0.0.1:{callee.port}", client.port), edge.address("udp"))
    assert (await client.recv()).status == 100  # type: ignore[union-attr]
    invite = await callee.recv()
    assert isinstance(invite, Request)
    callee.send(make_response(invite, 180, to_tag="b1"), edge.address("udp"))
    ringing = await client.recv()
    assert isinstance(ringing, Response) and ringing.status == 180
    return invite


async def test_cancel_of_a_ringing_invite_gets_200_and_487(
    edge: EdgePort, fake: FakeDispatcher, client: UdpPeer, callee: UdpPeer
) -> None:
    invite = await _ringing_call(edge, client, callee)
    client.send(request("CANCEL", f"sip:bob@127.0.0.1:{callee.port}", client.port), edge.address("udp"))
    ok = await client.recv()
    assert isinstance(ok, Response) and ok.status == 200 and ok.cseq.method == "CANCEL"  # type: ignore[union-attr]
    cancel = await callee.recv()
    while isinstance(cancel, Request) and cancel.method == "INVITE":  # a late retransmission
        cancel = await callee.recv()
    assert isinstance(cancel, Request) and cancel.method == "CANCEL"
    assert cancel.via[0].branch == invite.via[0].branch  # §9.1: same branch as the INVITE
    callee.send(make_response(cancel, 200, to_tag="b1"), edge.address("udp"))
    callee.send(make_response(invite, 487, to_tag="b1"), edge.address("udp"))
    final = await client.recv_final()
    assert final.status == 487
    ack = await callee.recv()
    while not (isinstance(ack, Request) and ack.method == "ACK"):
        ack = await callee.recv()
    assert ack.via[0].branch == invite.via[0].branch  # hop-by-hop ACK for the 487 (§17.1.1.3)
    assert all(m.method != processor_pb2.CANCEL for m in fake.received)


async def test_cancel_whose_callee_stays_silent_still_ends_in_487(
    edge: EdgePort, client: UdpPeer, callee: UdpPeer
) -> None:
    await _ringing_call(edge, client, callee)
    client.send(request("CANCEL", f"sip:bob@127.0.0.1:{callee.port}", client.port), edge.address("udp"))
    assert (await client.recv()).status == 200  # type: ignore[union-attr]
    final = await client.recv_final(timeout=3)
    assert final.status == 487


async def test_a_2xx_racing_the_cancel_is_relayed(edge: EdgePort, client: UdpPeer, callee: UdpPeer) -> None:
    invite = await _ringing_call(edge, client, callee)
    client.send(request("CANCEL", f"sip:bob@127.0.0.1:{callee.port}", client.port), edge.address("udp"))
    assert (await client.recv()).status == 200  # type: ignore[union-attr]
    callee.send(make_response(invite, 200, to_tag="b1"), edge.address("udp"))
    final = await client.recv_final()
    assert final.status == 200 and final.cseq.method == "INVITE"  # type: ignore[union-attr]


async def test_cancel_matching_nothing_gets_481(edge: EdgePort, client: UdpPeer) -> None:
    client.send(request("CANCEL", "sip:bob@127.0.0.1:9", client.port, branch="z9hG4bKnone"), edge.address("udp"))
    assert (await client.recv()).status == 481  # type: ignore[union-attr]


async def test_options_to_the_edge_is_answered_locally(edge: EdgePort, fake: FakeDispatcher, client: UdpPeer) -> None:
    host, port = edge.address("udp")
    client.send(request("OPTIONS", f"sip:{host}:{port}", client.port), (host, port))
    answer = await client.recv()
    assert isinstance(answer, Response) and answer.status == 200
    assert "INVITE" in (answer.headers.get("Allow") or "")
    assert fake.received == []


async def test_max_forwards_zero_gets_483(edge: EdgePort, fake: FakeDispatcher, client: UdpPeer) -> None:
    client.send(request("MESSAGE", "sip:bob@127.0.0.1:9", client.port, max_forwards=0), edge.address("udp"))
    assert (await client.recv()).status == 483  # type: ignore[union-attr]
    assert fake.received == []


async def test_an_options_with_max_forwards_zero_is_answered_here(edge: EdgePort, fake: FakeDispatcher,
                                                                   client: UdpPeer) -> None:
    """RFC 3261 §16.3 step 2: not forwarded; the proxy answers it as the final recipient (§11), a traceroute probe."""
    client.send(request("OPTIONS", "sip:bob@192.0.2.77", client.port, max_forwards=0), edge.address("udp"))
    answer = await client.recv()
    assert isinstance(answer, Response) and answer.status == 200 and answer.headers.get("Allow")
    assert fake.received == []  # never reached the dispatcher


async def test_proxy_require_gets_420_naming_the_unsupported_tags(
    edge: EdgePort, fake: FakeDispatcher, client: UdpPeer
) -> None:
    client.send(request("MESSAGE", "sip:bob@127.0.0.1:9", client.port, extra="Proxy-Require: foo, bar\r\n"),
                edge.address("udp"))
    answer = await client.recv()
    assert isinstance(answer, Response) and answer.status == 420  # RFC 3261 §16.3 step 5
    assert answer.headers.get_all("Unsupported") == ["foo", "bar"]
    assert fake.received == []


async def test_a_request_that_comes_back_with_our_branch_gets_482(
    edge: EdgePort, client: UdpPeer, callee: UdpPeer
) -> None:
    client.send(request("MESSAGE", f"sip:bob@127.0.0.1:{callee.port}", client.port), edge.address("udp"))
    forwarded = await callee.recv()
    assert isinstance(forwarded, Request)
    looped = forwarded.copy()
    looped.headers.prepend("Via", f"SIP/2.0/UDP 127.0.0.1:{callee.port};branch=z9hG4bKloop")
    callee.send(looped, edge.address("udp"))
    answer = await callee.recv()
    assert isinstance(answer, Response) and answer.status == 482


async def test_dispatcher_failure_gets_503_with_retry_after(
    edge: EdgePort, fake: FakeDispatcher, client: UdpPeer
) -> None:
    fake.failing = True
    client.send(request("REGISTER", "sip:example.com", client.port), edge.address("udp"))
    answer = await client.recv()
    assert isinstance(answer, Response) and answer.status == 503
    assert answer.headers.get("Retry-After") == "5"


async def test_malformed_request_gets_400_and_a_malformed_response_is_dropped(
    edge: EdgePort, client: UdpPeer
) -> None:
    bad = request("REGISTER", "sip:example.com", client.port).replace(b"Max-Forwards: 70", b"Max-Forwards: ab")
    client.send(bad, edge.address("udp"))
    answer = await client.recv()
    assert isinstance(answer, Response) and answer.status == 400
    client.send(b"SIP/2.0 200 OK\r\nVia: garbage\r\n\r\n", edge.address("udp"))
    with pytest.raises(TimeoutError):
        await client.recv(timeout=0.2)


def test_udp_sockets_are_closed_by_fixtures() -> None:
    # guard against a leaked socket making other tests flaky: binding 127.0.0.1:0 always works
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.close()


async def test_options_to_the_edge_requiring_an_extension_gets_420(
    edge: EdgePort, fake: FakeDispatcher, client: UdpPeer
) -> None:
    host, port = edge.address("udp")
    client.send(request("OPTIONS", f"sip:{host}:{port}", client.port, extra="Require: 100rel, timer\r\n"),
                edge.address("udp"))
    answer = await client.recv()
    assert isinstance(answer, Response) and answer.status == 420  # RFC 3261 §8.2.2.3
    assert answer.headers.get_all("Unsupported") == ["100rel", "timer"]
    assert fake.received == []
