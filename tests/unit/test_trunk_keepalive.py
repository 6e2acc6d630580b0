"""OPTIONS keepalive of trunks and peers and the cluster's server health (issue 15), on fake clocks: the probe's
down/up thresholds, the pinger loop, what it pings, the shared table (versions, long poll, epochs, seconds left),
the EdgePort's hold-down joined to it, and Connect trying down trunk URIs last."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import random
from collections import Counter

from prometheus_client import CollectorRegistry, generate_latest
from test_connect_support import Harness, resources, sip

from routr_ray.actors.status import ClusterStatus, KeepaliveStatus, format_status
from routr_ray.config.resources import Keepalive, Peer, TrunkUri
from routr_ray.edge.hold_down import HoldDown
from routr_ray.edge.shared_hold_down import SharedHoldDown
from routr_ray.edge.trunk_metrics import TrunkMetrics
from routr_ray.processors.connect import FAILOVER_KEY, StaticResources
from routr_ray.processors.connect.router import ordered_trunk_uris
from routr_ray.proto.convert import transport_enum
from routr_ray.proto.gen import location_pb2
from routr_ray.sip import Request, Response
from routr_ray.trunks.keepalive import PingTarget, Probe, ProbeState
from routr_ray.trunks.pinger import KeepalivePinger
from routr_ray.trunks.targets import keepalive_peers, peer_targets, trunk_targets
from routr_ray.util.server_health import HealthFollower, HealthSnapshot, HealthView, ServerHealth

SETTINGS = Keepalive(interval=10, failures_before_down=2, successes_before_up=2, timeout=1)
TARGET = PingTarget("trunk", "trunk-01", "udp", "203.0.113.7", 5060, SETTINGS)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- the probe ------------------------------------------------------------------------------------------------


def test_the_options_ping() -> None:
    probe = Probe(TARGET, now=0)
    first, second = probe.ping(0), probe.ping(10)
    assert first.method == "OPTIONS" and first.uri == "sip:203.0.113.7:5060"
    assert first.headers.get("To") == "<sip:203.0.113.7:5060>" and first.headers.get("Max-Forwards") == "70"
    assert first.headers.get("Via") == "SIP/2.0/UDP 0.0.0.0;rport"  # the EdgePort completes it
    assert first.headers.get("Call-ID") != second.headers.get("Call-ID")
    assert (first.cseq.seq, second.cseq.seq) == (1, 2) and probe.due == 20
    tcp = PingTarget("trunk", "t", "tcp", "2001:db8::1", 5070, SETTINGS)
    assert tcp.uri == "sip:[2001:db8::1]:5070;transport=tcp" and tcp.label == "tcp:[2001:db8::1]:5070"


def test_down_after_n_failures_up_after_m_answers_and_any_answer_counts() -> None:
    probe = Probe(TARGET, now=0)
    ping = probe.ping(0)
    assert not probe.on_result(None, 1) and probe.state is ProbeState.UP  # 1 of 2
    assert not probe.on_result(ping.make_response(404), 2) and probe.failures == 0  # an answer resets the count
    assert not probe.on_result(None, 3)
    assert probe.on_result(None, 4) and probe.state is ProbeState.DOWN and probe.since == 4
    assert not probe.on_result(ping.make_response(503), 5) and probe.state is ProbeState.DOWN  # 1 of 2
    assert not probe.on_result(None, 6) and probe.successes == 0  # a failure resets the answers
    assert not probe.on_result(ping.make_response(200), 7)
    assert probe.on_result(ping.make_response(200), 8) and probe.state is ProbeState.UP
    status = probe.status()
    assert status.pinged and status.last_status == 200 and status.since == 8


# -- the pinger -----------------------------------------------------------------------------------------------


async def test_the_pinger_pings_at_its_interval_and_reports_changes() -> None:
    clock = Clock()
    answering = {"sip:203.0.113.7:5060": False, "sip:203.0.113.8:5060": True}
    sent: list[tuple[str, float]] = []
    changes: list[set[tuple[str, str, int]]] = []

    async def send(request: Request, target: str, timeout: float) -> Response | None:  # noqa: ASYNC109
        sent.append((target, timeout))
        return request.make_response(200) if answering[target] else None

    pinger = KeepalivePinger(send, clock=clock, on_change=lambda: changes.append(pinger.down_servers()))
    other = dataclasses.replace(TARGET, host="203.0.113.8")
    assert pinger.update([TARGET, other])
    await pinger.step()
    assert sorted(sent) == [("sip:203.0.113.7:5060", 1), ("sip:203.0.113.8:5060", 1)]
    await pinger.step()  # nothing due yet
    assert len(sent) == 2
    clock.now += 10
    await pinger.step()
    assert changes == [{("udp", "203.0.113.7", 5060)}]  # the second failure in a row
    answering["sip:203.0.113.7:5060"] = True
    for _ in range(2):
        clock.now += 10
        await pinger.step()
    assert changes[-1] == set() and len(sent) == 8
    # an update with the same targets keeps their state; a changed setting starts the target anew
    assert not pinger.update([TARGET, other])
    answering["sip:203.0.113.7:5060"] = False
    for _ in range(2):
        clock.now += 10
        await pinger.step()
    assert pinger.down_servers() == {("udp", "203.0.113.7", 5060)}
    pinger.update([other])  # a down target removed: reported, no longer skipped
    assert changes[-1] == set()


async def test_a_hung_ping_is_a_failure_and_never_blocks_another_target() -> None:
    clock = Clock()
    hang = asyncio.Event()

    async def send(request: Request, target: str, timeout: float) -> Response | None:  # noqa: ASYNC109
        if target.startswith("sip:203.0.113.7"):
            await hang.wait()
        raise OSError("unreachable")

    pinger = KeepalivePinger(send, clock=clock)
    pinger.update([TARGET, dataclasses.replace(TARGET, host="203.0.113.9")])
    task = asyncio.create_task(pinger.run())
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if any(s.failures for s in pinger.statuses()):
                break
        failed = [s for s in pinger.statuses() if s.failures]
        assert [s.target for s in failed] == ["udp:203.0.113.9:5060"] and "unreachable" in failed[0].last_error
    finally:
        hang.set()
        task.cancel()


def test_what_the_keepalive_pings() -> None:
    res = resources()
    assert trunk_targets(res) == [] and keepalive_peers(res) == []  # off unless asked for
    trunks = tuple(dataclasses.replace(t, outbound=dataclasses.replace(t.outbound, keepalive=SETTINGS))
                   if t.ref == "trunk-01" and t.outbound is not None else t for t in res.trunks)
    res = dataclasses.replace(res, trunks=trunks)
    # every enabled URI, as written (backup.provider.net is disabled)
    assert [t.label for t in trunk_targets(res)] == ["udp:sip.provider.net:5070", "tcp:primary.provider.net:5060"]
    peer = Peer("p", "P", "pbx", "sip:pbx@sip.local", keepalive=SETTINGS)
    routes = [location_pb2.Route(host="10.0.0.5", port="5060", transport=transport_enum("UDP"),
                                 contact_uri="sip:pbx@10.0.0.5:5062"),
              location_pb2.Route(host="198.51.100.9", port="40000", transport=transport_enum("TCP"),
                                 contact_uri="sip:pbx@192.168.1.9:5060;transport=tcp")]
    targets = peer_targets(peer, routes)
    # the Contact, or the source of the REGISTER for a flow (RFC 5626: a TCP binding)
    assert [(t.label, t.contact, t.aor) for t in targets] == [
        ("udp:10.0.0.5:5062", "sip:pbx@10.0.0.5:5062", "sip:pbx@sip.local"),
        ("tcp:198.51.100.9:40000", "sip:pbx@192.168.1.9:5060;transport=tcp", "sip:pbx@sip.local")]


# -- the cluster's table --------------------------------------------------------------------------------------


async def test_server_health_versions_long_poll_and_seconds_left() -> None:
    clock = Clock()
    health = ServerHealth(clock=clock)
    first = await health.newer_than("", 0, 0)  # another epoch: at once
    assert first is not None and first.version == 1 and first.held == ()
    waiter = asyncio.create_task(health.newer_than(health.epoch, 1, 5))
    await asyncio.sleep(0)
    assert await health.mark([("UDP", "[2001:DB8::1]", 5060, 30)]) == 2
    found = await asyncio.wait_for(waiter, 1)
    assert found is not None and found.held == (("udp", "2001:db8::1", 5060, 30.0),)
    assert await health.mark([("udp", "2001:db8::1", 5060, 30)]) == 2  # the same again: no news
    clock.now += 10
    assert health.snapshot().held == (("udp", "2001:db8::1", 5060, 20.0),)  # seconds left, not a time
    assert await health.newer_than(health.epoch, 2, 0.01) is None
    assert await health.set_down([("UDP", "10.0.0.9", 5060)], [("sip:pbx@sip.local", "sip:pbx@10.0.0.9")]) == 3
    assert await health.set_down([("udp", "10.0.0.9", 5060)], [("sip:pbx@sip.local", "sip:pbx@10.0.0.9")]) == 3
    clock.now += 25
    snapshot = health.snapshot()
    assert snapshot.held == () and snapshot.down == (("udp", "10.0.0.9", 5060),)
    assert HealthSnapshot.from_plain(snapshot.plain()) == snapshot


def test_health_view_answers_connect() -> None:
    clock = Clock()
    view = HealthView(clock=clock)
    assert not view.server_down("udp", "10.0.0.9", 5060)
    view.apply(HealthSnapshot("e", 2, held=(("udp", "10.0.0.8", 5060, 5.0),), down=(("tcp", "10.0.0.9", 5061),),
                              contacts=(("sip:pbx@sip.local", "sip:pbx@10.0.0.9"),)))
    assert view.server_down("TCP", "10.0.0.9", 5061) and view.server_down("udp", "10.0.0.8", 5060)
    assert view.down_contacts("sip:pbx@sip.local") == ("sip:pbx@10.0.0.9",) and view.down_contacts("x") == ()
    clock.now += 6
    assert not view.server_down("udp", "10.0.0.8", 5060) and view.server_down("tcp", "10.0.0.9", 5061)
    assert view.held() == [("tcp", "10.0.0.9", 5061, math.inf)]


async def test_the_follower_takes_newer_snapshots_and_survives_a_missing_holder() -> None:
    applied: list[int] = []
    calls = 0
    health = ServerHealth()

    async def fetch(epoch: str, version: int, wait: float) -> HealthSnapshot | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("Failed to look up actor trunk-registrar")
        return await health.newer_than(epoch, version, wait)

    follower = HealthFollower(fetch, lambda s: applied.append(s.version), wait=0.05, retry=0.01)
    follower.start()
    try:
        for _ in range(100):
            await asyncio.sleep(0.01)
            if applied:
                break
        await health.mark([("udp", "10.0.0.1", 5060, 30)])
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(applied) == 2:
                break
        assert applied == [1, 2]
        # a restarted holder: a new epoch whose versions start again
        assert follower.take(HealthSnapshot("new", 1))
        assert not follower.take(HealthSnapshot("new", 1))
    finally:
        await follower.stop()


# -- the EdgePort's hold-down, shared -------------------------------------------------------------------------


async def test_hold_down_marks_go_to_the_cluster_and_the_cluster_comes_back() -> None:
    clock = Clock()
    health = ServerHealth(clock=clock)
    one, two = HoldDown(30, clock=clock), HoldDown(30, clock=clock)
    links = [SharedHoldDown(table, health.newer_than, health.mark, gather=0.0, wait=0.2, retry=0.01)
             for table in (one, two)]
    for link in links:
        link.start()
    try:
        one.mark("udp", "10.0.0.1", 5070)
        for _ in range(200):  # within a second or two (here: at once)
            await asyncio.sleep(0.005)
            if two.is_down("udp", "10.0.0.1", 5070):
                break
        assert two.is_down("UDP", "10.0.0.1", 5070) and not two.is_down("udp", "10.0.0.1", 5071)
        assert two.take_marks() == [] and len(two.down()) == 1  # what came from the cluster is not sent back
        await health.set_down([("udp", "10.0.0.2", 5060)])
        for _ in range(200):
            await asyncio.sleep(0.005)
            if two.is_down("udp", "10.0.0.2", 5060):
                break
        assert two.count() == 2 and one.count() == 2
        clock.now += 31  # the mark ends everywhere; the keepalive's stays until it is up
        assert not two.is_down("udp", "10.0.0.1", 5070) and two.is_down("udp", "10.0.0.2", 5060)
    finally:
        for link in links:
            await link.stop()


async def test_a_failed_publish_keeps_the_local_mark() -> None:
    table = HoldDown(30)

    async def fetch(epoch: str, version: int, wait: float) -> HealthSnapshot | None:
        raise ValueError("no registrar")

    async def publish(marks: list[tuple[str, str, int, float]]) -> None:
        raise ValueError("no registrar")

    link = SharedHoldDown(table, fetch, publish, gather=0.0, retry=0.01)
    table.mark("udp", "10.0.0.1", 5070)
    await link.flush()
    assert table.is_down("udp", "10.0.0.1", 5070) and table.take_marks() == []


# -- Connect --------------------------------------------------------------------------------------------------


def test_down_trunk_uris_come_last_and_keep_their_share_otherwise() -> None:
    trunk = resources().trunks[0]  # primary (tcp, priority 10), sip.provider.net (priority 20)
    rng = random.Random(7)
    down = {"primary.provider.net"}
    order = ordered_trunk_uris(trunk, rng, lambda u: u.host in down)
    assert [u.host for u in order] == ["sip.provider.net", "primary.provider.net"]
    down = {"primary.provider.net", "sip.provider.net"}  # everything down: still tried, in the usual order
    assert [u.host for u in ordered_trunk_uris(trunk, rng, lambda u: u.host in down)] == [
        "primary.provider.net", "sip.provider.net"]
    share = dataclasses.replace(trunk.outbound, uris=(TrunkUri("a", 5060, "udp", weight=3),
                                                      TrunkUri("b", 5060, "udp", weight=1),
                                                      TrunkUri("c", 5060, "udp", weight=4)))
    trunk = dataclasses.replace(trunk, outbound=share)
    picks = Counter(ordered_trunk_uris(trunk, rng, lambda u: u.host == "c")[0].host for _ in range(400))
    assert picks["c"] == 0 and abs(picks["a"] - 300) <= 35  # c's calls go to a and b 3:1


async def test_connect_sends_a_call_to_the_trunk_uri_that_is_up() -> None:
    h = Harness()
    view = HealthView()
    h.processor.router.health = view
    view.apply(HealthSnapshot("e", 2, down=(("tcp", "primary.provider.net", 5060),)))
    invite = sip("INVITE", "sip:+15551234567@sip.local", from_="sip:1002@sip.local", to="sip:+15551234567@sip.local",
                 contact="<sip:caller@10.0.0.5:5060>")
    out, resp = await h.authed(invite, "1002", "1234")
    assert isinstance(out, Request) and out.uri == "sip:+15551234567@sip.provider.net:5070"
    assert resp.metadata[FAILOVER_KEY] == "sip:+15551234567@primary.provider.net:5060;transport=tcp"


async def test_connect_asks_location_to_avoid_a_peers_bindings_that_are_down() -> None:
    h = Harness()
    res = resources()
    peer = dataclasses.replace(res.peers[0], load_balancing=dataclasses.replace(res.peers[0].load_balancing,
                                                                                with_session_affinity=False))
    h.processor.source = StaticResources(dataclasses.replace(res, peers=(peer, *res.peers[1:])))
    for host in ("10.0.0.21", "10.0.0.22"):
        await h.service.add_route("sip:conference@sip.local", location_pb2.Route(
            host=host, port="5060", expires=600, contact_uri=f"sip:asterisk@{host}:5060"))
    view = HealthView()
    h.processor.router.health = view
    view.apply(HealthSnapshot("e", 2, down=(("udp", "10.0.0.21", 5060),),
                              contacts=(("sip:conference@sip.local", "sip:asterisk@10.0.0.21:5060"),)))
    hosts = set()
    for _ in range(4):  # the number-02 DID goes to the conference peer
        invite = sip("INVITE", "sip:+17066041488@sip.local", from_="sip:+15550001111@trunk01.provider.net",
                     to="sip:+17066041488@sip.local", via="SIP/2.0/UDP 198.51.100.7:5060",
                     contact="<sip:gw@198.51.100.7>")
        out, _ = await h.send(invite, ("198.51.100.7", 5060, "UDP"))
        assert isinstance(out, Request), out
        hosts.add(out.uri)
    assert hosts == {"sip:asterisk@10.0.0.22:5060"}


# -- status and metrics ---------------------------------------------------------------------------------------


def test_keepalive_gauges_and_status_lines() -> None:
    registry = CollectorRegistry()
    metrics = TrunkMetrics(registry)
    metrics.update_keepalive([
        {"kind": "trunk", "ref": "trunk-01", "target": "udp:10.0.0.1:5060", "state": "up"},
        {"kind": "trunk", "ref": "trunk-01", "target": "udp:10.0.0.2:5060", "state": "down"},
        {"kind": "peer", "ref": "asterisk", "target": "udp:10.0.0.5:5062", "state": "down"},
    ])
    text = generate_latest(registry).decode()
    assert 'routr_trunk_target_up{target="udp:10.0.0.1:5060",trunk="trunk-01"} 1.0' in text
    assert 'routr_trunk_target_up{target="udp:10.0.0.2:5060",trunk="trunk-01"} 0.0' in text
    assert 'routr_peer_keepalive_targets{peer="asterisk",state="down"} 1.0' in text
    assert 'routr_peer_keepalive_targets{peer="asterisk",state="up"} 0.0' in text
    metrics.update_keepalive([{"kind": "trunk", "ref": "trunk-01", "target": "udp:10.0.0.1:5060", "state": "up"}])
    text = generate_latest(registry).decode()
    assert "10.0.0.2" not in text and "asterisk" not in text  # gone with their targets
    status = ClusterStatus((), (), None, {}, (), keepalives=(
        KeepaliveStatus("trunk", "trunk-01", "udp:10.0.0.1:5060", "up", True, 0, 200),
        KeepaliveStatus("trunk", "trunk-01", "udp:10.0.0.2:5060", "down", True, 3, 0, "no answer", 42),
        KeepaliveStatus("peer", "asterisk", "udp:10.0.0.5:5062", "up"),
    ))
    lines = format_status(status)
    at = lines.index("Keepalive (OPTIONS pings):")
    assert lines[at + 1].startswith("  ok  trunk trunk-01") and "200 to the last ping" in lines[at + 1]
    assert lines[at + 2].startswith("  BAD") and "down for 42 s (3 pings failed: no answer)" in lines[at + 2]
    assert "up (not pinged yet)" in lines[at + 3]
