"""The EdgePort honours the next-hop metadata a processor (Connect) returns (docs/connect.md "Metadata for the
EdgePort"): ``routr-ray.next-hop`` (+ ``.flow``, ``.edge-port-ref``), ``routr-ray.failover``, ``routr-ray.trunk-ref``;
host names as next hops are resolved without blocking. Real sockets on 127.0.0.1, a fake dispatcher.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from routr_ray.edge.directives import (
    FAILOVER_KEY,
    GATEWAY_AUTH_KEY,
    NEXT_HOP_EDGE_KEY,
    NEXT_HOP_FLOW_KEY,
    NEXT_HOP_KEY,
    TRUNK_REF_KEY,
    gateway_auth_value,
)
from routr_ray.edge.dispatcher_client import PROCESSOR_METADATA_KEY, FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.proto.convert import from_proto, make_message_response
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request, Response, StreamFramer, parse
from tests.integration.test_edgeport import FAST, UdpPeer, config, request

pytestmark = pytest.mark.timeout(30)


class Router:
    """A fake Connect: REGISTER -> 200; other requests forwarded with the metadata of ``routes[user]``
    (Request-URI user part), a Via without branch and Max-Forwards - 1; responses lose their top Via."""

    def __init__(self) -> None:
        self.routes: dict[str, dict[str, str]] = {}
        self.response_metadata: list[dict[str, str]] = []

    def __call__(self, mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        msg = from_proto(mreq.message)
        if isinstance(msg, Response):
            self.response_metadata.append(dict(mreq.metadata))
            msg.headers.remove_first_value("Via")
            return make_message_response(msg)
        assert isinstance(msg, Request)
        meta = {PROCESSOR_METADATA_KEY: "router"}
        if msg.method == "REGISTER":
            return make_message_response(make_response(msg, 200, to_tag="reg"), metadata=meta)
        lp = mreq.listening_points[0]
        msg.headers.prepend("Via", f"SIP/2.0/UDP {lp.host}:{lp.port};rport")
        meta.update(self.routes.get(msg.request_uri.user or "", {}))
        return make_message_response(msg, metadata=meta)


@pytest.fixture
async def router() -> Router:
    return Router()


@pytest.fixture
async def edge(router: Router) -> AsyncIterator[EdgePort]:
    port = EdgePort(config(), FakeDispatcher(router), options=EdgePortOptions(timers=FAST, cancel_wait=0.4))
    await port.start()
    yield port
    await port.stop()


@pytest.fixture
async def caller() -> AsyncIterator[UdpPeer]:
    peer = await UdpPeer.open()
    yield peer
    peer.close()


class TcpUa:
    """A UA that registered over TCP and keeps its connection open (it accepts no new connections)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()
        self.pending: list[bytes] = []
        self.port = int(writer.get_extra_info("sockname")[1])

    @classmethod
    async def register(cls, edge: EdgePort) -> TcpUa:
        ua = cls(*await asyncio.open_connection(*edge.address("tcp")))
        ua.writer.write(request("REGISTER", "sip:example.com", ua.port, transport="TCP", call_id="reg-tcp"))
        answer = await ua.recv()
        assert isinstance(answer, Response) and answer.status == 200
        return ua

    async def recv(self, timeout: float = 2.0) -> Request | Response:  # noqa: ASYNC109
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            assert data, "connection closed"
            self.pending.extend(u for u in self.framer.feed(data) if isinstance(u, bytes))
        return parse(self.pending.pop(0))

    def send(self, message: Request | Response) -> None:
        self.writer.write(bytes(message))

    def close(self) -> None:
        self.writer.close()


def flow_to(transport: str, port: int, edge_ref: str = "edge-test") -> dict[str, str]:
    return {
        NEXT_HOP_KEY: f"sip:127.0.0.1:{port};transport={transport}",
        NEXT_HOP_FLOW_KEY: "true",
        NEXT_HOP_EDGE_KEY: edge_ref,
    }


async def test_request_to_a_tcp_callee_goes_back_over_its_own_connection(
    edge: EdgePort, router: Router, caller: UdpPeer
) -> None:
    bob = await TcpUa.register(edge)
    try:
        connections = len(edge.connections)
        # the Request-URI is bob's Contact; only the metadata says where his flow is
        router.routes["bob"] = flow_to("tcp", bob.port)
        caller.send(request("MESSAGE", "sip:bob@10.0.0.99:5060;transport=tcp", caller.port), edge.address("udp"))
        forwarded = await bob.recv()
        assert isinstance(forwarded, Request) and forwarded.method == "MESSAGE"
        assert forwarded.via[0].transport == "TCP" and forwarded.via[0].branch is not None
        assert len(edge.connections) == connections  # no new connection was opened
        bob.send(make_response(forwarded, 200, to_tag="b1"))
        answer = await caller.recv()
        assert isinstance(answer, Response) and answer.status == 200
        assert [v.branch for v in answer.via] == ["z9hG4bKclient1"]
    finally:
        bob.close()


