"""Issue 16: a call to an agent with several registered contacts rings every one (RFC 3261 §16.6-16.7).

The real Connect on config/ as shipped behind the EdgePort (tests/support/phones.py), UDP phones on loopback:
1002 registers up to three contacts, 1001 calls it with digest. What each phone receives is checked on the wire.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from routr_ray.config.resources import Forking, ForkingMode
from routr_ray.edge.edgeport import EdgePort
from routr_ray.sip import Request, Response
from routr_ray.sip.timers import TimerConfig
from routr_ray.sip.transaction_messages import build_ack
from tests.support.phones import Phone, shipped_edge

pytestmark = [pytest.mark.timeout(30), pytest.mark.netns,
              pytest.mark.skipif(os.environ.get("ROUTR_RAY_IN_NETNS") != "1", reason="inside scripts/in-netns")]


class Callee:
    """One contact of 1002: answers INVITEs as told, CANCELs with 200 + 487 (RFC 3261 §9.2)."""

    def __init__(self, phone: Phone) -> None:
        self.phone = phone
        self.invite: Request | None = None
        self.source: tuple[str, int] | None = None
        self.cancelled = False

    async def ringing(self) -> Request:
        invite, source = await self.phone.request_of("INVITE")
        self.invite, self.source = invite, source
        self.reply(180)
        return invite

    def reply(self, status: int, request: Request | None = None) -> Response:
        request = request or self.invite
        assert request is not None and self.source is not None
        response = request.make_response(status, to_tag=f"tag{self.phone.port}")
        for value in request.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", value)
        if status < 300 and request.method == "INVITE":
            response.headers.add("Contact", f"<sip:1002@{self.phone.host}:{self.phone.port}>")
        self.phone.send(response, self.source)
        return response

    async def expect_cancel(self) -> Request:
        cancel, source = await self.phone.request_of("CANCEL")
        self.cancelled = True
        self.reply(200, cancel)
        self.reply(487)
        await self.phone.request_of("ACK")  # the 487 is ACKed hop by hop (§17.1.1.3)
        return cancel


async def setup(edge: EdgePort, contacts: int, qs: tuple[float | None, ...] = ()) -> tuple[Phone, list[Callee]]:
    port = edge.address("udp")[1]
    callees = []
    for index in range(contacts):
        phone = await Phone.open("127.0.0.1")
        q = qs[index] if index < len(qs) else None
        assert (await phone.register("1002", ("127.0.0.1", port), q=q)).status == 200
        callees.append(Callee(phone))
    caller = await Phone.open("127.0.0.1")
    assert (await caller.register("1001", ("127.0.0.1", port))).status == 200
    return caller, callees


async def dial(edge: EdgePort, caller: Phone) -> Request:
    """1001 calls 1002: INVITE, 407, ACK, INVITE with credentials. Returns the authenticated INVITE."""
    server = ("127.0.0.1", edge.address("udp")[1])
    invite = caller.request("INVITE", "sip:1002@sip.local", "1001", "sip:1002@sip.local", call_id="fork-call")
    caller.send(invite, server)
    challenge, _ = await caller.final()
    assert challenge.status == 407
    caller.send(build_ack(invite, challenge), server)
    authorized = caller.answer_challenge(invite, challenge, "1001")
    caller.send(authorized, server)
    return authorized


async def no_more(phone: Phone, method_or_status: str, seconds: float = 0.3) -> None:
    """Nothing of that kind arrives within `seconds`."""
    deadline = asyncio.get_running_loop().time() + seconds
    while (left := deadline - asyncio.get_running_loop().time()) > 0:
        try:
            msg, _ = await phone.recv(left)
        except TimeoutError:
            return
        kind = msg.method if isinstance(msg, Request) else str(msg.status)
        assert kind != method_or_status, f"unexpected {kind}"


def close(*phones: Phone) -> None:
    for phone in phones:
        phone.close()


async def test_every_contact_rings_and_the_answer_cancels_the_others() -> None:
    async with shipped_edge() as edge:
        caller, callees = await setup(edge, 3)
        try:
            await dial(edge, caller)
            invites = [await c.ringing() for c in callees]
            branches = {i.top_via.branch for i in invites}  # type: ignore[union-attr]
            assert len(branches) == 3, "one client transaction (branch) per contact"
            assert {i.request_uri.port for i in invites} == {c.phone.port for c in callees}
            callees[1].reply(200)
            for other in (callees[0], callees[2]):
                cancel = await other.expect_cancel()
                assert "Call completed elsewhere" in (cancel.headers.get("Reason") or "")
            answers = []
            while True:
                msg, _ = await caller.recv()
                if isinstance(msg, Response) and msg.status >= 200:
                    answers.append(msg)
                    break
            assert [a.status for a in answers] == [200]
            assert answers[0].to is not None and answers[0].to.tag == f"tag{callees[1].phone.port}"
            await no_more(caller, "200")
            await no_more(caller, "487")
        finally:
            close(caller, *(c.phone for c in callees))


async def test_two_answers_both_reach_the_caller() -> None:
    """RFC 3261 §16.7 step 5: every 2xx is forwarded; the caller BYEs the extra dialog."""
    async with shipped_edge() as edge:
        caller, callees = await setup(edge, 2)
        try:
            await dial(edge, caller)
            for c in callees:
                await c.ringing()
            callees[0].reply(200)
            callees[1].reply(200)
            oks = []
            while len(oks) < 2:
                msg, _ = await caller.recv()
                if isinstance(msg, Response) and msg.status == 200:
                    oks.append(msg)
            assert {o.to.tag for o in oks} == {f"tag{c.phone.port}" for c in callees}  # type: ignore[union-attr]
            # the caller tears the extra dialog down: a BYE along that 200's route set reaches that callee only
            extra = next(o for o in oks if o.to is not None and o.to.tag == f"tag{callees[1].phone.port}")
            bye = caller.request("BYE", f"sip:1002@127.0.0.1:{callees[1].phone.port}", "1001", "sip:1002@sip.local",
                                 call_id="fork-call", contact=False)
            bye.headers.set("To", str(extra.to))
            for value in reversed(extra.headers.get_all("Record-Route")):  # RFC 3261 §12.1.2: reversed
                bye.headers.add("Route", value)
            caller.send(bye, ("127.0.0.1", edge.address("udp")[1]))
            got, source = await callees[1].phone.request_of("BYE")
            callees[1].source = source
            callees[1].reply(200, got)
            answer, _ = await caller.final()
            assert answer.status == 200 and answer.cseq is not None and answer.cseq.method == "BYE"
            await no_more(callees[0].phone, "BYE")
        finally:
            close(caller, *(c.phone for c in callees))


async def test_a_6xx_cancels_the_ringing_branch_and_wins() -> None:
    """486 from one, 603 from another while the third rings: the third is cancelled at once, and once it has
    answered 487 the caller gets the 603 (§16.7 steps 5-6), never a 200."""
    async with shipped_edge() as edge:
        caller, callees = await setup(edge, 3)
        try:
            await dial(edge, caller)
            for c in callees:
                await c.ringing()
            callees[0].reply(486)
            callees[1].reply(603)
            await callees[2].expect_cancel()
            final, _ = await caller.final()
            assert final.status == 603
            await no_more(caller, "200")
        finally:
            close(caller, *(c.phone for c in callees))


async def test_the_best_final_when_every_branch_declines() -> None:
    """No 2xx, no 6xx: the lowest class wins (§16.7 step 6): a 404 over a 503, and a chosen 503 would be 500."""
    async with shipped_edge() as edge:
        caller, callees = await setup(edge, 2)
        try:
            await dial(edge, caller)
            for c in callees:
                await c.ringing()
            callees[0].reply(503)
            callees[1].reply(486)
            final, _ = await caller.final()
            assert final.status == 486
        finally:
            close(caller, *(c.phone for c in callees))


async def test_higher_q_rings_first_and_the_next_group_after_it_declines() -> None:
    async with shipped_edge() as edge:
        caller, callees = await setup(edge, 2, qs=(0.5, 1.0))
        low, high = callees
        try:
            await dial(edge, caller)
            await high.ringing()
            await no_more(low.phone, "INVITE", 0.5)  # q=0.5 waits
            high.reply(486)
            await low.ringing()
            low.reply(200)
            final, _ = await caller.final()
            assert final.status == 200 and final.to is not None and final.to.tag == f"tag{low.phone.port}"
        finally:
            close(caller, *(c.phone for c in callees))


async def test_the_callers_cancel_reaches_every_branch_and_gets_one_487() -> None:
    async with shipped_edge() as edge:
        caller, callees = await setup(edge, 3)
        try:
            invite = await dial(edge, caller)
            for c in callees:
                await c.ringing()
            server = ("127.0.0.1", edge.address("udp")[1])
            cancel = Request("CANCEL", invite.request_uri, invite.headers.copy())
            cancel.headers.set("CSeq", f"{invite.cseq.seq} CANCEL")  # type: ignore[union-attr]
            for name in ("Proxy-Authorization", "Contact"):
                cancel.headers.remove(name)
            caller.send(cancel, server)
            for c in callees:
                await c.expect_cancel()
            while True:
                msg, _ = await caller.recv()
                if isinstance(msg, Response) and msg.cseq is not None and msg.cseq.method == "INVITE" and msg.status >= 200:
                    break
            assert msg.status == 487
            caller.send(build_ack(invite, msg), server)  # acknowledged: no retransmission of the 487 is due
            await no_more(caller, "487")
            await no_more(caller, "200")
        finally:
            close(caller, *(c.phone for c in callees))


async def test_sequential_ringing_moves_on_after_the_ring_timeout() -> None:
    """Forking `sequential` with ringTimeout: one contact at a time; the first is CANCELled when its time is up
    and the next one rings."""
    async with shipped_edge(forking=Forking(ForkingMode.SEQUENTIAL, ring_timeout=0.5)) as edge:
        caller, callees = await setup(edge, 2)
        first, second = callees[1], callees[0]  # the most recent binding rings first
        try:
            await dial(edge, caller)
            await first.ringing()
            await no_more(second.phone, "INVITE", 0.3)
            cancel = await first.expect_cancel()
            assert "Ring timeout" in (cancel.headers.get("Reason") or "")
            await second.ringing()
            second.reply(200)
            final, _ = await caller.final()
            assert final.status == 200 and final.to is not None and final.to.tag == f"tag{second.phone.port}"
        finally:
            close(caller, *(c.phone for c in callees))


async def test_latest_rings_only_the_most_recent_binding() -> None:
    async with shipped_edge(forking=Forking(ForkingMode.LATEST)) as edge:
        caller, callees = await setup(edge, 2)
        try:
            await dial(edge, caller)
            invite = await callees[1].ringing()
            assert invite.request_uri.port == callees[1].phone.port
            await no_more(callees[0].phone, "INVITE", 0.3)
            callees[1].reply(486)
            final, _ = await caller.final()
            assert final.status == 486
        finally:
            close(caller, *(c.phone for c in callees))


async def test_a_branch_that_never_answered_stops_being_retransmitted_once_the_call_is_answered() -> None:
    """RFC 3261 §9.1 forbids a CANCEL before a provisional response; the branch's INVITE is not sent again either
    (a phone that wakes up late must not start ringing a call answered elsewhere)."""
    async with shipped_edge() as edge:
        caller, callees = await setup(edge, 2)
        silent, answering = callees
        try:
            await dial(edge, caller)
            await silent.phone.request_of("INVITE")  # received, never answered
            await answering.ringing()
            answering.reply(200)
            final, _ = await caller.final()
            assert final.status == 200
            while not silent.phone.queue.empty():  # retransmissions sent before the answer
                silent.phone.queue.get_nowait()
            await no_more(silent.phone, "INVITE", 0.5)  # T1 is 20 ms here: several would have come
        finally:
            close(caller, *(c.phone for c in callees))


async def test_a_branch_that_loops_back_gets_482_and_the_others_still_ring() -> None:
    """RFC 3261 §16.3 step 4 across a fork: a contact naming this proxy itself brings its branch back here with our
    Via on it and the same Request-URI: that branch ends in 482, the real phone answers."""
    async with shipped_edge() as edge:
        port = edge.address("udp")[1]
        caller, (callee,) = await setup(edge, 1)
        loop_phone = await Phone.open("127.0.0.1")
        try:
            register = loop_phone.request("REGISTER", "sip:sip.local", "1002", "sip:1002@sip.local", call_id="loop-reg")
            register.headers.set("Contact", f"<sip:1002@127.0.0.1:{port}>")  # the proxy's own address
            loop_phone.send(register, ("127.0.0.1", port))
            challenge, _ = await loop_phone.final()
            loop_phone.send(loop_phone.answer_challenge(register, challenge, "1002"), ("127.0.0.1", port))
            assert (await loop_phone.final())[0].status == 200
            await dial(edge, caller)
            await callee.ringing()
            callee.reply(200)
            final, _ = await caller.final()
            assert final.status == 200 and edge.metrics.reject_counts.get("loop_detected", 0) >= 1
        finally:
            close(caller, callee.phone, loop_phone)


async def test_a_contact_that_is_gone_ends_its_branch_at_once() -> None:
    """RFC 3261 §18.4: the ICMP port unreachable for a branch's INVITE is a transport error: with a stale binding
    (nothing listens there) and a phone that answers 486, the caller gets the 486 in well under Timer B (32 s with
    RFC timers, used here)."""
    async with shipped_edge(timers=TimerConfig()) as edge:
        caller, (callee,) = await setup(edge, 1)
        gone = await Phone.open("127.0.0.1")
        port = edge.address("udp")[1]
        try:
            assert (await gone.register("1002", ("127.0.0.1", port))).status == 200
            gone.close()  # its port is closed now: the binding is stale
            started = asyncio.get_running_loop().time()
            await dial(edge, caller)
            await callee.ringing()
            callee.reply(486)
            final, _ = await caller.final(timeout=10)
            assert final.status == 486
            assert asyncio.get_running_loop().time() - started < 5
            assert edge.metrics.reject_counts.get("unreachable", 0) >= 1
        finally:
            close(caller, callee.phone)
