"""Every RFC 4475 (and RFC 5118) torture message sent to a live EdgePort over UDP and over TCP: the EdgePort
survives, logs no error, sends nothing anywhere but loopback, and still answers a REGISTER after each message.

The messages name outside addresses (192.0.2.x, 255.255.255.255). Run inside the loopback-only namespace:

    scripts/in-netns python -m pytest tests/integration/test_edge_torture.py -q

Belt and braces: every datagram or stream write the EdgePort makes is checked here, and one to an address that
is not 127.0.0.1 is refused and recorded (the test then fails), so nothing can leave even outside the namespace.
The fake processor answers REGISTER 200 and forwards every other request it can convert to a local UDP sink
(through ``routr-ray.next-hop``), which answers what it can parse; so the forwarding path sees the torture
messages too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from routr_ray.edge.directives import NEXT_HOP_KEY
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.edge.transports import Flow
from routr_ray.proto.convert import from_proto, make_message_response
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import ParseError, Request, Response, parse
from tests.integration.test_edgeport import FAST, UdpPeer, config, request

pytestmark = pytest.mark.timeout(120)

DATA = Path(__file__).resolve().parents[1] / "data"
MESSAGES = sorted([*(DATA / "rfc4475").glob("*.dat"), *(DATA / "rfc5118").glob("*.dat")])
# what the RFCs call invalid without leeway (index.json "parser": "reject"): never handed to the dispatcher
INVALID = {
    entry["file"]
    for folder in ("rfc4475", "rfc5118")
    for entry in json.loads((DATA / folder / "index.json").read_text())["messages"]
    if entry.get("parser") == "reject"
}
LOOPBACK = "127.0.0.1"


def test_the_corpus_is_all_there() -> None:
    assert len(list((DATA / "rfc4475").glob("*.dat"))) == 49
    assert len(list((DATA / "rfc5118").glob("*.dat"))) == 12


class Sink(asyncio.DatagramProtocol):
    """The next hop of every forwarded request: answers 200 to what parses, counts what does not."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received = 0
        self.unparseable = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        try:
            message = parse(data)
        except ParseError:
            self.unparseable += 1
            return
        if isinstance(message, Request) and message.method != "ACK":
            assert self.transport is not None
            self.transport.sendto(bytes(make_response(message, 200, to_tag="sink")), addr)


def processor(sink_port: int) -> Any:
    def handle(mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        msg = from_proto(mreq.message)
        if isinstance(msg, Response):
            msg.headers.remove_first_value("Via")
            return make_message_response(msg)
        assert isinstance(msg, Request)
        if msg.method == "REGISTER":
            return make_message_response(make_response(msg, 200, to_tag="reg"))
        lp = mreq.listening_points[0]
        msg.headers.prepend("Via", f"SIP/2.0/UDP {lp.host}:{lp.port};rport")
        return make_message_response(msg, metadata={NEXT_HOP_KEY: f"sip:{LOOPBACK}:{sink_port}"})

    return handle


@pytest.fixture
async def setup(caplog: pytest.LogCaptureFixture) -> AsyncIterator[tuple[EdgePort, UdpPeer, Sink, list[Any]]]:
    caplog.set_level(logging.WARNING, logger="routr_ray")
    loop = asyncio.get_running_loop()
    sink_transport, sink = await loop.create_datagram_endpoint(Sink, local_addr=(LOOPBACK, 0))
    edge = EdgePort(
        config(), FakeDispatcher(processor(sink_transport.get_extra_info("sockname")[1])),
        options=EdgePortOptions(timers=FAST, cancel_wait=0.2, malformed_log_interval=3600),
    )
    await edge.start()
    refused: list[Any] = []
    for listener in edge.listeners.values():
        guard_listener(listener, refused)
    probe = await UdpPeer.open()
    yield edge, probe, sink, refused
    probe.close()
    await edge.stop()
    sink_transport.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def guard_listener(listener: Any, refused: list[Any]) -> None:
    """Refuse (and record) every send whose destination is not loopback."""

    def destination(target: Flow | tuple[str, int]) -> str:
        return target.remote_host if isinstance(target, Flow) else target[0]

    original_send = listener.send

    async def send(target: Any, data: bytes, **kwargs: Any) -> bool:
        if destination(target) != LOOPBACK:
            refused.append((listener.transport, target, data[:60]))
            return False
        return bool(await original_send(target, data, **kwargs))

    listener.send = send
    if hasattr(listener, "send_now"):
        original_now = listener.send_now

        def send_now(target: Any, data: bytes, source: str | None = None) -> bool:
            if destination(target) != LOOPBACK:
                refused.append((listener.transport, target, data[:60]))
                return False
            return bool(original_now(target, data, source))

        listener.send_now = send_now


async def registers(edge: EdgePort, probe: UdpPeer, n: int) -> None:
    """A fresh REGISTER over UDP gets its 200 (stray replies to the probe, e.g. 100s, are skipped)."""
    probe.send(request("REGISTER", "sip:example.com", probe.port, branch=f"z9hG4bKprobe{n}", call_id=f"probe-{n}"),
               edge.address("udp"))
    while True:
        answer = await probe.recv(timeout=2)
        if isinstance(answer, Response) and answer.call_id == f"probe-{n}":
            assert answer.status == 200
            return


async def test_every_torture_message_over_udp(setup: tuple[EdgePort, UdpPeer, Sink, list[Any]]) -> None:
    edge, probe, sink, refused = setup
    sender = await Deaf.open()  # answers to torture messages are not read (some may not parse)
    fake = edge.dispatcher.client
    assert isinstance(fake, FakeDispatcher)
    passed_invalid = []
    try:
        for n, path in enumerate(MESSAGES):
            before = len(fake.received)
            sender.send(path.read_bytes(), edge.address("udp"))
            await registers(edge, probe, n)  # its dispatcher batch comes after the torture message's
            if path.name in INVALID and len(fake.received) - before > 1:
                passed_invalid.append(path.name)
        assert edge.is_alive()
    finally:
        sender.close()
    assert refused == []
    assert sink.received > 0 and sink.unparseable == 0  # what the edge forwards always parses
    assert passed_invalid == []
    assert len(INVALID) >= 10


async def test_every_torture_message_over_tcp(setup: tuple[EdgePort, UdpPeer, Sink, list[Any]]) -> None:
    edge, probe, sink, refused = setup
    for n, path in enumerate(MESSAGES):
        reader, writer = await asyncio.open_connection(*edge.address("tcp"))
        writer.write(path.read_bytes())
        await writer.drain()
        await registers(edge, probe, n)
        # and the TCP listener still accepts and answers on a fresh connection
        r2, w2 = await asyncio.open_connection(*edge.address("tcp"))
        port = w2.get_extra_info("sockname")[1]
        w2.write(request("REGISTER", "sip:example.com", port, transport="TCP", call_id=f"tcp-{n}"))
        head = await asyncio.wait_for(r2.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"SIP/2.0 200 "), (path.name, head[:80])
        for w in (writer, w2):
            w.close()
        del reader
    assert edge.is_alive()
    assert refused == []
    assert sink.unparseable == 0


class Deaf(UdpPeer):
    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        return None
