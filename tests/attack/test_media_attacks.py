"""The media relay under attack (issue 19; docs/security.md "Media relay"): RTPEngine only ever works for what
Connect authorised and forwarded, because the middleware runs after the processor (postProcessor) and acts on
forwarded requests and on responses of the branches it relayed only. In-process EdgePort + Connect + the
middleware on loopback with a real RTPEngine (tests/support/media.py).

* INVITEs without credentials (407) allocate nothing in RTPEngine (no port exhaustion for strangers);
* a BYE or re-INVITE forged from outside the dialog (wrong From tag, no dialog token) is refused by Connect and
  neither deletes nor re-points the relayed call: its media keeps flowing;
* a 2xx with SDP that matches no transaction (a stray or spoofed answer) changes nothing in RTPEngine and
  reaches the caller without its SDP; the call still goes to the real callee.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from routr_ray.sip import Request, Response, parse
from tests.support.media import (
    RtpPort,
    ack_for,
    close,
    dial,
    media_config,
    media_edge,
    media_of,
    ok_of,
    sdp,
    setup,
    wait_for,
    with_sdp,
)
from tests.support.phones import Phone
from tests.support.redis_server import free_port
from tests.support.rtpengine import RTPENGINE, RtpEngineServer, packets_by_tag

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(os.environ.get("ROUTR_RAY_IN_NETNS") != "1", reason="inside scripts/in-netns"),
]


@pytest.fixture(scope="module")
def engine() -> Iterator[RtpEngineServer]:
    if RTPENGINE is None:
        pytest.fail("rtpengine not found: scripts/install-test-deps installs Debian's rtpengine-daemon")
    server = RtpEngineServer(free_port(), 30400, 30599)
    server.start()
    yield server
    server.cleanup()


async def test_unauthenticated_invites_allocate_nothing(engine: RtpEngineServer) -> None:
    async with media_edge(media_config([engine])) as stack:
        stranger, rtp = await Phone.open("127.0.0.1"), await RtpPort.open()
        try:
            for n in range(20):
                invite = stranger.request("INVITE", "sip:1002@sip.local", "1001", "sip:1002@sip.local",
                                          call_id=f"flood-{n}")
                stranger.send(with_sdp(invite, sdp("10.0.0.5", rtp.port)), stack.server)
                challenge, _ = await stranger.final()
                assert challenge.status == 407
            assert not [c for c in engine.calls() if c.startswith("flood-")]
        finally:
            close(stranger, rtp)


async def test_forged_in_dialog_requests_neither_end_nor_redirect_the_media(engine: RtpEngineServer) -> None:
    async with media_edge(media_config([engine])) as stack:
        caller, caller_rtp, (callee,) = await setup(stack)
        attacker, attacker_rtp = await Phone.open("127.0.0.1"), await RtpPort.open()
        try:
            invite = await dial(stack, caller, caller_rtp, "victim-call")
            received = await callee.ringing()
            callee.reply(200)
            ok = await ok_of(caller)
            caller.send(ack_for(invite, ok, caller), stack.server)
            await callee.phone.request_of("ACK")
            to_callee = media_of(received)[1]
            before = engine.query("victim-call")["tags"][callee.tag]["medias"][0]["streams"][0]["endpoint"]

            callee_tag = ok.to.params.get("tag") if ok.to is not None else None  # type: ignore[union-attr]
            for method, body in (("BYE", None), ("INVITE", sdp("10.6.6.6", attacker_rtp.port))):
                lines = [f"{method} sip:1002@127.0.0.1:{callee.phone.port} SIP/2.0",
                         f"Via: SIP/2.0/UDP 127.0.0.1:{attacker.port};rport;branch=z9hG4bKforged{method}",
                         "Max-Forwards: 70", "From: <sip:1001@sip.local>;tag=attacker",
                         f"To: <sip:1002@sip.local>;tag={callee_tag}", "Call-ID: victim-call", f"CSeq: 99 {method}"]
                lines += [f"Route: {r}" for r in reversed(ok.headers.get_all("Record-Route"))]
                forged = parse(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
                assert isinstance(forged, Request)
                if body is not None:
                    forged = with_sdp(forged, body)  # type: ignore[assignment]
                attacker.send(forged, stack.server)
                refused, _ = await attacker.final()
                assert refused.status in (403, 481), refused
            with pytest.raises(TimeoutError):
                await callee.phone.request_of("BYE", timeout=0.3)
            assert "victim-call" in engine.calls()
            after = engine.query("victim-call")["tags"][callee.tag]["medias"][0]["streams"][0]["endpoint"]
            assert after == before, "the forged re-INVITE did not re-point the callee's media"
            caller_rtp.send(("127.0.0.1", media_of(ok)[1]), 10)
            callee.rtp.send(("127.0.0.1", to_callee), 10)
            await wait_for(lambda: len(callee.rtp.received) >= 5 and len(caller_rtp.received) >= 5)
            assert not attacker_rtp.received
        finally:
            close(caller, caller_rtp, callee.phone, callee.rtp, attacker, attacker_rtp)


async def test_a_stray_answer_changes_nothing(engine: RtpEngineServer) -> None:
    async with media_edge(media_config([engine])) as stack:
        caller, caller_rtp, (callee,) = await setup(stack)
        attacker, attacker_rtp = await Phone.open("127.0.0.1"), await RtpPort.open()
        try:
            invite = await dial(stack, caller, caller_rtp, "stray-call")
            await callee.ringing()
            counts = packets_by_tag(engine.query("stray-call"))
            text = (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:{stack.server[1]};branch=z9hG4bKnotours;rport\r\n"
                    f"{f'Via: SIP/2.0/UDP 127.0.0.1:{caller.port};branch=z9hG4bKx'}\r\n"
                    "From: <sip:1001@sip.local>;tag=t1001\r\nTo: <sip:1002@sip.local>;tag=evil\r\n"
                    f"Call-ID: stray-call\r\nCSeq: {invite.cseq.seq if invite.cseq else 2} INVITE\r\n"
                    "Contact: <sip:evil@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n")
            stray = parse(text.encode())
            assert isinstance(stray, Response)
            attacker.send(with_sdp(stray, sdp("10.6.6.6", attacker_rtp.port)), stack.server)
            # the EdgePort relays a 2xx with its own Via statelessly (an extra 2xx of a fork, §16.7 step 5), but the
            # relay gives it nothing: its SDP is removed and RTPEngine never sees it
            relayed = None
            while relayed is None:
                message, _ = await caller.recv(timeout=2.0)
                if isinstance(message, Response) and message.status == 200:
                    relayed = message
            assert relayed.body == b"" and "10.6.6.6" not in bytes(relayed).decode()
            assert set(engine.query("stray-call")["tags"]) == set(counts), "no new party in the call"
            # the real answer is still relayed: the caller's media goes to the callee, never to the attacker
            callee.reply(200)
            ok = await ok_of(caller)
            assert ok.status == 200 and "evil" not in (ok.headers.get("To") or "")
            caller.send(ack_for(invite, ok, caller), stack.server)
            caller_rtp.send(("127.0.0.1", media_of(ok)[1]), 10)
            await wait_for(lambda: len(callee.rtp.received) >= 5)
            assert not attacker_rtp.received
        finally:
            close(caller, caller_rtp, callee.phone, callee.rtp, attacker, attacker_rtp)