async def test_request_to_a_ws_callee_goes_back_over_its_websocket(
    edge: EdgePort, router: Router, caller: UdpPeer
) -> None:
    from websockets.asyncio.client import connect

    host, port = edge.address("ws")
    async with connect(f"ws://{host}:{port}", subprotocols=["sip"]) as ws:  # type: ignore[list-item]
        register = request("REGISTER", "sip:example.com", 0, transport="WS", host="bobws.invalid", call_id="r-ws")
        await ws.send(register.replace(b"bobws.invalid:0", b"bobws.invalid").decode())
        assert parse(str(await asyncio.wait_for(ws.recv(), 2)).encode()).status == 200  # type: ignore[union-attr]
        ws_port = ws.local_address[1]
        router.routes["bob"] = flow_to("ws", ws_port)
        caller.send(request("INVITE", "sip:bob@bobws.invalid;transport=ws", caller.port), edge.address("udp"))
        assert (await caller.recv()).status == 100  # type: ignore[union-attr]
        invite = parse(str(await asyncio.wait_for(ws.recv(), 2)).encode())
        assert isinstance(invite, Request) and invite.method == "INVITE"
        assert invite.via[0].transport == "WS"
        await ws.send(bytes(make_response(invite, 486, to_tag="b1")).decode())
        final = await caller.recv_final()
        assert final.status == 486
        ack = parse(str(await asyncio.wait_for(ws.recv(), 2)).encode())  # hop-by-hop ACK for the 486
        assert isinstance(ack, Request) and ack.method == "ACK"


async def test_an_invalid_host_is_not_taken_over_by_another_address(edge: EdgePort, caller: UdpPeer) -> None:
    """RFC 7118 §5 names: bob's connection from 127.0.0.1 holds ``bob7.invalid``; a request from another address
    whose Via claims the same name does not divert bob's calls."""
    bob = TcpUa(*await asyncio.open_connection(*edge.address("tcp")))
    thief = TcpUa(*await asyncio.open_connection(*edge.address("tcp"), local_addr=("127.0.0.2", 0)))
    try:
        name = "bob7.invalid"
        bob.writer.write(request("REGISTER", "sip:example.com", 0, transport="TCP", host=name, call_id="r-bob")
                         .replace(f"{name}:0".encode(), name.encode()))
        assert (await bob.recv()).status == 200  # type: ignore[union-attr]
        thief.writer.write(request("REGISTER", "sip:example.com", 0, transport="TCP", host=name, call_id="r-x")
                           .replace(f"{name}:0".encode(), name.encode()))
        assert (await thief.recv()).status == 200  # type: ignore[union-attr]
        assert edge.metrics.reject_counts.get("invalid_host_taken") == 1
        caller.send(request("MESSAGE", f"sip:bob@{name};transport=tcp", caller.port), edge.address("udp"))
        forwarded = await bob.recv()
        assert isinstance(forwarded, Request) and forwarded.method == "MESSAGE"
        with pytest.raises(TimeoutError):
            await thief.recv(timeout=0.3)
    finally:
        bob.close()
        thief.close()


async def test_a_flow_whose_connection_is_gone_gets_480(edge: EdgePort, router: Router, caller: UdpPeer) -> None:
    bob = await TcpUa.register(edge)
    router.routes["bob"] = flow_to("tcp", bob.port)
    bob.close()
    for _ in range(50):
        if not len(edge.connections):
            break
        await asyncio.sleep(0.02)
    caller.send(request("MESSAGE", "sip:bob@10.0.0.99", caller.port), edge.address("udp"))
    answer = await caller.recv()
    assert isinstance(answer, Response) and answer.status == 480


async def test_a_flow_held_by_another_edgeport_gets_503(edge: EdgePort, router: Router, caller: UdpPeer) -> None:
    bob = await TcpUa.register(edge)
    try:
        router.routes["bob"] = flow_to("tcp", bob.port, edge_ref="edge-elsewhere")
        caller.send(request("MESSAGE", "sip:bob@10.0.0.99", caller.port), edge.address("udp"))
        answer = await caller.recv()
        assert isinstance(answer, Response) and answer.status == 503
        assert answer.headers.get("Retry-After") == "5"
        assert "edge-elsewhere" in (answer.headers.get("Warning") or "")
    finally:
        bob.close()


