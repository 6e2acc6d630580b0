"""EdgePort workers sharing one EdgePort's ports (routr_ray/edge/workers.py): a response that reaches a worker
other than the one that sent the request is handed to that worker, and a request for a connection another worker
holds is sent by it. The siblings here are direct calls between two EdgePorts in one process (the actors wire
them over links)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.edge.transports import Flow, TransportName
from routr_ray.edge.transports.base import bind_socket
from routr_ray.edge.workers import worker_branch, worker_of_branch
from routr_ray.sip import Request, Response, parse
from tests.integration.test_edgeport import FAST, UdpPeer, config, fake_processor, request

pytestmark = pytest.mark.timeout(30)


class DirectSiblings:
    def __init__(self) -> None:
        self.edges: dict[int, EdgePort] = {}
        self.forwarded = 0

    async def forward(self, worker: int, flow: Flow, data: bytes) -> bool:
        self.forwarded += 1
        self.edges[worker].receive_from_sibling(flow, data)
        return True

    async def send_on_flow(self, transport: TransportName, host: str, port: int, data: bytes) -> bool:
        for edge in self.edges.values():
            if await edge.send_for_sibling(transport, host, port, data):
                return True
        return False


def test_branches_name_their_worker() -> None:
    assert worker_of_branch(worker_branch(3)) == 3
    assert worker_of_branch(worker_branch(0)) == 0
    assert worker_of_branch("z9hG4bKclient1") is None
    assert worker_of_branch("z9hG4bKrwx.1") is None
    assert worker_of_branch(None) is None


def test_workers_can_share_a_udp_port() -> None:
    first = bind_socket("127.0.0.1", 0, socket.SOCK_DGRAM, reuse_port=True)
    try:
        second = bind_socket("127.0.0.1", first.getsockname()[1], socket.SOCK_DGRAM, reuse_port=True)
        second.close()
        with pytest.raises(OSError):
            bind_socket("127.0.0.1", first.getsockname()[1], socket.SOCK_DGRAM)  # without it: taken
    finally:
        first.close()


async def workers(siblings: DirectSiblings) -> tuple[EdgePort, EdgePort]:
    edges = []
    for index in range(2):
        # distinct ports here, so that the test decides which worker a message reaches
        options = EdgePortOptions(timers=FAST, worker=index, workers=2, siblings=siblings)
        edge = EdgePort(config(), FakeDispatcher(fake_processor()), options=options)
        await edge.start()
        siblings.edges[index] = edge
        edges.append(edge)
    return edges[0], edges[1]


async def test_a_response_reaching_the_other_worker_completes_the_transaction() -> None:
    siblings = DirectSiblings()
    a, b = await workers(siblings)
    client, callee = await UdpPeer.open(), await UdpPeer.open()
    try:
        client.send(request("INVITE", f"sip:bob@127.0.0.1:{callee.port}", client.port), a.address("udp"))
        assert (await client.recv()).status == 100  # type: ignore[union-attr]
        invite = await callee.recv()
        assert isinstance(invite, Request)
        assert worker_of_branch(invite.top_via.branch) == 0  # type: ignore[union-attr]
        for status in (180, 200):  # the kernel gave the callee's responses to worker b
            callee.send(make_response(invite, status, to_tag="b1"), b.address("udp"))
            answer = await client.recv()
            assert isinstance(answer, Response) and answer.status == status
        assert siblings.forwarded == 2
        await asyncio.sleep(0.3)  # FAST timers: an unanswered branch would have retransmitted by now
        again = [callee.queue.get_nowait() for _ in range(callee.queue.qsize())]
        assert not [m for m in again if isinstance(m, Request)]  # worker a saw the responses: no retransmission
    finally:
        client.close()
        callee.close()
        await a.stop()
        await b.stop()


async def test_a_response_for_no_transaction_is_not_bounced_between_workers() -> None:
    siblings = DirectSiblings()
    a, b = await workers(siblings)
    callee = await UdpPeer.open()
    try:
        stray = parse(request("INVITE", "sip:bob@127.0.0.1", callee.port))
        assert isinstance(stray, Request)
        stray.headers.set("Via", f"SIP/2.0/UDP 127.0.0.1:{a.address('udp')[1]};branch={worker_branch(0)}")
        callee.send(make_response(stray, 486, to_tag="x"), b.address("udp"))
        await asyncio.sleep(0.2)
        assert siblings.forwarded == 1  # b handed it to a once; a, owning no transaction, dropped it
    finally:
        callee.close()
        await a.stop()
        await b.stop()


async def read_sip(reader: asyncio.StreamReader) -> Request | Response:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    return parse(head)


async def test_a_request_for_a_connection_the_other_worker_holds_is_sent_by_it() -> None:
    from routr_ray.edge.directives import NEXT_HOP_FLOW_KEY, NEXT_HOP_KEY
    from routr_ray.proto.convert import from_proto, make_message_response

    callee_at: dict[str, int] = {}

    def directing(mreq):  # type: ignore[no-untyped-def]
        msg = from_proto(mreq.message)
        if isinstance(msg, Request) and msg.method == "INVITE":
            lp = mreq.listening_points[0]
            msg.headers.prepend("Via", f"SIP/2.0/TCP {lp.host}:{lp.port}")
            meta = {NEXT_HOP_KEY: f"sip:127.0.0.1:{callee_at['port']};transport=tcp", NEXT_HOP_FLOW_KEY: "true"}
            return make_message_response(msg, metadata=meta)
        return fake_processor()(mreq)

    siblings = DirectSiblings()
    edges = []
    for index, handler in enumerate((fake_processor(), directing)):
        options = EdgePortOptions(timers=FAST, worker=index, workers=2, siblings=siblings)
        edge = EdgePort(config(), FakeDispatcher(handler), options=options)
        await edge.start()
        siblings.edges[index] = edge
        edges.append(edge)
    a, b = edges
    reader, writer = await asyncio.open_connection(*a.address("tcp"))
    callee_at["port"] = writer.get_extra_info("sockname")[1]
    client = await UdpPeer.open()
    try:
        # the callee's connection (a registration over TCP) is accepted by worker a
        writer.write(request("REGISTER", "sip:127.0.0.1", callee_at["port"], transport="TCP",
                             branch="z9hG4bKreg1", call_id="reg@test",
                             extra=f"Contact: <sip:bob@127.0.0.1:{callee_at['port']};transport=tcp>\r\n"))
        assert (await read_sip(reader)).status == 200  # type: ignore[union-attr]
        # the call reaches worker b, which has no such connection: worker a sends the INVITE over it
        client.send(request("INVITE", "sip:bob@127.0.0.1", client.port), b.address("udp"))
        assert (await client.recv()).status == 100  # type: ignore[union-attr]
        invite = await read_sip(reader)
        assert isinstance(invite, Request) and invite.method == "INVITE"
        assert worker_of_branch(invite.top_via.branch) == 1  # type: ignore[union-attr]
        # its answer comes back on that connection to worker a, which hands it to worker b
        writer.write(bytes(make_response(invite, 200, to_tag="b1")))
        answer = await client.recv_final()
        assert answer.status == 200
    finally:
        writer.close()
        client.close()
        for edge in edges:
            await edge.stop()


async def test_a_request_for_a_connection_no_worker_holds_any_more_gets_480() -> None:
    """One worker answers 480 for a flow that is closed; two workers must too (not 503 for the failed send)."""
    from routr_ray.edge.directives import NEXT_HOP_FLOW_KEY, NEXT_HOP_KEY
    from routr_ray.proto.convert import from_proto, make_message_response

    def directing(mreq):  # type: ignore[no-untyped-def]
        msg = from_proto(mreq.message)
        if isinstance(msg, Request) and msg.method == "INVITE":
            lp = mreq.listening_points[0]
            msg.headers.prepend("Via", f"SIP/2.0/TCP {lp.host}:{lp.port}")
            meta = {NEXT_HOP_KEY: "sip:127.0.0.1:9;transport=tcp", NEXT_HOP_FLOW_KEY: "true"}
            return make_message_response(msg, metadata=meta)
        return fake_processor()(mreq)

    siblings = DirectSiblings()
    edges = []
    for index in range(2):
        options = EdgePortOptions(timers=FAST, worker=index, workers=2, siblings=siblings)
        edge = EdgePort(config(), FakeDispatcher(directing), options=options)
        await edge.start()
        siblings.edges[index] = edge
        edges.append(edge)
    client = await UdpPeer.open()
    try:
        client.send(request("INVITE", "sip:bob@127.0.0.1", client.port), edges[1].address("udp"))
        assert (await client.recv()).status == 100  # type: ignore[union-attr]
        final = await client.recv_final()
        assert final.status == 480
    finally:
        client.close()
        for edge in edges:
            await edge.stop()
