"""WS and WSS listeners (RFC 7118): the sip subprotocol, one SIP message per WebSocket message, replies over the
same connection, keepalives, caps, size and idle guards."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from routr_ray.edge import tlsutil
from routr_ray.edge.connections import ConnectionTable
from routr_ray.edge.transports import Flow, TransportLimits, TransportName, WsListener, WssListener

pytestmark = pytest.mark.timeout(20)

REGISTER = (
    "REGISTER sip:example.com SIP/2.0\r\n"
    "Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKasudf\r\n"
    "Max-Forwards: 70\r\n"
    "To: <sip:alice@example.com>\r\n"
    "From: <sip:alice@example.com>;tag=65bnmj.34asd\r\n"
    "Call-ID: aiuy7k9njasd\r\n"
    "CSeq: 1 REGISTER\r\n"
    "Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws>;expires=300\r\n"
    "Content-Length: 0\r\n\r\n"
)
REPLY = "SIP/2.0 200 OK\r\nCSeq: 1 REGISTER\r\nCall-ID: aiuy7k9njasd\r\nContent-Length: 0\r\n\r\n"


class Inbox:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Flow]] = asyncio.Queue()

    def __call__(self, data: bytes, flow: Flow) -> None:
        self.queue.put_nowait((data, flow))

    async def next(self, within: float = 2.0) -> tuple[bytes, Flow]:
        return await asyncio.wait_for(self.queue.get(), within)


async def recv(ws: ClientConnection, within: float = 2.0) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), within)


async def closed_soon(ws: ClientConnection, within: float = 2.0) -> bool:
    try:
        await asyncio.wait_for(ws.recv(), within)
    except ConnectionClosed:
        return True
    return False


@pytest.fixture
async def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def ws_listener(inbox: Inbox) -> AsyncIterator[WsListener]:
    listener = WsListener("127.0.0.1", 0, inbox, limits=TransportLimits(max_message_size=4096))
    await listener.start()
    yield listener
    await listener.stop()


def url(listener: WsListener, scheme: str = "ws") -> str:
    host, port = listener.local_address
    return f"{scheme}://{host}:{port}/"


async def test_ws_delivers_and_replies_over_the_same_connection(
    ws_listener: WsListener, inbox: Inbox
) -> None:
    async with connect(url(ws_listener), subprotocols=["sip"]) as ws:
        assert ws.subprotocol == "sip"  # RFC 7118 §4.1: echoed
        await ws.send(REGISTER)  # text frame
        data, flow = await inbox.next()
        assert data == REGISTER.encode()
        assert flow.transport is TransportName.WS and flow.connection_id is not None
        assert flow.remote == ws.local_address[:2] and flow.local == ws_listener.local_address
        assert await ws_listener.send(flow, REPLY.encode())
        answer = await recv(ws)
        assert answer == REPLY  # sent as a text frame
        # one SIP message per WebSocket message, binary frames too; no framing across messages
        await ws.send(REGISTER.encode())
        await ws.send(REGISTER.encode())
        assert (await inbox.next())[0] == REGISTER.encode()
        assert (await inbox.next())[0] == REGISTER.encode()
        assert await ws_listener.send(flow.remote, REPLY.encode())  # found by received/rport address too
        assert await recv(ws) == REPLY
        not_utf8 = REPLY.encode() + b"\xff\xfe"
        assert await ws_listener.send(flow, not_utf8)  # cannot be a text frame: goes binary
        assert await recv(ws) == not_utf8
    await asyncio.sleep(0.05)
    assert len(ws_listener.connections) == 0
    assert not await ws_listener.send(flow, REPLY.encode())


async def test_ws_handshake_without_the_sip_subprotocol_is_refused(ws_listener: WsListener) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url(ws_listener)):
            pass
    assert refused.value.response.status_code == 400
    with pytest.raises(InvalidStatus):
        async with connect(url(ws_listener), subprotocols=["chat"]):
            pass
    assert ws_listener.counters.handshake_rejects == 2
    assert len(ws_listener.connections) == 0


async def test_ws_double_crlf_keepalive_gets_a_crlf(ws_listener: WsListener, inbox: Inbox) -> None:
    async with connect(url(ws_listener), subprotocols=["sip"]) as ws:
        await ws.send("\r\n\r\n")
        assert await recv(ws) == "\r\n"
        await ws.send("\r\n")  # other CRLF-only messages are ignored
        await ws.send(REGISTER)
        assert (await inbox.next())[0] == REGISTER.encode()
        assert inbox.queue.empty()


async def test_ws_message_over_the_size_limit_closes_the_connection(
    ws_listener: WsListener, inbox: Inbox
) -> None:
    async with connect(url(ws_listener), subprotocols=["sip"]) as ws:
        await ws.send(REGISTER + "x" * 5000)
        assert await closed_soon(ws)
        assert ws.close_code == 1009
    assert ws_listener.counters.oversize_messages == 1
    assert inbox.queue.empty()


async def test_ws_connection_cap_answers_503(inbox: Inbox) -> None:
    listener = WsListener("127.0.0.1", 0, inbox, connections=ConnectionTable(max_connections_per_source=1))
    await listener.start()
    try:
        async with connect(url(listener), subprotocols=["sip"]) as first:
            with pytest.raises(InvalidStatus) as refused:
                async with connect(url(listener), subprotocols=["sip"]):
                    pass
            assert refused.value.response.status_code == 503
            assert listener.counters.connections_over_source_cap == 1
            await first.send(REGISTER)
            assert (await inbox.next())[0] == REGISTER.encode()
    finally:
        await listener.stop()


async def test_ws_idle_and_first_message_timeouts(inbox: Inbox) -> None:
    limits = TransportLimits(idle_timeout=0.4, first_message_timeout=0.2)
    listener = WsListener("127.0.0.1", 0, inbox, limits=limits)
    await listener.start()
    try:
        async with connect(url(listener), subprotocols=["sip"]) as silent:
            assert await closed_soon(silent)
        assert listener.counters.first_message_timeouts == 1
        async with connect(url(listener), subprotocols=["sip"]) as idle:
            await idle.send(REGISTER)
            await inbox.next()
            await asyncio.sleep(0.25)  # past the first-message deadline: a message arrived, so it stays open
            assert len(listener.connections) == 1
            assert await closed_soon(idle)
        assert listener.counters.idle_timeouts == 1
    finally:
        await listener.stop()


async def test_wss_delivers_and_replies(inbox: Inbox, tmp_path: Path) -> None:
    cert_pem, key_pem = tlsutil.make_self_signed_pem(["localhost", "127.0.0.1"])
    base = tmp_path
    (base / "cert.pem").write_bytes(cert_pem)
    (base / "key.pem").write_bytes(key_pem)
    ctx = tlsutil.server_context(cert_path=base / "cert.pem", key_path=base / "key.pem")
    listener = WssListener("127.0.0.1", 0, inbox, ssl_context=ctx)
    await listener.start()
    try:
        client_ctx = ssl.create_default_context(cafile=str(base / "cert.pem"))
        async with connect(url(listener, "wss"), subprotocols=["sip"], ssl=client_ctx) as ws:
            assert ws.subprotocol == "sip"
            await ws.send(REGISTER)
            data, flow = await inbox.next()
            assert data == REGISTER.encode() and flow.transport is TransportName.WSS
            assert await listener.send(flow, REPLY.encode())
            assert await recv(ws) == REPLY
        with pytest.raises(InvalidStatus):
            async with connect(url(listener, "wss"), ssl=client_ctx):
                pass
    finally:
        await listener.stop()