async def test_next_hop_without_flow_is_sent_to_that_address_not_the_request_uri(
    edge: EdgePort, router: Router, caller: UdpPeer
) -> None:
    callee = await UdpPeer.open()
    try:
        # another EdgePort's ref does not matter when the callee is reachable directly (no flow)
        router.routes["bob"] = {NEXT_HOP_KEY: f"sip:127.0.0.1:{callee.port}", NEXT_HOP_EDGE_KEY: "edge-other"}
        caller.send(request("MESSAGE", "sip:bob@192.0.2.55:5060", caller.port), edge.address("udp"))
        forwarded = await callee.recv()
        assert isinstance(forwarded, Request) and forwarded.uri == "sip:bob@192.0.2.55:5060"
    finally:
        callee.close()


async def test_failover_to_the_second_uri_after_a_503(edge: EdgePort, router: Router, caller: UdpPeer) -> None:
    first, second = await UdpPeer.open(), await UdpPeer.open()
    try:
        router.routes["+15551234"] = {
            NEXT_HOP_KEY: f"sip:127.0.0.1:{first.port}",
            FAILOVER_KEY: f"sip:+15551234@127.0.0.1:{second.port}, sip:+15551234@127.0.0.1:9",
            TRUNK_REF_KEY: "trunk-1",
        }
        caller.send(request("INVITE", f"sip:+15551234@127.0.0.1:{first.port}", caller.port), edge.address("udp"))
        assert (await caller.recv()).status == 100  # type: ignore[union-attr]
        invite1 = await first.recv()
        assert isinstance(invite1, Request)
        first.send(make_response(invite1, 503, to_tag="t1"), edge.address("udp"))
        ack = await first.recv()
        assert isinstance(ack, Request) and ack.method == "ACK"  # the 503 is acknowledged hop by hop
        invite2 = await second.recv()
        assert isinstance(invite2, Request) and invite2.method == "INVITE"
        assert invite2.uri == f"sip:+15551234@127.0.0.1:{second.port}"
        assert invite2.via[0].branch != invite1.via[0].branch
        assert len(invite2.via) == len(invite1.via)  # one Via of ours, not two
        second.send(make_response(invite2, 200, to_tag="t2"), edge.address("udp"))
        final = await caller.recv_final()
        assert final.status == 200  # the 503 never reached the caller
        assert router.response_metadata[-1].get(TRUNK_REF_KEY) == "trunk-1"
        assert router.response_metadata[-1].get(PROCESSOR_METADATA_KEY) == "router"
    finally:
        first.close()
        second.close()


async def test_failover_after_a_timeout_and_the_last_answer_is_relayed(
    edge: EdgePort, router: Router, caller: UdpPeer
) -> None:
    dead, second = await UdpPeer.open(), await UdpPeer.open()
    try:
        router.routes["+1555"] = {
            NEXT_HOP_KEY: f"sip:127.0.0.1:{dead.port}",
            FAILOVER_KEY: f"sip:+1555@127.0.0.1:{second.port}",
        }
        caller.send(request("MESSAGE", f"sip:+1555@127.0.0.1:{dead.port}", caller.port), edge.address("udp"))
        assert isinstance(await dead.recv(), Request)  # it never answers: Timer F (64*T1 = 1.28 s here)
        forwarded = await second.recv(timeout=3)
        assert isinstance(forwarded, Request) and forwarded.uri == f"sip:+1555@127.0.0.1:{second.port}"
        second.send(make_response(forwarded, 503, to_tag="t2"), edge.address("udp"))
        final = await caller.recv_final()
        assert final.status == 503  # no target left: the last answer goes upstream
    finally:
        dead.close()
        second.close()


async def test_host_name_next_hop_is_resolved(edge: EdgePort, router: Router, caller: UdpPeer) -> None:
    callee = await UdpPeer.open()
    try:
        router.routes["bob"] = {NEXT_HOP_KEY: f"sip:localhost:{callee.port}"}
        caller.send(request("MESSAGE", "sip:bob@example.com", caller.port), edge.address("udp"))
        forwarded = await callee.recv()
        assert isinstance(forwarded, Request) and forwarded.method == "MESSAGE"
        # and without metadata, a host name in the Request-URI (second lookup served from the cache)
        caller.send(request("MESSAGE", f"sip:carol@LOCALHOST:{callee.port}", caller.port, branch="z9hG4bK2"),
                    edge.address("udp"))
        again = await callee.recv()
        assert isinstance(again, Request) and again.uri == f"sip:carol@LOCALHOST:{callee.port}"
        assert edge.resolver.lookups == 1
    finally:
        callee.close()


