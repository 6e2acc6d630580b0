"""The RTPEngine middleware over real sockets with a real RTPEngine (Debian's rtpengine-daemon, userspace): the
shipped EdgePort and Connect in process, the dispatcher's routing with the middleware as a post-processor
(tests/support/media.py), UDP phones and RTP sockets on 127.0.0.1 (issue 19).

* phones behind NAT (private addresses in SDP) hear each other through RTPEngine; BYE deletes the call;
* RTPEngine stopped: the INVITE gets 503 with Retry-After within the ng timeout; a second instance takes over;
* a forked call: one RTPEngine branch per contact (its own ports), the answering branch's media flows, the
  cancelled branch's 487 deletes its branch, and BYE leaves nothing;
* a refused call (486) leaves nothing; only the relayed INVITE's 1xx/2xx go through the dispatcher;
* a late offer (the 200 offers, the ACK answers) and a re-INVITE moving the caller's media are relayed.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest

from routr_ray.config.resources import Forking, ForkingMode
from tests.support.media import (
    RtpPort,
    ack_for,
    bye_for,
    close,
    dial,
    in_dialog,
    media_config,
    media_edge,
    media_of,
    ok_of,
    sdp,
    setup,
    wait_for,
)
from tests.support.redis_server import free_port
from tests.support.rtpengine import RTPENGINE, RtpEngineServer, packets_by_tag

pytestmark = [
    pytest.mark.timeout(60), pytest.mark.netns,
    pytest.mark.skipif(os.environ.get("ROUTR_RAY_IN_NETNS") != "1", reason="inside scripts/in-netns"),
]

MEDIA_RANGES = ((30000, 30199), (30200, 30399))


@pytest.fixture(scope="module")
def engines() -> Iterator[list[RtpEngineServer]]:
    if RTPENGINE is None:
        pytest.fail("rtpengine not found: scripts/install-test-deps installs Debian's rtpengine-daemon")
    servers = [RtpEngineServer(free_port(), low, high) for low, high in MEDIA_RANGES]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.cleanup()


@pytest.fixture
def running(engines: list[RtpEngineServer]) -> Iterator[list[RtpEngineServer]]:
    """Both instances running and holding no call, before and after the test."""
    for server in engines:
        if not server.running:
            server.start()
        for call_id in server.calls():
            server.command({"command": "delete", "call-id": call_id, "delete-delay": 0})
    yield engines
    for server in engines:
        if not server.running:
            server.start()


async def test_phones_behind_nat_hear_each_other_and_bye_deletes_the_call(running) -> None:  # type: ignore[no-untyped-def]
    async with media_edge(media_config(running)) as stack:
        caller, caller_rtp, (callee,) = await setup(stack)
        try:
            invite = await dial(stack, caller, caller_rtp, "nat-call")
            received = await callee.ringing()
            relay_host, to_callee_port, proto = media_of(received)
            assert relay_host == "127.0.0.1" and proto == "RTP/AVP", received  # RTPEngine, not 10.0.0.5
            assert any(low <= to_callee_port <= high for low, high in MEDIA_RANGES)
            assert "10.0.0.5" not in received.body.decode()
            callee.reply(200)
            ok = await ok_of(caller)
            assert ok.status == 200
            ok_host, to_caller_port, ok_proto = media_of(ok)
            assert ok_host == "127.0.0.1" and ok_proto == "RTP/AVP" and "192.168.1.20" not in ok.body.decode()
            caller.send(ack_for(invite, ok, caller), stack.server)
            await callee.phone.request_of("ACK")

            # RTP both ways through RTPEngine; it sends to the SIP source address (127.0.0.1), not the LAN ones
            caller_rtp.send(("127.0.0.1", to_caller_port), 10)
            callee.rtp.send(("127.0.0.1", to_callee_port), 10)
            await wait_for(lambda: len(callee.rtp.received) >= 5 and len(caller_rtp.received) >= 5)
            assert {addr for _, addr in callee.rtp.received} == {("127.0.0.1", to_callee_port)}
            assert {addr for _, addr in caller_rtp.received} == {("127.0.0.1", to_caller_port)}
            holder = [s for s in running if "nat-call" in s.calls()]
            assert len(holder) == 1, "one instance holds the call"
            sent = packets_by_tag(holder[0].query("nat-call"))
            assert sent["t1001"] >= 10 and sent[callee.tag] >= 10, sent

            caller.send(bye_for(invite, ok, caller), stack.server)
            bye, source = await callee.phone.request_of("BYE")
            callee.reply(200, bye)
            assert (await ok_of(caller)).status == 200
            await wait_for(lambda: "nat-call" not in holder[0].calls())
        finally:
            close(caller, caller_rtp, callee.phone, callee.rtp)


async def test_rtpengine_stopped_new_calls_get_503_in_time(running) -> None:  # type: ignore[no-untyped-def]
    async with media_edge(media_config(running, timeout=0.5)) as stack:
        caller, caller_rtp, (callee,) = await setup(stack)
        try:
            for server in running:
                server.stop()
            started = time.monotonic()
            invite = await dial(stack, caller, caller_rtp, "down-call")
            final = await ok_of(caller, invite, stack.server)
            took = time.monotonic() - started
            assert final.status == 503, final
            assert final.headers.get("Retry-After") == "7"
            assert "media relay" in (final.headers.get("Warning") or "")
            assert took < 2 * 0.5 + 0.5, f"503 after {took:.2f}s"  # both instances tried, within their timeouts
            with pytest.raises(TimeoutError):
                await callee.phone.request_of("INVITE", timeout=0.3)  # never a call without its relay
            assert stack.relay.engines.live == []
            # known down: the next call is refused at once, without waiting for any timeout
            started = time.monotonic()
            invite = await dial(stack, caller, caller_rtp, "down-call-2")
            assert (await ok_of(caller, invite, stack.server)).status == 503
            assert time.monotonic() - started < 0.5
            text = stack.relay.metrics_text().decode()
            assert 'routr_media_instance_up{instance="rtpengine-1"} 0.0' in text
            assert 'result="unreachable"' in text and 'routr_media_calls_total{outcome="refused_503"}' in text
        finally:
            close(caller, caller_rtp, callee.phone, callee.rtp)


async def test_a_second_instance_takes_over(running) -> None:  # type: ignore[no-untyped-def]
    async with media_edge(media_config(running, timeout=0.5)) as stack:
        caller, caller_rtp, (callee,) = await setup(stack)
        try:
            first, second = stack.relay.engines.order("failover-call")
            by_ref = {"rtpengine-1": running[0], "rtpengine-2": running[1]}
            by_ref[first.ref].stop()
            await dial(stack, caller, caller_rtp, "failover-call")
            received = await callee.ringing()
            assert media_of(received)[0] == "127.0.0.1"
            assert "failover-call" in by_ref[second.ref].calls()
            callee.reply(200)
            assert (await ok_of(caller)).status == 200
            assert not first.up and second.up
            # the stopped instance comes back: the pings mark it up again
            by_ref[first.ref].start()
            await wait_for(lambda: first.up, within=3.0)
            up = f'routr_media_instance_up{{instance="{first.ref}"}} 1.0'
            assert up in stack.relay.metrics_text().decode()
        finally:
            close(caller, caller_rtp, callee.phone, callee.rtp)


async def test_forked_call_one_branch_per_contact(running) -> None:  # type: ignore[no-untyped-def]
    async with media_edge(media_config(running), forking=Forking(ForkingMode.PARALLEL)) as stack:
        caller, caller_rtp, callees = await setup(stack, 2)
        try:
            invite = await dial(stack, caller, caller_rtp, "fork-call")
            invites = [await c.ringing() for c in callees]
            ports = [media_of(i)[1] for i in invites]
            assert all(media_of(i)[0] == "127.0.0.1" for i in invites)
            assert ports[0] != ports[1], "each branch has its own RTPEngine ports (via-branch)"
            (holder,) = [s for s in running if "fork-call" in s.calls()]
            winner, loser = callees[1], callees[0]
            winner.reply(200)
            await loser.expect_cancel()
            ok = await ok_of(caller)
            assert ok.status == 200
            caller.send(ack_for(invite, ok, caller), stack.server)
            _, to_caller_port, _ = media_of(ok)
            to_winner_port = media_of(winner.invite)[1]  # type: ignore[arg-type]
            caller_rtp.send(("127.0.0.1", to_caller_port), 10)
            winner.rtp.send(("127.0.0.1", to_winner_port), 10)
            await wait_for(lambda: len(winner.rtp.received) >= 5 and len(caller_rtp.received) >= 5)
            assert not loser.rtp.received, "the cancelled branch gets no media"
            tags = set(holder.query("fork-call")["tags"])
            assert winner.tag in tags and loser.tag not in tags, tags  # the 487 deleted the loser's branch

            caller.send(bye_for(invite, ok, caller), stack.server)
            bye, _ = await winner.phone.request_of("BYE")
            winner.reply(200, bye)
            await wait_for(lambda: "fork-call" not in holder.calls())
        finally:
            close(caller, caller_rtp, *(c.phone for c in callees), *(c.rtp for c in callees))


async def test_a_refused_call_leaves_nothing_and_only_relayed_invites_come_back(running) -> None:  # type: ignore[no-untyped-def]
    async with media_edge(media_config(running)) as stack:
        caller, caller_rtp, (callee,) = await setup(stack)
        try:
            invite = await dial(stack, caller, caller_rtp, "busy-call")
            await callee.ringing()
            assert any("busy-call" in s.calls() for s in running)
            callee.reply(486)
            assert (await ok_of(caller, invite, stack.server)).status == 486
            await wait_for(lambda: not any("busy-call" in s.calls() for s in running))
            # the relayed INVITE's responses come back through the dispatcher (its 180 and 486), with its label
            responses = [r for r, _ in stack.exchanges if r.message.WhichOneof("message_type") == "response_type"]
            assert {r.message.status_code for r in responses} >= {180, 486}
            assert all(r.metadata.get("routr-ray.echo.media") == "o:b0" for r in responses), responses
            invites = [out for _, out in stack.exchanges if out.message.WhichOneof("message_type") == "request_uri"
                       and out.message.method == "INVITE"]
            assert invites and all("routr-ray.responses" not in out.metadata for out in invites)  # asked for
            # a request the relay does not ask for keeps Connect's mark: its 1xx/2xx never cost a dispatcher call
            message = caller.request("MESSAGE", "sip:1002@sip.local", "1001", "sip:1002@sip.local", call_id="msg-1")
            caller.send(message, stack.server)
            challenge, _ = await caller.final()
            caller.send(caller.answer_challenge(message, challenge, "1001"), stack.server)
            delivered, source = await callee.phone.request_of("MESSAGE")
            callee.reply(200, delivered)
            assert (await caller.final())[0].status == 200
            (marked,) = [out for r, out in stack.exchanges if out.message.method == "MESSAGE"
                         and out.message.WhichOneof("message_type") == "request_uri"]
            assert marked.metadata.get("routr-ray.responses") == "errors"
            assert not [r for r, _ in stack.exchanges if r.message.WhichOneof("message_type") == "response_type"
                        and r.message.call_id.call_id == "msg-1" and r.message.status_code == 200]
        finally:
            close(caller, caller_rtp, callee.phone, callee.rtp)


async def test_a_late_offer_the_200_offers_and_the_ack_answers(running) -> None:  # type: ignore[no-untyped-def]
    async with media_edge(media_config(running)) as stack:
        caller, caller_rtp, (callee,) = await setup(stack)
        try:
            invite = await dial(stack, caller, caller_rtp, "late-call", offer=False)
            received = await callee.ringing()
            assert received.body == b""
            callee.reply(200)  # the callee's offer names 192.168.1.20
            ok = await ok_of(caller)
            host, to_callee_port, proto = media_of(ok)  # the offer the caller answers: RTPEngine's
            assert host == "127.0.0.1" and proto == "RTP/AVP" and "192.168.1.20" not in ok.body.decode()
            ack = in_dialog("ACK", invite, ok, caller, invite.cseq.seq if invite.cseq else 2,  # type: ignore[union-attr]
                            body=sdp("10.0.0.5", caller_rtp.port))
            caller.send(ack, stack.server)
            acked, _ = await callee.phone.request_of("ACK")
            ack_host, to_caller_port, _ = media_of(acked)
            assert ack_host == "127.0.0.1" and "10.0.0.5" not in acked.body.decode(), acked
            callee.rtp.send(("127.0.0.1", to_caller_port), 10)
            caller_rtp.send(("127.0.0.1", to_callee_port), 10)
            await wait_for(lambda: len(callee.rtp.received) >= 5 and len(caller_rtp.received) >= 5)
        finally:
            close(caller, caller_rtp, callee.phone, callee.rtp)


async def test_a_reinvite_moves_the_callers_media(running) -> None:  # type: ignore[no-untyped-def]
    async with media_edge(media_config(running)) as stack:
        caller, caller_rtp, (callee,) = await setup(stack)
        moved = await RtpPort.open()
        try:
            invite = await dial(stack, caller, caller_rtp, "reinvite-call")
            received = await callee.ringing()
            callee.reply(200)
            ok = await ok_of(caller)
            caller.send(ack_for(invite, ok, caller), stack.server)
            await callee.phone.request_of("ACK")
            caller_rtp.send(("127.0.0.1", media_of(ok)[1]), 5)
            callee.rtp.send(("127.0.0.1", media_of(received)[1]), 5)
            await wait_for(lambda: len(caller_rtp.received) >= 3)
            await asyncio.sleep(0.1)
            before = len(caller_rtp.received)
            seq = (invite.cseq.seq if invite.cseq else 2) + 1
            reinvite = in_dialog("INVITE", invite, ok, caller, seq, body=sdp("10.0.0.5", moved.port, session="3"))
            caller.send(reinvite, stack.server)
            again, callee.source = await callee.phone.request_of("INVITE")
            host, to_callee_port, proto = media_of(again)  # RTPEngine again (its ports may change)
            assert host == "127.0.0.1" and proto == "RTP/AVP" and "10.0.0.5" not in again.body.decode()
            assert any(low <= to_callee_port <= high for low, high in MEDIA_RANGES)
            callee.reply(200, again)
            ok2 = await ok_of(caller)
            assert ok2.status == 200 and media_of(ok2)[0] == "127.0.0.1"
            to_caller_port = media_of(ok2)[1]
            caller.send(in_dialog("ACK", invite, ok, caller, seq), stack.server)
            moved.send(("127.0.0.1", to_caller_port), 10)
            callee.rtp.send(("127.0.0.1", to_callee_port), 10)
            await wait_for(lambda: len(callee.rtp.received) >= 5 and len(moved.received) >= 5)
            assert len(caller_rtp.received) == before, "the media follows the re-INVITE to the new port"
        finally:
            close(caller, caller_rtp, moved, callee.phone, callee.rtp)
