"""RFC 3261 §18.1.1 (issue 16 item 4): a request larger than 1300 bytes for a UDP next hop goes over TCP, its Via
saying so; a callee that takes no TCP gets it over UDP after all. Real sockets on 127.0.0.1, a fake router."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from routr_ray.edge.directives import NEXT_HOP_KEY
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.sip import Request, StreamFramer, parse
from tests.integration.test_edgeport import FAST, UdpPeer, config, request
from tests.integration.test_edgeport_routing import Router

pytestmark = pytest.mark.timeout(30)
BIG = "X-Padding: " + "p" * 1500 + "\r\n"


@pytest.fixture
async def router() -> Router:
    return Router()


@pytest.fixture
async def edge(router: Router) -> AsyncIterator[EdgePort]:
    port = EdgePort(config(), FakeDispatcher(router), options=EdgePortOptions(timers=FAST))
    await port.start()
    yield port
    await port.stop()


async def test_a_large_request_goes_over_tcp_to_a_callee_that_listens_there(edge: EdgePort, router: Router) -> None:
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        while data := await reader.read(65536):
            for unit in framer.feed(data):
                if isinstance(unit, bytes):
                    received.put_nowait(unit)
                    message = parse(unit)
                    if isinstance(message, Request) and message.method == "MESSAGE":
                        writer.write(bytes(make_response(message, 200, to_tag="b1")))

    callee = await asyncio.start_server(accept, "127.0.0.1", 0)
    caller = await UdpPeer.open()
    try:
        port = callee.sockets[0].getsockname()[1]
        router.routes["bob"] = {NEXT_HOP_KEY: f"sip:127.0.0.1:{port}"}  # no transport: UDP by default
        caller.send(request("MESSAGE", f"sip:bob@127.0.0.1:{port}", caller.port, extra=BIG), edge.address("udp"))
        forwarded = parse(await asyncio.wait_for(received.get(), 3))
        assert isinstance(forwarded, Request)
        assert forwarded.via[0].transport == "TCP" and forwarded.via[0].port == edge.address("tcp")[1]
        answer = await caller.recv_final()
        assert answer.status == 200
    finally:
        callee.close()
        caller.close()


async def test_a_large_request_falls_back_to_udp_when_the_callee_takes_no_tcp(edge: EdgePort, router: Router) -> None:
    callee = await UdpPeer.open()
    caller = await UdpPeer.open()
    try:
        # nothing listens on TCP at the callee's port: the connection is refused, then UDP
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", callee.port))  # TCP and UDP ports are separate: this TCP port stays closed
        router.routes["bob"] = {NEXT_HOP_KEY: f"sip:127.0.0.1:{callee.port}"}
        caller.send(request("MESSAGE", f"sip:bob@127.0.0.1:{callee.port}", caller.port, extra=BIG),
                    edge.address("udp"))
        forwarded = await callee.recv()
        assert isinstance(forwarded, Request) and forwarded.via[0].transport == "UDP"
        callee.send(make_response(forwarded, 200, to_tag="b1"), edge.address("udp"))
        assert (await caller.recv_final()).status == 200
    finally:
        callee.close()
        caller.close()


async def test_a_small_request_stays_on_udp(edge: EdgePort, router: Router) -> None:
    callee = await UdpPeer.open()
    caller = await UdpPeer.open()
    try:
        router.routes["bob"] = {NEXT_HOP_KEY: f"sip:127.0.0.1:{callee.port}"}
        caller.send(request("MESSAGE", f"sip:bob@127.0.0.1:{callee.port}", caller.port), edge.address("udp"))
        forwarded = await callee.recv()
        assert isinstance(forwarded, Request) and forwarded.via[0].transport == "UDP"
    finally:
        callee.close()
        caller.close()