async def test_unresolvable_host_gets_502(
    edge: EdgePort, router: Router, caller: UdpPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no DNS query may leave the machine: the loop's getaddrinfo answers "no such name" itself
    loop = asyncio.get_running_loop()

    async def no_such_name(*args: object, **kwargs: object) -> list[object]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(loop, "getaddrinfo", no_such_name)
    caller.send(request("MESSAGE", "sip:bob@no-such-host.example", caller.port), edge.address("udp"))
    answer = await caller.recv()
    assert isinstance(answer, Response) and answer.status == 502
    assert "no-such-host.example" in (answer.headers.get("Warning") or "")


async def test_invite_and_its_2xx_ack_reach_a_tcp_callee_over_its_connection(
    edge: EdgePort, router: Router, caller: UdpPeer
) -> None:
    bob = await TcpUa.register(edge)
    try:
        router.routes["bob"] = flow_to("tcp", bob.port)
        caller.send(request("INVITE", "sip:bob@10.0.0.99;transport=tcp", caller.port, call_id="inv-tcp"),
                    edge.address("udp"))
        assert (await caller.recv()).status == 100  # type: ignore[union-attr]
        invite = await bob.recv()
        assert isinstance(invite, Request) and invite.method == "INVITE"
        bob.send(make_response(invite, 200, to_tag="b2"))
        ok = await caller.recv_final()
        assert ok.status == 200
        # the end-to-end ACK (§13.2.2.4) goes through the dispatcher statelessly and back over bob's flow
        ack = request("ACK", "sip:bob@10.0.0.99;transport=tcp", caller.port, call_id="inv-tcp",
                      branch="z9hG4bKack1").replace(b"To: <sip:bob@example.com>", b"To: <sip:bob@example.com>;tag=b2")
        caller.send(ack, edge.address("udp"))
        got = await bob.recv()
        assert isinstance(got, Request) and got.method == "ACK" and got.call_id == "inv-tcp"
    finally:
        bob.close()


async def test_an_unusable_first_target_fails_over_at_once(edge: EdgePort, router: Router, caller: UdpPeer) -> None:
    second = await UdpPeer.open()
    try:
        router.routes["+1666"] = {
            NEXT_HOP_KEY: "sip:127.0.0.1:5061;transport=tls",  # this EdgePort has no TLS listener
            FAILOVER_KEY: f"sip:+1666@127.0.0.1:{second.port}",
        }
        caller.send(request("MESSAGE", "sip:+1666@127.0.0.1", caller.port), edge.address("udp"))
        forwarded = await second.recv()
        assert isinstance(forwarded, Request) and forwarded.uri == f"sip:+1666@127.0.0.1:{second.port}"
        assert edge.metrics.registry.get_sample_value("routr_edge_failovers_total") == 1
    finally:
        second.close()


async def test_a_trunk_challenge_is_answered_with_the_trunks_credentials(
    edge: EdgePort, router: Router, caller: UdpPeer
) -> None:
    """Routr's X-Gateway-Auth (routr.md §5.6): the trunk's 407 is ACKed and answered by the EdgePort (INVITE
    again, CSeq + 1, Proxy-Authorization); the caller sees only the 200, with its own CSeq, and its ACK reaches
    the trunk with the CSeq the trunk knows."""
    from routr_ray.sip.digest import DigestAuthenticator

    trunk = await UdpPeer.open()
    server = DigestAuthenticator(b"k" * 32)
    try:
        router.routes["+15551234"] = {TRUNK_REF_KEY: "trunk-1", GATEWAY_AUTH_KEY: gateway_auth_value("pbx-1", "1234")}
        uri = f"sip:+15551234@127.0.0.1:{trunk.port}"
        caller.send(request("INVITE", uri, caller.port, call_id="pstn-1", cseq=7), edge.address("udp"))
        assert (await caller.recv()).status == 100  # type: ignore[union-attr]
        first = await trunk.recv()
        assert isinstance(first, Request) and first.method == "INVITE" and first.cseq.seq == 7  # type: ignore[union-attr]
        [challenge] = server.challenge("trunk.example", now=1000.0)
        trunk.send(make_response(first, 407, to_tag="t1", extra=[("Proxy-Authenticate", challenge)]),
                   edge.address("udp"))
        ack = await trunk.recv()
        assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq.seq == 7  # type: ignore[union-attr]
        second = await trunk.recv()
        assert isinstance(second, Request) and second.method == "INVITE"
        assert second.cseq.seq == 8  # type: ignore[union-attr]
        assert second.top_via.branch != first.top_via.branch  # type: ignore[union-attr]
        credentials = second.headers.get("Proxy-Authorization")
        assert credentials is not None
        assert server.verify(credentials, method="INVITE", realm="trunk.example", password="1234", now=1000.0).ok
        trunk.send(make_response(second, 200, to_tag="t2"), edge.address("udp"))
        ok = await caller.recv_final()
        assert ok.status == 200 and ok.cseq.seq == 7  # type: ignore[union-attr]
        assert caller.queue.empty()  # the 407 never reached the caller
        caller.send(request("ACK", uri, caller.port, call_id="pstn-1", cseq=7, branch="z9hG4bKack2xx"),
                    edge.address("udp"))
        end_to_end = await trunk.recv()
        assert isinstance(end_to_end, Request) and end_to_end.method == "ACK"
        assert end_to_end.cseq.seq == 8  # type: ignore[union-attr]
    finally:
        trunk.close()


async def test_a_second_trunk_challenge_goes_to_the_caller(edge: EdgePort, router: Router, caller: UdpPeer) -> None:
    """A wrong trunk password: the challenge of the re-sent INVITE is not answered again; the caller gets it with
    its own CSeq."""
    trunk = await UdpPeer.open()
    try:
        router.routes["+15550000"] = {GATEWAY_AUTH_KEY: gateway_auth_value("pbx-1", "wrong")}
        caller.send(request("INVITE", f"sip:+15550000@127.0.0.1:{trunk.port}", caller.port, call_id="pstn-2"),
                    edge.address("udp"))
        challenge = [("Proxy-Authenticate", 'Digest realm="trunk.example", nonce="abc", qop="auth"')]
        for expected_cseq in (1, 2):
            invite = await trunk.recv()
            while isinstance(invite, Request) and invite.method == "ACK":
                invite = await trunk.recv()
            assert isinstance(invite, Request) and invite.cseq.seq == expected_cseq  # type: ignore[union-attr]
            trunk.send(make_response(invite, 407, to_tag=f"t{expected_cseq}", extra=challenge), edge.address("udp"))
        final = await caller.recv_final()
        assert final.status == 407 and final.cseq.seq == 1  # type: ignore[union-attr]
    finally:
        trunk.close()


async def test_failover_after_a_trunk_challenge_starts_from_the_callers_request(
    edge: EdgePort, router: Router, caller: UdpPeer
) -> None:
    """The authenticated INVITE gets 503: the next trunk URI gets the processor's request (the caller's CSeq, no
    credentials for the other host), and the caller's CSeq still comes back."""
    trunk_a, trunk_b = await UdpPeer.open(), await UdpPeer.open()
    try:
        router.routes["+15557777"] = {GATEWAY_AUTH_KEY: gateway_auth_value("pbx-1", "1234"),
                                      FAILOVER_KEY: f"sip:+15557777@127.0.0.1:{trunk_b.port}"}
        caller.send(request("INVITE", f"sip:+15557777@127.0.0.1:{trunk_a.port}", caller.port, call_id="pstn-3",
                            cseq=4), edge.address("udp"))
        challenge = [("Proxy-Authenticate", 'Digest realm="a.example", nonce="n1"')]
        first = await trunk_a.recv()
        assert isinstance(first, Request)
        trunk_a.send(make_response(first, 407, to_tag="a1", extra=challenge), edge.address("udp"))
        assert (await trunk_a.recv()).method == "ACK"  # type: ignore[union-attr]
        second = await trunk_a.recv()
        assert isinstance(second, Request) and second.cseq.seq == 5  # type: ignore[union-attr]
        trunk_a.send(make_response(second, 503, to_tag="a2"), edge.address("udp"))
        other = await trunk_b.recv()
        assert isinstance(other, Request) and other.method == "INVITE"
        assert other.cseq.seq == 4 and "Proxy-Authorization" not in other.headers  # type: ignore[union-attr]
        trunk_b.send(make_response(other, 200, to_tag="b1"), edge.address("udp"))
        ok = await caller.recv_final()
        assert ok.status == 200 and ok.cseq.seq == 4  # type: ignore[union-attr]
    finally:
        trunk_a.close()
        trunk_b.close()
