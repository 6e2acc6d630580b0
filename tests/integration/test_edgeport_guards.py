"""EdgePort guards on real sockets: a flood from 127.0.0.2 is banned while 127.0.0.1 still registers, with a
bounded log; banned networks; the method filter."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
from collections.abc import Iterable

import pytest
from test_edgeport import FAST, UdpPeer, fake_processor, request

from routr_ray.config.edgeport import (
    EdgePortConfig,
    HealthConfig,
    RateLimit,
    SourceFilter,
    Transport,
    TransportProtocol,
    UnknownMethodAction,
)
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions
from routr_ray.sip import Response

pytestmark = pytest.mark.timeout(30)


def _config(**changes: object) -> EdgePortConfig:
    base: dict[str, object] = dict(
        transports=(Transport(TransportProtocol.UDP, 0, "127.0.0.1"),),
        rate_limit=RateLimit(requests_per_second=100, burst=200, ban_seconds=60,
                             trusted=(ipaddress.ip_network("127.0.0.1/32"),)),
        health=HealthConfig(enabled=False),
    )
    base.update(changes)
    return EdgePortConfig(**base)  # type: ignore[arg-type]


async def flood(sock: socket.socket, target: tuple[str, int], datagrams: Iterable[bytes]) -> float:
    """Send as fast as the socket takes them (a datagram the kernel refuses is dropped, as in a real flood),
    yielding to the loop now and then; returns the seconds it took."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i, data in enumerate(datagrams):
        try:
            sock.sendto(data, target)
        except BlockingIOError:
            await asyncio.sleep(0)
        if i % 50 == 0:
            await asyncio.sleep(0.001)
    return loop.time() - started


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def test_flood_from_127_0_0_2_is_banned_while_127_0_0_1_registers(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    fake = FakeDispatcher(fake_processor())
    edge = EdgePort(_config(), fake, options=EdgePortOptions(timers=FAST))
    await edge.start()
    client = await UdpPeer.open("127.0.0.1")
    flooder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flooder.bind(("127.0.0.2", 0))
    flooder.setblocking(False)
    try:
        fport = flooder.getsockname()[1]
        target = edge.address("udp")
        lines_before = len(caplog.records)
        rss_before = rss_bytes()
        flood_time = await flood(flooder, target, (
            request("INVITE", "sip:bob@127.0.0.1:9", fport, host="127.0.0.2", branch=f"z9hG4bKf{i}",
                    call_id=f"flood-{i}")
            for i in range(5000)
        ))
        await asyncio.sleep(0.3)
        client.send(request("REGISTER", "sip:example.com", client.port, call_id="legit"), target)
        answer = await client.recv_final()
        assert answer.status == 200
        seen = edge.metrics.registry.get_sample_value(
            "routr_sip_messages_total", {"method": "INVITE", "direction": "in", "transport": "udp",
                                         "status_class": "request"})
        assert edge.rate.is_banned("127.0.0.2"), seen
        flood_seen = sum(1 for m in fake.received if m.sender.host == "127.0.0.2")
        # the burst (200) and what refilled before the ban (100/s; on a slow machine the flood takes longer)
        assert flood_seen <= 200 + 100 * (flood_time + 0.3) + 10, (flood_seen, flood_time)
        rejected = edge.metrics.registry.get_sample_value(
            "routr_sip_rejected_messages_total", {"reason": "rate_limited"}
        )
        assert rejected is not None and rejected > 1000
        # RSS stays bounded: banned datagrams are dropped before parsing, transactions are capped
        assert rss_bytes() - rss_before < 64 * 1024 * 1024
        edge_lines = [r for r in caplog.records[lines_before:] if r.name.startswith("routr_ray.edge")
                      and r.levelno >= logging.INFO]
        assert len(edge_lines) <= 10
    finally:
        flooder.close()
        client.close()
        await edge.stop()


def stray_2xx(edge_host: str, edge_port: int, i: int) -> bytes:
    """A 2xx to an INVITE whose transaction does not exist, with our Via on top: relayed end to end."""
    return (
        f"SIP/2.0 200 OK\r\n"
        f"Via: SIP/2.0/UDP {edge_host}:{edge_port};branch=z9hG4bKstray{i}\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKup{i}\r\n"
        f"From: <sip:alice@example.com>;tag=a{i}\r\nTo: <sip:bob@example.com>;tag=b{i}\r\n"
        f"Call-ID: stray-{i}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ).encode()


async def test_a_flood_of_stray_2xx_is_rate_limited_like_requests() -> None:
    """Every 2xx to INVITE without a transaction costs a dispatcher call and is relayed where its Vias say: a
    source sending thousands is limited and banned as a request flood would be."""
    fake = FakeDispatcher(fake_processor())
    edge = EdgePort(_config(), fake, options=EdgePortOptions(timers=FAST))
    await edge.start()
    flooder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flooder.bind(("127.0.0.2", 0))
    flooder.setblocking(False)
    try:
        host, port = edge.address("udp")
        elapsed = await flood(flooder, (host, port), (stray_2xx(host, port, i) for i in range(2000)))
        await asyncio.sleep(0.3)
        relayed = len(fake.received)
        assert 0 < relayed <= 200 + 100 * (elapsed + 0.3) + 10, (relayed, elapsed)
        assert edge.rate.is_banned("127.0.0.2")
        assert edge.metrics.reject_counts.get("rate_limited", 0) > 0  # how many depends on what the kernel dropped
    finally:
        flooder.close()
        await edge.stop()


async def test_malformed_messages_never_ban_and_are_logged_as_a_summary(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    fake = FakeDispatcher(fake_processor())
    edge = EdgePort(_config(rate_limit=RateLimit(requests_per_second=1, burst=5, ban_seconds=60)), fake,
                    options=EdgePortOptions(timers=FAST))
    await edge.start()
    client = await UdpPeer.open("127.0.0.1")
    try:
        bad = request("REGISTER", "sip:example.com", client.port).replace(b"Max-Forwards: 70", b"Max-Forwards: x")
        for _ in range(100):
            client.send(bad, edge.address("udp"))
            assert (await client.recv()).status == 400  # type: ignore[union-attr]
        client.send(request("REGISTER", "sip:example.com", client.port), edge.address("udp"))
        assert (await client.recv()).status == 200  # type: ignore[union-attr]
        assert not edge.rate.is_banned("127.0.0.1")
        summaries = [r for r in caplog.records if "malformed SIP messages" in r.getMessage()]
        assert 1 <= len(summaries) <= 2
    finally:
        client.close()
        await edge.stop()


async def test_denied_network_gets_no_answer_and_allow_overrides() -> None:
    acl = SourceFilter(deny=(ipaddress.ip_network("127.0.0.0/8"),), allow=(ipaddress.ip_network("127.0.0.1/32"),))
    fake = FakeDispatcher(fake_processor())
    edge = EdgePort(_config(access_control_list=acl), fake, options=EdgePortOptions(timers=FAST))
    await edge.start()
    allowed = await UdpPeer.open("127.0.0.1")
    denied = await UdpPeer.open("127.0.0.3")
    try:
        denied.send(request("REGISTER", "sip:example.com", denied.port, host="127.0.0.3"), edge.address("udp"))
        allowed.send(request("REGISTER", "sip:example.com", allowed.port), edge.address("udp"))
        assert (await allowed.recv()).status == 200  # type: ignore[union-attr]
        with pytest.raises(TimeoutError):
            await denied.recv(timeout=0.2)
        assert [m.sender.host for m in fake.received] == ["127.0.0.1"]
    finally:
        allowed.close()
        denied.close()
        await edge.stop()


@pytest.mark.parametrize("action", [UnknownMethodAction.RESPOND, UnknownMethodAction.DISCARD])
async def test_methods_not_configured_are_refused(action: UnknownMethodAction) -> None:
    fake = FakeDispatcher(fake_processor())
    edge = EdgePort(_config(methods=("REGISTER", "INVITE"), unknown_method_action=action), fake,
                    options=EdgePortOptions(timers=FAST))
    await edge.start()
    client = await UdpPeer.open()
    try:
        client.send(request("MESSAGE", "sip:bob@127.0.0.1:9", client.port), edge.address("udp"))
        if action is UnknownMethodAction.RESPOND:
            answer = await client.recv()
            assert isinstance(answer, Response) and answer.status == 405
            assert answer.headers.get("Allow") == "REGISTER, INVITE"
        else:
            with pytest.raises(TimeoutError):
                await client.recv(timeout=0.2)
        assert fake.received == []
    finally:
        client.close()
        await edge.stop()


