"""OPTIONS keepalive of a trunk and hold-downs shared across EdgePorts (issue 15), over real sockets on loopback.

* The real Connect on config/ as shipped behind the EdgePort (tests/support/phones.py), trunk-01 given two URIs
  (priorities 10 and 20) and a keepalive; the pinger sends its OPTIONS through that EdgePort (as the registrar
  actor does), the cluster's table (``util/server_health.py``) in process. While the first provider answers, a
  call from agent 1001 goes to it; once it is gone (its port closed: the ICMP port unreachable fails the ping at
  once) it is marked down and the next call goes to the second URI first; when it answers again, calls go back.
* Two EdgePorts joined to one table: a server that failed a branch on the first is skipped by the second.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from routr_ray.config import Resources, load_config_dir
from routr_ray.config.resources import Keepalive, TrunkUri
from routr_ray.edge.directives import FAILOVER_KEY, NEXT_HOP_KEY
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions, make_response
from routr_ray.edge.originate import Originator
from routr_ray.edge.shared_hold_down import SharedHoldDown
from routr_ray.sip import Request, Response
from routr_ray.sip.transaction_messages import build_ack
from routr_ray.trunks.keepalive import ProbeState
from routr_ray.trunks.pinger import KeepalivePinger
from routr_ray.trunks.targets import trunk_targets
from routr_ray.util.server_health import HealthFollower, HealthView, ServerHealth
from tests.integration.test_edgeport import FAST, UdpPeer, config, request
from tests.integration.test_edgeport_routing import Router
from tests.support.phones import SHIPPED, Phone, shipped_edge

pytestmark = [pytest.mark.timeout(40), pytest.mark.netns,
              pytest.mark.skipif(os.environ.get("ROUTR_RAY_IN_NETNS") != "1", reason="inside scripts/in-netns")]

KEEPALIVE = Keepalive(interval=0.2, failures_before_down=2, successes_before_up=1, timeout=1.0)


class Provider:
    """A provider at one UDP port: answers OPTIONS 200 (counted), declines calls with 603, queues the INVITEs;
    ``mute``: receives (and queues) but answers nothing."""

    def __init__(self, phone: Phone) -> None:
        self.phone = phone
        self.mute = False
        self.options = 0
        self.invites: asyncio.Queue[Request] = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._serve())

    @classmethod
    async def open(cls, port: int = 0) -> Provider:
        phone = Phone()
        await asyncio.get_running_loop().create_datagram_endpoint(lambda: phone, local_addr=("127.0.0.1", port))
        phone.host = "127.0.0.1"
        return cls(phone)

    async def _serve(self) -> None:
        while True:
            msg, source = await self.phone.recv(3600)
            if isinstance(msg, Request) and msg.method == "INVITE" and self.mute:
                self.invites.put_nowait(msg)
            elif self.mute:
                continue
            elif isinstance(msg, Request) and msg.method == "OPTIONS":
                self.options += 1
                self.phone.send(msg.make_response(200), source)
            elif isinstance(msg, Request) and msg.method == "INVITE":
                self.invites.put_nowait(msg)
                self.phone.send(msg.make_response(603, to_tag="declined"), source)

    def close(self) -> None:
        self._task.cancel()
        self.phone.close()


def two_uris(first: int, second: int):  # type: ignore[no-untyped-def]
    def edit(resources: Resources) -> Resources:
        trunks = []
        for trunk in resources.trunks:
            if trunk.ref == "trunk-01" and trunk.outbound is not None:
                uris = (TrunkUri("127.0.0.1", first, "udp", priority=10), TrunkUri("127.0.0.1", second, "udp", priority=20))
                trunk = dataclasses.replace(trunk, outbound=dataclasses.replace(trunk.outbound, uris=uris,
                                                                                keepalive=KEEPALIVE))
            trunks.append(trunk)
        return dataclasses.replace(resources, trunks=tuple(trunks))
    return edit


@asynccontextmanager
async def keepalive_on(edge: EdgePort, resources_edit, view: HealthView  # type: ignore[no-untyped-def]
                       ) -> AsyncIterator[KeepalivePinger]:
    """The registrar actor's wiring in process: pings through the EdgePort, results into the table Connect
    follows."""
    health = ServerHealth()
    originator = Originator(edge)
    loop = asyncio.get_running_loop()

    async def send(req: Request, target: str, timeout: float) -> Response | None:  # noqa: ASYNC109
        return await originator.send(req, target, timeout)

    pinger = KeepalivePinger(send, on_change=lambda: loop.create_task(
        health.set_down(pinger.down_servers(), pinger.down_contacts())))
    pinger.update(trunk_targets(resources_edit(load_config_dir(SHIPPED).resources)))
    follower = HealthFollower(health.newer_than, view.apply, wait=1.0, retry=0.05)
    follower.start()
    task = loop.create_task(pinger.run())
    try:
        yield pinger
    finally:
        task.cancel()
        await follower.stop()


async def call_out(edge: EdgePort, caller: Phone, call_id: str) -> Response:
    """1001 dials a PSTN number (egress policy -> number-01 -> trunk-01) with digest; returns its final answer."""
    server = ("127.0.0.1", edge.address("udp")[1])
    invite = caller.request("INVITE", "sip:17065550100@sip.local", "1001", "sip:17065550100@sip.local",
                            call_id=call_id)
    caller.send(invite, server)
    challenge, _ = await caller.final()
    assert challenge.status == 407
    caller.send(build_ack(invite, challenge), server)
    authorized = caller.answer_challenge(invite, challenge, "1001")
    caller.send(authorized, server)
    final, _ = await caller.final()
    caller.send(build_ack(authorized, final), server)
    return final


async def until(condition, seconds: float = 5.0) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, "not within the time"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def state_of(pinger: KeepalivePinger, port: int) -> ProbeState:
    (probe,) = [p for p in pinger.probes.values() if p.target.port == port]
    return probe.state


async def test_a_trunk_uri_that_stops_answering_options_is_skipped_until_it_answers_again() -> None:
    first, second = await Provider.open(), await Provider.open()
    first_port, second_port = first.phone.port, second.phone.port
    view = HealthView()
    edit = two_uris(first_port, second_port)
    caller = await Phone.open("127.0.0.1")
    try:
        async with shipped_edge(edit=edit, health=view) as edge, keepalive_on(edge, edit, view) as pinger:
            await until(lambda: first.options >= 1 and second.options >= 1)
            assert (await call_out(edge, caller, "ka-1")).status == 603
            assert (await asyncio.wait_for(first.invites.get(), 5)).uri == f"sip:17065550100@127.0.0.1:{first_port}"

            first.mute = True  # stops answering: its pings time out (1 s each), two in a row mark it down
            await until(lambda: state_of(pinger, first_port) is ProbeState.DOWN)
            await until(lambda: view.server_down("udp", "127.0.0.1", first_port))
            assert (await call_out(edge, caller, "ka-2")).status == 603
            assert (await asyncio.wait_for(second.invites.get(), 5)).uri == f"sip:17065550100@127.0.0.1:{second_port}"
            assert first.invites.empty()  # not tried at all: no Timer B to wait for before the next URI
            (status,) = [s for s in pinger.statuses() if s.target.endswith(f":{first_port}")]
            assert status.failures >= 2 and status.state is ProbeState.DOWN

            first.mute = False  # back: one answer marks it up
            await until(lambda: state_of(pinger, first_port) is ProbeState.UP)
            await until(lambda: not view.server_down("udp", "127.0.0.1", first_port))
            assert (await call_out(edge, caller, "ka-3")).status == 603
            assert (await asyncio.wait_for(first.invites.get(), 5)).uri == f"sip:17065550100@127.0.0.1:{first_port}"
            assert second.invites.empty()

            first.close()  # gone: its port answers ICMP port unreachable, which fails a ping at once
            took = await until(lambda: state_of(pinger, first_port) is ProbeState.DOWN)
            assert took < 1.5  # two pings 0.2 s apart, not two 1 s timeouts
    finally:
        first.close()
        second.close()
        caller.close()


async def test_a_server_held_down_by_one_edgeport_is_skipped_by_another() -> None:
    health = ServerHealth()
    router = Router()
    edges = [EdgePort(config(), FakeDispatcher(router), options=EdgePortOptions(timers=FAST, cancel_wait=0.4))
             for _ in range(2)]
    links = [SharedHoldDown(edge.hold_down, health.newer_than, health.mark) for edge in edges]
    down, up, caller = await UdpPeer.open(), await UdpPeer.open(), await UdpPeer.open()
    try:
        for edge, link in zip(edges, links, strict=True):
            await edge.start()
            link.start()
        router.routes["+15551234"] = {NEXT_HOP_KEY: f"sip:127.0.0.1:{down.port}",
                                      FAILOVER_KEY: f"sip:+15551234@127.0.0.1:{up.port}"}
        caller.send(request("INVITE", f"sip:+15551234@127.0.0.1:{down.port}", caller.port), edges[0].address("udp"))
        invite = await down.recv()
        assert isinstance(invite, Request)
        down.send(make_response(invite, 503, to_tag="d"), edges[0].address("udp"))
        assert isinstance(ack := await down.recv(), Request) and ack.method == "ACK"
        retried = await up.recv()
        assert isinstance(retried, Request) and retried.method == "INVITE"
        up.send(make_response(retried, 486, to_tag="u"), edges[0].address("udp"))
        assert isinstance(ack := await up.recv(), Request) and ack.method == "ACK"
        # the second EdgePort learns of it within a second or two (here: the mark's flush and one long poll)
        took = await until(lambda: edges[1].hold_down.is_down("udp", "127.0.0.1", down.port), 2.0)
        assert took < 2.0
        caller.send(request("INVITE", f"sip:+15551234@127.0.0.1:{down.port}", caller.port, branch="z9hG4bKsecond",
                            call_id="second-call"), edges[1].address("udp"))
        first_try = await up.recv()  # the held-down server is skipped: the next URI first
        assert isinstance(first_try, Request) and first_try.method == "INVITE"
        assert first_try.headers.get("Call-ID") == "second-call"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(down.recv(), 0.3)
    finally:
        for link in links:
            await link.stop()
        for edge in edges:
            await edge.stop()
        for peer in (down, up, caller):
            peer.close()


async def test_with_every_uri_down_a_call_still_tries_them_in_order() -> None:
    """Down means tried last, never dropped: with every trunk URI down (a provider that ignores OPTIONS), the first
    still gets the call, and the second after its 503."""
    router = Router()
    edge = EdgePort(config(), FakeDispatcher(router), options=EdgePortOptions(timers=FAST, cancel_wait=0.4))
    first, second, caller = await UdpPeer.open(), await UdpPeer.open(), await UdpPeer.open()
    try:
        await edge.start()
        edge.hold_down.apply_shared([], [("udp", "127.0.0.1", first.port), ("udp", "127.0.0.1", second.port)])
        router.routes["+15551234"] = {NEXT_HOP_KEY: f"sip:127.0.0.1:{first.port}",
                                      FAILOVER_KEY: f"sip:+15551234@127.0.0.1:{second.port}"}
        caller.send(request("INVITE", f"sip:+15551234@127.0.0.1:{first.port}", caller.port), edge.address("udp"))
        invite = await first.recv()
        assert isinstance(invite, Request) and invite.method == "INVITE"
        first.send(make_response(invite, 503, to_tag="d"), edge.address("udp"))
        assert isinstance(ack := await first.recv(), Request) and ack.method == "ACK"
        retried = await second.recv()
        assert isinstance(retried, Request) and retried.method == "INVITE"
        # one of them up again: a call skips the one still down and goes there first
        edge.hold_down.apply_shared([], [("udp", "127.0.0.1", first.port)])
        caller.send(request("INVITE", f"sip:+15551234@127.0.0.1:{first.port}", caller.port, branch="z9hG4bKtwo",
                            call_id="two"), edge.address("udp"))
        while True:  # the first call's retransmissions and its ACK aside
            message = await second.recv()
            if isinstance(message, Request) and message.headers.get("Call-ID") == "two":
                break
        with pytest.raises(TimeoutError):
            while True:
                message = await asyncio.wait_for(first.recv(), 0.3)
                assert not (isinstance(message, Request) and message.headers.get("Call-ID") == "two")
    finally:
        await edge.stop()
        for peer in (first, second, caller):
            peer.close()
