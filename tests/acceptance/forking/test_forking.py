"""Forking on config/ as shipped (issue 16): 1002 registers three contacts (three SIPp UAS), a call from 1001
rings them all; RFC 3261 §16.6-16.7 decides what each side sees.

Every test starts and ends by removing all of 1002's bindings (`Contact: *`): a binding left behind would ring,
unanswered, in the calls of later tests.
"""

from __future__ import annotations

import re

import pytest

from tests.support.acceptance import Sipp

CONTACTS = (15091, 15092, 15093)


@pytest.fixture
def fresh_1002(sipp: Sipp):  # type: ignore[no-untyped-def]
    sipp.assert_ok(sipp.unregister("1002"))
    yield
    sipp.assert_ok(sipp.unregister("1002"))
    sipp.assert_ok(sipp.register("1002"))  # as the other tests expect it: one binding at CONTACT_PORTS["1002"]


def _register(sipp: Sipp, ports: tuple[int, ...] = CONTACTS, qs: tuple[float | None, ...] = ()) -> None:
    for index, port in enumerate(ports):
        sipp.assert_ok(sipp.register("1002", contact_port=port, q=qs[index] if index < len(qs) else None))


def _call(sipp: Sipp, uac: str):  # type: ignore[no-untyped-def]
    return sipp.run(uac, service="1002", keys={"caller": "1001"}, auth=("1001", sipp.password("1001")),
                    timeout_s=15)


def test_a_call_rings_every_contact_and_the_answer_cancels_the_others(sipp, fresh_1002) -> None:  # type: ignore[no-untyped-def]
    _register(sipp)
    ringing = [sipp.uas("cancel/uas_cancelled.xml", port, keys={"me": "1002"}) for port in (CONTACTS[0], CONTACTS[2])]
    answering = sipp.uas("forking/uas_answers_late.xml", CONTACTS[1], keys={"me": "1002"})
    caller = _call(sipp, "agent_call/uac.xml")
    answered, *cancelled = answering.result(), *(r.result() for r in ringing)
    sipp.assert_ok(caller, answered, *cancelled)
    assert len([m for m in caller.received("SIP/2.0 200") if re.search(r"CSeq:\s*\d+ INVITE", m)]) == 1
    for result in cancelled:
        (cancel,) = result.received("CANCEL")
        assert "Call completed elsewhere" in cancel
        assert not result.received("BYE")
    assert answered.received("BYE")  # the caller's BYE reaches only the answerer


def test_refusals_and_a_decline_end_the_fork_with_the_6xx(sipp, fresh_1002) -> None:  # type: ignore[no-untyped-def]
    """486 from one, 603 from another while the third rings: the third is cancelled at once and, once it has
    answered 487, the caller gets the 603 (§16.7 steps 5-6), never a 200."""
    _register(sipp)
    busy = sipp.uas("busy_decline/uas_busy.xml", CONTACTS[0], keys={"me": "1002"})
    decline = sipp.uas("busy_decline/uas_decline.xml", CONTACTS[1], keys={"me": "1002"})
    ringing = sipp.uas("cancel/uas_cancelled.xml", CONTACTS[2], keys={"me": "1002"})
    caller = _call(sipp, "busy_decline/uac_rejected.xml")
    results = [busy.result(), decline.result(), ringing.result()]
    sipp.assert_ok(caller, *results)
    assert caller.received("SIP/2.0 603") and not caller.received("SIP/2.0 486")
    assert not [m for m in caller.received("SIP/2.0 200") if re.search(r"CSeq:\s*\d+ INVITE", m)]
    assert results[2].received("CANCEL")


def test_higher_q_rings_first(sipp, fresh_1002) -> None:  # type: ignore[no-untyped-def]
    """q=1.0 rings first; q=0.5 only after it declines (RFC 3261 §16.6, decreasing q)."""
    _register(sipp, CONTACTS[:2], qs=(1.0, 0.5))
    busy = sipp.uas("busy_decline/uas_busy.xml", CONTACTS[0], keys={"me": "1002"})
    answering = sipp.uas("agent_call/uas.xml", CONTACTS[1], keys={"me": "1002"})
    caller = _call(sipp, "agent_call/uac.xml")
    refused, answered = busy.result(), answering.result()
    sipp.assert_ok(caller, refused, answered)
    assert len(refused.received("INVITE")) == 1 and len(answered.received("INVITE")) == 1
    # the q=0.5 contact's INVITE left after the q=1.0 one's 486 came back
    assert _timestamp(refused.messages, "SIP/2.0 486") <= _timestamp(answered.messages, "INVITE sip:")


def test_the_callers_cancel_reaches_every_contact_and_gets_one_487(sipp, fresh_1002) -> None:  # type: ignore[no-untyped-def]
    _register(sipp)
    ringing = [sipp.uas("cancel/uas_cancelled.xml", port, keys={"me": "1002"}) for port in CONTACTS]
    caller = _call(sipp, "cancel/uac_cancel.xml")
    results = [r.result() for r in ringing]
    sipp.assert_ok(caller, *results)
    assert len(caller.received("SIP/2.0 487")) == 1
    assert all(r.received("CANCEL") for r in results)


def _timestamp(messages: str, start: str) -> str:
    """The SIPp trace timestamp of the first message starting with `start` (they sort as text)."""
    blocks = re.split(r"^-{10,} (\S+ \S+)$", messages, flags=re.MULTILINE)
    for stamp, body in zip(blocks[1::2], blocks[2::2], strict=False):
        if re.search(rf"^\s*{re.escape(start)}", body.split("\n\n", 1)[-1].lstrip("\n"), flags=re.MULTILINE):
            return stamp
    raise AssertionError(f"no {start!r} in the trace")

