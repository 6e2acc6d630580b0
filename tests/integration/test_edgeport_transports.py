"""The whole EdgePort over TLS and WSS (certificate made in the test, loaded through the config's
securityContext), requests forwarded to a second local TCP and WS peer (Via, Record-Route, received/rport), and
/healthz, /readyz, /metrics served by the EdgePort after traffic."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from routr_ray.config.edgeport import HealthConfig, SecurityContext, Transport, TransportProtocol
from routr_ray.edge import tlsutil
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.sip import Request, Response, StreamFramer, parse
from tests.integration.test_edgeport import FAST, UdpPeer, config, fake_processor, request

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    cert_pem, key_pem = tlsutil.make_self_signed_pem(["localhost", "127.0.0.1"])
    folder = tmp_path_factory.mktemp("edge-certs")
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(key_pem)
    return folder / "cert.pem", folder / "key.pem"


@pytest.fixture
async def fake() -> FakeDispatcher:
    return FakeDispatcher(fake_processor())


@pytest.fixture
async def edge(pem: tuple[Path, Path], fake: FakeDispatcher) -> AsyncIterator[EdgePort]:
    cfg = config(
        transports=(
            Transport(TransportProtocol.UDP, 0, "127.0.0.1"),
            Transport(TransportProtocol.TCP, 0, "127.0.0.1"),
            Transport(TransportProtocol.TLS, 0, "127.0.0.1"),
            Transport(TransportProtocol.WS, 0, "127.0.0.1"),
            Transport(TransportProtocol.WSS, 0, "127.0.0.1"),
        ),
        security_context=SecurityContext(certificate=str(pem[0]), private_key=str(pem[1])),
        health=HealthConfig(enabled=True, port=0, bind_addr="127.0.0.1"),
    )
    port = EdgePort(cfg, fake, options=EdgePortOptions(timers=FAST))
    await port.start()
    yield port
    await port.stop()


def trusting(pem: tuple[Path, Path]) -> ssl.SSLContext:
    return tlsutil.client_context(cafile=str(pem[0]))


class StreamUa:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()
        self.pending: list[bytes] = []
        self.port = int(writer.get_extra_info("sockname")[1])

    async def recv(self, timeout: float = 2.0) -> Request | Response:  # noqa: ASYNC109
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            assert data, "connection closed"
            self.pending.extend(u for u in self.framer.feed(data) if isinstance(u, bytes))
        return parse(self.pending.pop(0))


async def test_register_over_tls_is_answered_on_the_same_connection(
    edge: EdgePort, pem: tuple[Path, Path], fake: FakeDispatcher
) -> None:
    host, port = edge.address("tls")
    ua = StreamUa(*await asyncio.open_connection(host, port, ssl=trusting(pem), server_hostname="localhost"))
    ua.writer.write(request("REGISTER", "sips:example.com", ua.port, transport="TLS"))
    answer = await ua.recv()
    assert isinstance(answer, Response) and answer.status == 200
    assert fake.received[-1].sender.transport == 2  # TLS
    ua.writer.close()


async def test_register_over_wss_is_answered_on_the_same_connection(
    edge: EdgePort, pem: tuple[Path, Path], fake: FakeDispatcher
) -> None:
    host, port = edge.address("wss")
    async with connect(f"wss://localhost:{port}", subprotocols=["sip"], ssl=trusting(pem)) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "sip"
        data = request("REGISTER", "sip:example.com", 0, transport="WSS", host="wss1.invalid")
        await ws.send(data.replace(b"wss1.invalid:0", b"wss1.invalid").decode())
        answer = parse(str(await asyncio.wait_for(ws.recv(), 2)).encode())
    assert isinstance(answer, Response) and answer.status == 200
    assert answer.top_via is not None and answer.top_via.params["received"] == "127.0.0.1"
    assert fake.received[-1].sender.transport == 5  # WSS


async def test_request_from_tls_forwarded_to_a_second_local_tcp_peer(
    edge: EdgePort, pem: tuple[Path, Path]
) -> None:
    inbox: asyncio.Queue[tuple[Request | Response, asyncio.StreamWriter]] = asyncio.Queue()

    async def callee(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        framer = StreamFramer()
        while data := await reader.read(65536):
            for unit in framer.feed(data):
                if isinstance(unit, bytes):
                    inbox.put_nowait((parse(unit), writer))

    server = await asyncio.start_server(callee, "127.0.0.1", 0)
    callee_port = server.sockets[0].getsockname()[1]
    host, port = edge.address("tls")
    caller = StreamUa(*await asyncio.open_connection(host, port, ssl=trusting(pem), server_hostname="localhost"))
    try:
        caller.writer.write(request("MESSAGE", f"sip:bob@127.0.0.1:{callee_port};transport=tcp", 5061,
                                    transport="TLS", host="caller.example.com"))
        forwarded, writer = await asyncio.wait_for(inbox.get(), 3)
        assert isinstance(forwarded, Request) and forwarded.method == "MESSAGE"
        ours, theirs = forwarded.via[0], forwarded.via[1]
        assert ours.transport == "TCP" and ours.branch is not None and ours.branch.startswith("z9hG4bK")
        # the caller's Via: sent-by (caller.example.com:5061) differs from the source -> received + rport value
        assert theirs.params["received"] == "127.0.0.1" and theirs.params["rport"] == str(caller.port)
        assert len(forwarded.record_routes) == 1  # the processor's; the EdgePort adds none
        assert forwarded.max_forwards == 69
        writer.write(bytes(make_response(forwarded, 200, to_tag="b1")))
        answer = await caller.recv()  # back over the caller's TLS connection
        assert isinstance(answer, Response) and answer.status == 200
        assert [v.branch for v in answer.via] == ["z9hG4bKclient1"]
    finally:
        caller.writer.close()
        server.close()


async def test_request_forwarded_to_a_second_local_ws_peer(edge: EdgePort) -> None:
    caller = await UdpPeer.open()
    host, port = edge.address("ws")
    try:
        async with connect(f"ws://{host}:{port}", subprotocols=["sip"]) as ws:  # type: ignore[list-item]
            data = request("REGISTER", "sip:example.com", 0, transport="WS", host="peerws.invalid", call_id="r")
            await ws.send(data.replace(b"peerws.invalid:0", b"peerws.invalid").decode())
            assert parse(str(await asyncio.wait_for(ws.recv(), 2)).encode()).status == 200  # type: ignore[union-attr]
            # the WS peer's Contact host is .invalid: the EdgePort finds its connection (RFC 7118 §5)
            caller.send(request("MESSAGE", "sip:bob@peerws.invalid;transport=ws", caller.port), edge.address("udp"))
            forwarded = parse(str(await asyncio.wait_for(ws.recv(), 2)).encode())
            assert isinstance(forwarded, Request) and forwarded.method == "MESSAGE"
            assert forwarded.via[0].transport == "WS" and forwarded.via[0].branch is not None
            assert forwarded.via[1].params["received"] == "127.0.0.1"
            assert forwarded.via[1].params["rport"] == str(caller.port)
            assert len(forwarded.record_routes) == 1
            await ws.send(bytes(make_response(forwarded, 200, to_tag="w1")).decode())
            answer = await caller.recv()
            assert isinstance(answer, Response) and answer.status == 200
    finally:
        caller.close()


async def http_get(address: tuple[str, int], path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: edge\r\nConnection: close\r\n\r\n".encode())
    raw = await asyncio.wait_for(reader.read(), 2)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def counter(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            found = ",".join(sorted(line[len(name) + 1 : line.index("}")].split(",")))
            if found == want:
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_health_readiness_and_metrics_through_the_edgeport(edge: EdgePort, fake: FakeDispatcher) -> None:
    assert edge.health is not None
    address = edge.health.local_address
    assert await http_get(address, "/healthz") == (200, "ok\n")
    assert (await http_get(address, "/readyz"))[0] == 200
    _, before = await http_get(address, "/metrics")
    client = await UdpPeer.open()
    try:
        for n in range(3):
            client.send(request("REGISTER", "sip:example.com", client.port, branch=f"z9hG4bKm{n}"), edge.address("udp"))
            assert (await client.recv()).status == 200  # type: ignore[union-attr]
    finally:
        client.close()
    status, after = await http_get(address, "/metrics")
    assert status == 200
    labels_in = {"method": "REGISTER", "direction": "in", "transport": "udp", "status_class": "request"}
    labels_out = {"method": "REGISTER", "direction": "out", "transport": "udp", "status_class": "2xx"}
    assert counter(after, "routr_sip_messages_total", **labels_in) == counter(before, "routr_sip_messages_total",
                                                                             **labels_in) + 3
    assert counter(after, "routr_sip_messages_total", **labels_out) >= 3
    assert "routr_edge_dispatcher_latency_seconds_count" in after
    assert 'routr_edge_active_transactions{side="server"}' in after
    fake.failing = True  # readiness follows the dispatcher
    assert (await http_get(address, "/readyz"))[0] == 503
    assert (await http_get(address, "/healthz"))[0] == 200  # liveness does not
