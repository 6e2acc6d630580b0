"""RFC 3263 server location (issue 15 item 4) against a DNS responder on loopback (tests/support/dns_server.py),
and through the EdgePort: a trunk named by a domain whose SRV lists two targets fails over from the first (down)
to the second, and the failed one is then held down."""

from __future__ import annotations

import random
import socket
from collections.abc import AsyncIterator

import pytest

from routr_ray.edge.directives import NEXT_HOP_KEY
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.edge.locate import DnsRecords, ServerLocator
from routr_ray.sip import Request
from tests.integration.test_edgeport import FAST, UdpPeer, config, request
from tests.integration.test_edgeport_routing import Router
from tests.support.dns_server import DnsResponder

pytestmark = pytest.mark.timeout(30)
V4 = frozenset({socket.AF_INET})
ALL = frozenset({"udp", "tcp", "tls"})


async def locator_for(zone: dict[tuple[str, str], list[str]], **kwargs: object) -> tuple[ServerLocator, DnsResponder]:
    dns = await DnsResponder.start(zone)
    return ServerLocator(DnsRecords([dns.address], lifetime=1.0), **kwargs), dns  # type: ignore[arg-type]


async def test_naptr_then_srv_then_a() -> None:
    locator, dns = await locator_for({
        ("trunk.test", "NAPTR"): ['10 50 "s" "SIP+D2T" "" _sip._tcp.trunk.test.',
                                  '20 50 "s" "SIP+D2U" "" _sip._udp.trunk.test.'],
        ("_sip._tcp.trunk.test", "SRV"): ["0 1 5070 a.trunk.test."],
        ("a.trunk.test", "A"): ["127.0.0.11"],
    })
    try:
        located = await locator.locate("trunk.test", secure=False, transport=None, supported=ALL, families=V4)
        assert [(x.transport, x.host, x.port) for x in located] == [("tcp", "127.0.0.11", 5070)]
        # NAPTR services we have no listener for are skipped: UDP only -> the D2U record
        located = await locator.locate("trunk.test", secure=False, transport=None, supported=frozenset({"udp"}),
                                       families=V4)
        assert located == []  # its SRV name has no records: nothing, the caller falls back to A/AAAA
    finally:
        dns.close()


async def test_srv_without_naptr_priority_and_ttl_cache() -> None:
    now = [0.0]
    dns = await DnsResponder.start({
        ("_sip._udp.trunk.test", "SRV"): ["20 0 5071 b.trunk.test.", "10 0 5070 a.trunk.test."],
        ("a.trunk.test", "A"): ["127.0.0.11"], ("b.trunk.test", "A"): ["127.0.0.12"],
    }, ttl=60)
    records = DnsRecords([dns.address], lifetime=1.0, clock=lambda: now[0])
    locator = ServerLocator(records)
    try:
        located = await locator.locate("trunk.test", secure=False, transport=None, supported=frozenset({"udp"}),
                                       families=V4)
        assert [(x.host, x.port) for x in located] == [("127.0.0.11", 5070), ("127.0.0.12", 5071)]
        asked = len(dns.queries)
        await locator.locate("trunk.test", secure=False, transport=None, supported=frozenset({"udp"}), families=V4)
        assert len(dns.queries) == asked  # within the TTL: from the cache
        now[0] = 61
        await locator.locate("trunk.test", secure=False, transport=None, supported=frozenset({"udp"}), families=V4)
        assert len(dns.queries) > asked  # the TTL passed: asked again
        # an explicit transport asks only its SRV name
        located = await locator.locate("trunk.test", secure=False, transport="tcp", supported=ALL, families=V4)
        assert located == [] and dns.queries[-1] == ("_sip._tcp.trunk.test", "SRV")
    finally:
        dns.close()


async def test_srv_weights_share_the_load() -> None:
    locator, dns = await locator_for({
        ("_sip._udp.trunk.test", "SRV"): ["10 3 5070 a.trunk.test.", "10 1 5071 b.trunk.test."],
        ("a.trunk.test", "A"): ["127.0.0.11"], ("b.trunk.test", "A"): ["127.0.0.12"],
    }, rng=random.Random(7))
    try:
        firsts = [(await locator.locate("trunk.test", secure=False, transport=None, supported=frozenset({"udp"}),
                                        families=V4))[0].port for _ in range(400)]
        share = firsts.count(5070)
        assert abs(share - 300) < 35  # 3:1 of 400; 4 sigma = 4 * sqrt(400 * 3/4 * 1/4) ~ 35 (and seeded)
    finally:
        dns.close()


@pytest.fixture
async def router() -> Router:
    return Router()


@pytest.fixture
async def edge(router: Router) -> AsyncIterator[EdgePort]:
    port = EdgePort(config(), FakeDispatcher(router), options=EdgePortOptions(timers=FAST, cancel_wait=0.4))
    await port.start()
    yield port
    await port.stop()


async def test_a_trunk_named_by_srv_fails_over_to_the_second_target(edge: EdgePort, router: Router) -> None:
    caller, down, up = await UdpPeer.open(), await UdpPeer.open(), await UdpPeer.open()
    dns = await DnsResponder.start({
        ("_sip._udp.trunk.test", "SRV"): [f"10 0 {down.port} a.trunk.test.", f"20 0 {up.port} b.trunk.test."],
        ("a.trunk.test", "A"): ["127.0.0.1"], ("b.trunk.test", "A"): ["127.0.0.1"],
    })
    edge.hops.locator = ServerLocator(DnsRecords([dns.address], lifetime=1.0))
    try:
        router.routes["+15551234"] = {NEXT_HOP_KEY: "sip:trunk.test"}
        caller.send(request("INVITE", "sip:+15551234@trunk.test", caller.port), edge.address("udp"))
        assert (await caller.recv()).status == 100  # type: ignore[union-attr]
        first = await down.recv()
        assert isinstance(first, Request)
        down.send(make_response(first, 503, to_tag="d"), edge.address("udp"))  # the first target is down
        assert (await down.recv()).method == "ACK"  # type: ignore[union-attr]
        second = await up.recv()
        assert isinstance(second, Request) and second.method == "INVITE"
        assert second.uri == "sip:+15551234@trunk.test"  # §4.3: the Request-URI is unchanged
        assert second.via[0].branch != first.via[0].branch
        up.send(make_response(second, 200, to_tag="u"), edge.address("udp"))
        assert (await caller.recv_final()).status == 200
        assert edge.hold_down.is_down("udp", "127.0.0.1", down.port)
        # the next call skips the held-down target and goes to the second at once
        caller.send(request("INVITE", "sip:+15551234@trunk.test", caller.port, branch="z9hG4bKsecond",
                            call_id="second-call"), edge.address("udp"))
        again = await up.recv()
        assert isinstance(again, Request) and again.method == "INVITE"
        assert edge.metrics.registry.get_sample_value("routr_edge_failovers_total") == 1
    finally:
        dns.close()
        for peer in (caller, down, up):
            peer.close()
