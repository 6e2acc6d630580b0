"""Issue 17: calls across EdgePorts. 1002 registers over TCP or WS at edgeport-02, 1001 calls it over UDP at
edgeport-01: edgeport-01 keeps the transactions, edgeport-02 puts the INVITE on 1002's connection and hands the
responses back; in-dialog requests both ways follow the Record-Route of both EdgePorts.

Two EdgePorts in one process with the real Connect on config/ as shipped (tests/support/cross_edge.py), wired by
direct calls where the actors use the data plane; every phone talks over real sockets and is checked on the wire.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from routr_ray.edge.transports import TransportName
from routr_ray.sip import Request, Response
from tests.support.cross_edge import (
    AnyPhone,
    StreamPhone,
    answer,
    callee_at,
    dial,
    ring_and_answer,
    two_edges,
)
from tests.support.phones import Phone

pytestmark = [pytest.mark.timeout(30), pytest.mark.netns,
              pytest.mark.skipif(os.environ.get("ROUTR_RAY_IN_NETNS") != "1", reason="inside scripts/in-netns")]


@pytest.mark.parametrize("bind", ["0.0.0.0", "127.0.0.1"])
@pytest.mark.parametrize("transport", ["TCP", "WS"])
@pytest.mark.parametrize("hangs_up", ["caller", "callee"])
async def test_a_call_from_udp_at_one_edgeport_to_a_flow_at_the_other_completes_both_ways(
    transport: str, hangs_up: str, bind: str
) -> None:
    async with two_edges(bind=bind) as cluster:
        callee = await callee_at(cluster, transport)
        caller = await Phone.open("127.0.0.1")
        try:
            assert (await caller.register("1001", cluster.udp(cluster.one))).status == 200
            caller_side, callee_side, _ = await ring_and_answer(cluster, caller, callee, transport)
            if hangs_up == "callee":
                callee.send(callee_side.request("BYE"))
                bye, source = await caller.request_of("BYE")
                assert source == cluster.udp(cluster.one)  # from edgeport-01's socket: the address 1001 knows
                assert bye.top_via is not None and bye.top_via.port == cluster.one.address("udp")[1]
                caller.send(bye.make_response(200), source)
                final, _ = await callee.final()
            else:
                caller.send(caller_side.request("BYE"), cluster.udp(cluster.one))
                bye, source = await callee.request_of("BYE")
                callee.send(bye.make_response(200), source)
                final, _ = await caller.final()
            assert final.status == 200 and final.cseq is not None and final.cseq.method == "BYE"
            assert cluster.peers.sent >= 3 and cluster.peers.handed_back >= 3
        finally:
            caller.close()
            await callee.close()


async def test_the_callers_cancel_reaches_the_callee_through_its_edgeport() -> None:
    async with two_edges() as cluster:
        callee = await callee_at(cluster, "TCP")
        caller = await Phone.open("127.0.0.1")
        try:
            invite = await dial(caller, cluster.udp(cluster.one))
            received, source = await callee.request_of("INVITE")
            answer(callee, received, 180, source)
            provisional, _ = await caller.recv()
            while isinstance(provisional, Response) and provisional.status == 100:
                provisional, _ = await caller.recv()
            assert isinstance(provisional, Response) and provisional.status == 180
            cancel = invite.copy()
            assert isinstance(cancel, Request)
            cancel.method = "CANCEL"
            cancel.headers.set("CSeq", f"{invite.cseq.seq} CANCEL")  # type: ignore[union-attr]
            cancel.request_uri = invite.request_uri
            caller.send(bytes(cancel).replace(b"INVITE sip:", b"CANCEL sip:", 1), cluster.udp(cluster.one))
            got, _ = await callee.request_of("CANCEL")
            assert got.top_via is not None and got.top_via.branch == received.top_via.branch  # type: ignore[union-attr]
            answer(callee, got, 200, source)
            answer(callee, received, 487, source)
            hop_ack, _ = await callee.request_of("ACK")  # the 487 is ACKed hop by hop, through edgeport-02 too
            assert hop_ack.cseq is not None and hop_ack.cseq.method == "ACK"
            statuses = set()
            while 487 not in statuses:
                msg, _ = await caller.recv()
                if isinstance(msg, Response):
                    statuses.add(msg.status)
            assert 200 in statuses  # the CANCEL's own answer, from edgeport-01
        finally:
            caller.close()
            await callee.close()


async def test_without_peers_a_flow_of_another_edgeport_still_gets_503() -> None:
    async with two_edges(wired=False) as cluster:
        callee = await callee_at(cluster, "TCP")
        caller = await Phone.open("127.0.0.1")
        try:
            invite = caller.request("MESSAGE", "sip:1002@sip.local", "1001", "sip:1002@sip.local", call_id="m1")
            caller.send(invite, cluster.udp(cluster.one))
            challenge, _ = await caller.final()
            caller.send(caller.answer_challenge(invite, challenge, "1001"), cluster.udp(cluster.one))
            final, _ = await caller.final()
            assert final.status == 503 and "edgeport-02" in (final.headers.get("Warning") or "")
        finally:
            caller.close()
            await callee.close()


async def test_a_callee_whose_edgeport_lost_its_connection_gets_480() -> None:
    async with two_edges() as cluster:
        callee = await callee_at(cluster, "TCP")
        await callee.close()
        for _ in range(100):
            if not len(cluster.two.connections):
                break
            await asyncio.sleep(0.02)
        caller = await Phone.open("127.0.0.1")
        try:
            await dial(caller, cluster.udp(cluster.one))
            final, _ = await caller.final()
            assert final.status == 480
        finally:
            caller.close()


@pytest.mark.parametrize("answering", ["udp-at-edgeport-01", "tcp-at-edgeport-02"])
async def test_a_fork_over_both_edgeports_cancels_the_other_branch_through_its_own_edgeport(answering: str) -> None:
    """1002 registered twice: over UDP at edgeport-01 and over TCP at edgeport-02. Both ring; the one that does not
    answer gets its CANCEL (and the ACK of its 487) from the EdgePort it registered through."""
    async with two_edges() as cluster:
        remote = await callee_at(cluster, "TCP")
        local = await Phone.open("127.0.0.1")
        caller = await Phone.open("127.0.0.1")
        try:
            assert (await local.register("1002", cluster.udp(cluster.one))).status == 200
            await dial(caller, cluster.udp(cluster.one))
            at_remote, remote_source = await remote.request_of("INVITE")
            at_local, local_source = await local.request_of("INVITE")
            assert local_source == cluster.udp(cluster.one)
            assert [na.uri.params.get("rre") for na in at_remote.record_routes] == [cluster.two.tag, cluster.one.tag]
            assert all("rre" not in na.uri.params for na in at_local.record_routes)  # one EdgePort: no names
            winner: AnyPhone
            loser: AnyPhone
            if answering == "udp-at-edgeport-01":
                winner, won, won_source, loser, lost, lost_source = (
                    local, at_local, local_source, remote, at_remote, remote_source)
            else:
                winner, won, won_source, loser, lost, lost_source = (
                    remote, at_remote, remote_source, local, at_local, local_source)
            answer(loser, lost, 180, lost_source, to_tag="loser")
            answer(winner, won, 200, won_source, to_tag="winner")
            final, _ = await caller.final()
            assert final.status == 200
            cancel, source = await loser.request_of("CANCEL")
            assert cancel.top_via is not None and cancel.top_via.branch == lost.top_via.branch  # type: ignore[union-attr]
            assert "Call completed elsewhere" in (cancel.headers.get("Reason") or "")
            answer(loser, cancel, 200, source)
            answer(loser, lost, 487, source, to_tag="loser")
            hop_ack, _ = await loser.request_of("ACK")
            assert hop_ack.cseq is not None and hop_ack.cseq.seq == lost.cseq.seq  # type: ignore[union-attr]
        finally:
            caller.close()
            local.close()
            await remote.close()


async def test_a_udp_binding_of_the_other_edgeport_is_called_from_that_edgeports_socket() -> None:
    """A UDP phone registered at edgeport-01 (its NAT pinhole, if any, opened toward edgeport-01's address) called by
    a TCP phone at edgeport-02: the INVITE leaves from edgeport-01's socket, naming edgeport-01 in its Via."""
    async with two_edges() as cluster:
        callee = await Phone.open("127.0.0.1")
        caller = await StreamPhone.open("TCP", cluster.server(cluster.two, "tcp"))
        try:
            assert (await callee.register("1002", cluster.udp(cluster.one))).status == 200
            invite = caller.request("INVITE", "sip:1002@sip.local", "1001", "sip:1002@sip.local", call_id="rev")
            caller.send(invite)
            challenge, _ = await caller.final()
            assert challenge.status == 407
            caller.send(caller.answer_challenge(invite, challenge, "1001"))
            received, source = await callee.request_of("INVITE")
            assert source == cluster.udp(cluster.one)
            assert received.top_via is not None and received.top_via.port == cluster.one.address("udp")[1]
            answer(callee, received, 486, source)
            final, _ = await caller.final()
            assert final.status == 486
            ack, _ = await callee.request_of("ACK")  # hop by hop, from edgeport-01 too
            assert ack.cseq is not None and ack.cseq.method == "ACK"
        finally:
            callee.close()
            await caller.close()


async def test_behind_a_wildcard_the_sending_edgeport_writes_its_own_address() -> None:
    """What another EdgePort asks this one to send with a wildcard Via and callee-side Record-Route entry (the
    processor could not know the address) leaves with this EdgePort's address in both; the caller-side entry (the
    other EdgePort's) is left as it came."""
    async with two_edges() as cluster:
        phone = await Phone.open("127.0.0.1")
        try:
            port = cluster.one.address("udp")[1]
            data = (f"MESSAGE sip:1002@127.0.0.1:{phone.port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 0.0.0.0:{port};rport;branch=z9hG4bKrw0.{cluster.two.tag}.1\r\n"
                    f"Record-Route: <sip:0.0.0.0:{port};transport=udp;r2=on;rre={cluster.one.tag};lr>\r\n"
                    f"Record-Route: <sip:0.0.0.0:6060;transport=tcp;r2=on;rre={cluster.two.tag};lr>\r\n"
                    "From: <sip:1001@sip.local>;tag=a\r\nTo: <sip:1002@sip.local>\r\nCall-ID: w1\r\n"
                    "CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
            assert await cluster.one.send_for_peer(TransportName.UDP, "127.0.0.1", phone.port, data, flow=False)
            got, source = await phone.request_of("MESSAGE")
            # (a destination on this host: an address of ours; elsewhere the one the routing table picks toward it)
            assert source[1] == port and source[0] in ("127.0.0.1", "192.0.2.1")
            assert got.top_via is not None and got.top_via.host == source[0]  # the packets match the Via
            hosts = [na.uri.host for na in got.record_routes]
            assert hosts == [source[0], "0.0.0.0"]
        finally:
            phone.close()
