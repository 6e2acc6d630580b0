"""Calls across EdgePorts (issue 17, docs/distributed.md) on the wire: a party of an answered cross-EdgePort call
cannot use the EdgePort entries of its route set (`rre`) to reach anything the dialog did not set up, and a
stray response naming another EdgePort's branch is not handed to it. Two in-process EdgePorts with the real
Connect (tests/support/cross_edge.py)."""

from __future__ import annotations

import asyncio
import os
import re

import pytest

from routr_ray.edge.peers import owned_branch
from routr_ray.sip import Response
from routr_ray.util.edge_tag import edge_tag
from tests.support.cross_edge import StreamPhone, callee_at, ring_and_answer, two_edges
from tests.support.phones import Phone

pytestmark = [pytest.mark.timeout(30), pytest.mark.netns,
              pytest.mark.skipif(os.environ.get("ROUTR_RAY_IN_NETNS") != "1", reason="inside scripts/in-netns")]


async def quiet(phone: StreamPhone, seconds: float = 0.4) -> None:
    try:
        msg, _ = await phone.recv(seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message: {msg!r}")


async def test_an_edgeport_entry_the_dialog_did_not_set_up_is_403() -> None:
    async with two_edges() as cluster:
        callee = await callee_at(cluster, "TCP")
        caller = await Phone.open("127.0.0.1")
        try:
            caller_side, _, _ = await ring_and_answer(cluster, caller, callee, "TCP")
            forged = [re.sub(r"rre=[0-9a-f]{8}", f"rre={edge_tag('edgeport-03')}", r) if cluster.two.tag in r else r
                      for r in caller_side.routes]
            assert forged != caller_side.routes
            caller_side.routes = forged
            caller.send(caller_side.request("BYE"), cluster.udp(cluster.one))
            final, _ = await caller.final()
            assert final.status == 403
            await quiet(callee)
        finally:
            caller.close()
            await callee.close()


async def test_the_other_edgeports_entry_cannot_steer_a_request_to_another_connection_it_holds() -> None:
    """1001 calls 1002 (TCP at edgeport-02), then appends a Route naming another client's connection at
    edgeport-02 (the victim): 403, and not a byte reaches the victim."""
    async with two_edges() as cluster:
        victim = await StreamPhone.open("TCP", cluster.server(cluster.two, "tcp"))
        assert (await victim.register("1001")).status == 200
        callee = await callee_at(cluster, "TCP")
        caller = await Phone.open("127.0.0.1")
        try:
            caller_side, _, _ = await ring_and_answer(cluster, caller, callee, "TCP")
            caller_side.routes = [*caller_side.routes, f"<sip:127.0.0.1:{victim.port};transport=tcp;lr>"]
            for method in ("INFO", "BYE"):
                caller.send(caller_side.request(method), cluster.udp(cluster.one))
                final, _ = await caller.final()
                assert final.status == 403, (method, final)
            await quiet(victim)
            await quiet(callee, 0.1)
        finally:
            caller.close()
            await callee.close()
            await victim.close()


async def test_a_stray_response_naming_another_edgeports_branch_is_not_handed_over() -> None:
    """Anyone can send edgeport-02 a response whose branch names edgeport-01; only one whose top Via is
    edgeport-02's own (edgeport-02 sent the request) goes to edgeport-01."""
    async with two_edges() as cluster:
        attacker = await Phone.open("127.0.0.1")
        try:
            stray = attacker.request("INVITE", "sip:1002@sip.local", "1001", "sip:1002@sip.local", call_id="stray")
            stray.headers.set("Via", f"SIP/2.0/UDP 127.0.0.1:{attacker.port};branch={owned_branch(cluster.one.tag, 0)}")
            response = stray.make_response(200, to_tag="x")
            tcp = await StreamPhone.open("TCP", cluster.server(cluster.two, "tcp"))
            tcp.send(response)
            await asyncio.sleep(0.3)
            assert cluster.peers.handed_back == 0
            assert cluster.two.metrics.reject_counts.get("no_transaction", 0) >= 1
            await tcp.close()
            assert isinstance(response, Response)
        finally:
            attacker.close()
