"""The RTPEngine middleware over real sockets with a real RTPEngine (Debian's rtpengine-daemon, userspace): the
shipped EdgePort and Connect in process, the dispatcher's routing with the middleware as a post-processor
(tests/support/media.py), UDP phones and RTP sockets on 127.0.0.1 (issue 19).

* phones behind NAT (private addresses in SDP) hear each other through RTPEngine; BYE deletes the call;
* RTPEngine stopped: the INVITE gets 503 with Retry-After within the ng timeout; a second instance takes over;
* a forked call: one RTPEngine branch per contact (its own ports), the answering branch's media flows, the
  cancelled branch's 487 deletes its branch, and BYE leaves nothing;
* a refused call (486) leaves nothing; only the relayed INVITE's 1xx/2xx go through the dispatcher.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest

from routr_ray.config.resources import Forking, ForkingMode
from routr_ray.sip import Request, Response
from routr_ray.sip.transaction_messages import build_ack
from tests.support.media import MediaStack, RtpPort, answer, media_config, media_edge, media_of, sdp, with_sdp
from tests.support.phones import Phone
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


class Callee:
    """A contact of 1002 with an RTP socket: answers with SDP that names a private address (a phone behind NAT)."""

    def __init__(self, phone: Phone, rtp: RtpPort, lan: str = "192.168.1.20") -> None:
        self.phone, self.rtp, self.lan = phone, rtp, lan
        self.invite: Request | None = None
        self.source: tuple[str, int] | None = None

    @property
    def tag(self) -> str:
        return f"callee{self.phone.port}"

    async def ringing(self) -> Request:
        invite, source = await self.phone.request_of("INVITE")
        self.invite, self.source = invite, source
        self.reply(180)
        return invite

    def reply(self, status: int, request: Request | None = None, *, with_media: bool | None = None) -> Response:
        request = request or self.invite
        assert request is not None and self.source is not None
        body = sdp(self.lan, self.rtp.port, session="2") if (with_media if with_media is not None
                                                              else status == 200 and request.method == "INVITE") else None
        reason = {180: "Ringing", 200: "OK", 486: "Busy Here", 487: "Request Terminated"}.get(status, "X")
        response = answer(request, status, reason, tag=self.tag, contact=f"sip:1002@127.0.0.1:{self.phone.port}",
                          body=body)
        self.phone.send(response, self.source)
        return response

    async def expect_cancel(self) -> None:
        cancel, _ = await self.phone.request_of("CANCEL")
        self.reply(200, cancel)
        self.reply(487)
        await self.phone.request_of("ACK")


async def setup(stack: MediaStack, contacts: int = 1) -> tuple[Phone, RtpPort, list[Callee]]:
    callees = []
    for _ in range(contacts):
        phone = await Phone.open("127.0.0.1")
        assert (await phone.register("1002", stack.server)).status == 200
        callees.append(Callee(phone, await RtpPort.open()))
    caller = await Phone.open("127.0.0.1")
    assert (await caller.register("1001", stack.server)).status == 200
    return caller, await RtpPort.open(), callees


async def dial(stack: MediaStack, caller: Phone, rtp: RtpPort, call_id: str) -> Request:
    """1001 calls 1002 with an SDP naming 10.0.0.5 (its LAN address): INVITE, 407, ACK, INVITE with credentials."""
    invite = caller.request("INVITE", "sip:1002@sip.local", "1001", "sip:1002@sip.local", call_id=call_id)
    invite = with_sdp(invite, sdp("10.0.0.5", rtp.port))  # type: ignore[assignment]
    caller.send(invite, stack.server)
    challenge, _ = await caller.final()
    assert challenge.status == 407
    caller.send(build_ack(invite, challenge), stack.server)
    authorized = caller.answer_challenge(invite, challenge, "1001")
    caller.send(authorized, stack.server)
    return authorized


async def ok_of(caller: Phone, invite: Request | None = None, server: tuple[str, int] | None = None) -> Response:
    """The next final response; a non-2xx to ``invite`` is ACKed (hop by hop, RFC 3261 §17.1.1.3)."""
    while True:
        message, _ = await caller.recv()
        if isinstance(message, Response) and message.status >= 200:
            if message.status >= 300 and invite is not None and server is not None:
                caller.send(build_ack(invite, message), server)
            return message


def ack_for(invite: Request, ok: Response, caller: Phone) -> Request:
    """The 2xx ACK (a new transaction, RFC 3261 §13.2.2.4) along the route set of the 200."""
    routes = list(reversed(ok.headers.get_all("Record-Route")))
    contact = ok.contacts[0].uri
    lines = [f"ACK {contact} SIP/2.0",
             f"Via: SIP/2.0/UDP 127.0.0.1:{caller.port};rport;branch=z9hG4bKack{int(time.time() * 1000)}",
             "Max-Forwards: 70", f"From: {invite.headers.get('From')}", f"To: {ok.headers.get('To')}",
             f"Call-ID: {invite.call_id}", f"CSeq: {invite.cseq.seq if invite.cseq else 1} ACK"]
    lines += [f"Route: {r}" for r in routes]
    from routr_ray.sip import parse

    ack = parse(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(ack, Request)
    return ack


def bye_for(invite: Request, ok: Response, caller: Phone) -> Request:
    ack = ack_for(invite, ok, caller)
    text = bytes(ack).decode().replace("ACK ", "BYE ", 1).replace(" ACK\r\n", " BYE\r\n")
    text = text.replace(";branch=z9hG4bKack", ";branch=z9hG4bKbye")
    seq = (invite.cseq.seq if invite.cseq else 1) + 1
    text = text.replace(f"CSeq: {seq - 1} BYE", f"CSeq: {seq} BYE")
    from routr_ray.sip import parse

    bye = parse(text.encode())
    assert isinstance(bye, Request)
    return bye


async def wait_for(condition, within: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def close(*things) -> None:  # type: ignore[no-untyped-def]
    for thing in things:
        thing.close()


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
