"""Agent 1001 calls agent 1002 (a SIPp UAS registered through the proxy) and cancels after 180 Ringing:
200 to the CANCEL and 487 Request Terminated to the INVITE reach the caller; the callee gets the proxy's own
CANCEL (RFC 3261 §16.10: same Request-URI, Call-ID, From, To and CSeq number as the INVITE it forwarded, one
Via with that INVITE's branch), answers it, and its 487 is acknowledged by the proxy (§17.1.1.3)."""

from __future__ import annotations

import re

from tests.support.acceptance import CONTACT_PORTS


def _header(message: str, name: str) -> list[str]:
    return [line.split(":", 1)[1].strip() for line in message.splitlines()
            if re.match(rf"{name}\s*:", line, flags=re.IGNORECASE)]


def _branch(via: str) -> str:
    match = re.search(r";branch=([^;,\s]+)", via)
    assert match, via
    return match.group(1)


def test_cancel_after_ringing(sipp) -> None:  # type: ignore[no-untyped-def]
    sipp.assert_ok(sipp.register("1002"))
    callee = sipp.uas("cancel/uas_cancelled.xml", CONTACT_PORTS["1002"], keys={"me": "1002"})
    caller = sipp.run("cancel/uac_cancel.xml", service="1002", keys={"caller": "1001"},
                      auth=("1001", sipp.password("1001")))
    cancelled = callee.result()
    sipp.assert_ok(caller, cancelled)

    (cancel_ok,) = [r for r in caller.received("SIP/2.0 200") if re.search(r"CSeq:\s*2 CANCEL", r)]
    (terminated,) = caller.received("SIP/2.0 487")
    assert re.search(r"CSeq:\s*2 INVITE", terminated)
    assert len(caller.received("SIP/2.0 2")) == 1, cancel_ok  # the CANCEL's 200 only: no 2xx to the INVITE

    (invite,) = cancelled.received("INVITE")
    (cancel,) = cancelled.received("CANCEL")
    assert cancel.split(" ", 2)[1] == invite.split(" ", 2)[1]  # §9.1: the INVITE's Request-URI
    for name in ("Call-ID", "From", "To"):
        assert _header(cancel, name) == _header(invite, name), name
    (cseq,) = _header(cancel, "CSeq")
    assert cseq.split()[0] == _header(invite, "CSeq")[0].split()[0]
    cancel_vias = _header(cancel, "Via")
    assert len(cancel_vias) == 1 and _branch(cancel_vias[0]) == _branch(_header(invite, "Via")[0])
    (ack,) = cancelled.received("ACK")  # the proxy acknowledges the 487 itself, once
    assert _branch(_header(ack, "Via")[0]) == _branch(_header(invite, "Via")[0])
