"""A Contact at a closed port must not stop the EdgePort's UDP (issue 15, docs/security.md "Trunks").

Anyone who can register can leave a binding at a port nothing listens on and then call it: the EdgePort's INVITE
there comes back as an ICMP port unreachable, which a wildcard UDP listening point queues (``IP_RECVERR``) and which
makes the socket report POLLERR. On uvloop, the loop Ray runs the EdgePort actors on, that used to stop the
listener's reader for good: the EdgePort received no more UDP at all. Here the shipped EdgePort with the real
Connect runs on uvloop, 1002 registers a dead Contact, 1001 calls it (the ICMP comes back), and then a phone must
still register.
"""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from routr_ray.sip.transaction_messages import build_ack
from tests.support.phones import Phone, shipped_edge

pytestmark = [pytest.mark.timeout(60), pytest.mark.netns,
              pytest.mark.skipif(os.environ.get("ROUTR_RAY_IN_NETNS") != "1", reason="inside scripts/in-netns")]


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _attack() -> int:
    async with shipped_edge() as edge:
        server = ("127.0.0.1", edge.address("udp")[1])
        gone = await Phone.open("127.0.0.1")
        assert (await gone.register("1002", server)).status == 200
        gone.close()  # its binding stays; its port is closed: our INVITE there gets an ICMP port unreachable
        caller = await Phone.open("127.0.0.1")
        invite = caller.request("INVITE", "sip:1002@sip.local", "1001", "sip:1002@sip.local", call_id="icmp-call")
        caller.send(invite, server)
        challenge, _ = await caller.final()
        caller.send(build_ack(invite, challenge), server)
        caller.send(caller.answer_challenge(invite, challenge, "1001"), server)
        await asyncio.sleep(0.5)  # the INVITE went to the dead Contact and the ICMP error came back
        late = await Phone.open("127.0.0.1")
        try:
            return (await late.register("1001", server)).status
        finally:
            for phone in (caller, late):
                phone.close()


def test_a_dead_contact_cannot_stop_the_edgeports_udp_on_uvloop() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(_attack()) == 200
    finally:
        loop.close()
