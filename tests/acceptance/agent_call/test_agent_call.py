"""Agent 1001 calls agent 1002 through the proxy (INVITE with digest, 180, 200, ACK, BYE), with a SIPp UAS
registered as 1002; the BYE comes from the caller in one call and from the callee in the other. config/ as shipped:
the EdgePort listens on 0.0.0.0 and advertises the address the phones reach it on (issue 13)."""

from __future__ import annotations

import re

from tests.support.acceptance import CONTACT_PORTS


def _call(sipp, uac: str, uas: str):  # type: ignore[no-untyped-def]
    uas_port = CONTACT_PORTS["1002"]
    sipp.assert_ok(sipp.register("1002"))
    callee = sipp.uas(f"agent_call/{uas}", uas_port, keys={"me": "1002"})
    caller = sipp.run(f"agent_call/{uac}", service="1002", keys={"caller": "1001"},
                      auth=("1001", sipp.password("1001")))
    answered = callee.result()
    sipp.assert_ok(caller, answered)
    return caller, answered, uas_port


def test_call_between_agents_caller_hangs_up(sipp) -> None:  # type: ignore[no-untyped-def]
    caller, callee, uas_port = _call(sipp, "uac.xml", "uas.xml")
    (invite,) = callee.received("INVITE")
    assert invite.startswith(f"INVITE sip:1002@127.0.0.1:{uas_port} SIP/2.0")  # RURI = the registered Contact
    assert "Proxy-Authorization" not in invite and "Authorization:" not in invite
    assert "X-Call-Direction: agent-to-agent" in invite
    # our Via and Record-Route name 127.0.0.1, where both phones reach the wildcard EdgePort (never 0.0.0.0)
    assert re.search(r"^Via: SIP/2\.0/UDP 127\.0\.0\.1:25060;", invite, flags=re.MULTILINE), invite
    assert re.search(r"^Record-Route: <sip:127\.0\.0\.1:25060;transport=udp;", invite, flags=re.MULTILINE), invite
    assert "0.0.0.0" not in invite
    assert callee.received("BYE") and callee.received("ACK")
    assert caller.received("SIP/2.0 180")


def test_call_between_agents_callee_hangs_up(sipp) -> None:  # type: ignore[no-untyped-def]
    caller, callee, _ = _call(sipp, "uac_callee_hangs_up.xml", "uas_hangs_up.xml")
    (bye,) = caller.received("BYE")
    assert bye.startswith("BYE sip:1001@127.0.0.1:")
    assert callee.received("SIP/2.0 200")


def test_call_between_agents_over_tcp(sipp) -> None:  # type: ignore[no-untyped-def]
    """Both call legs on TCP (issue 13 "Done when"): the caller over TCP; the callee registered a Contact with
    `transport=tcp` and listens on TCP, so the proxy connects to it. Our Via and Record-Route name 127.0.0.1 with
    transport=tcp toward the callee."""
    sipp.assert_ok(sipp.register("1002", contact_transport="tcp"))
    try:
        callee = sipp.uas("agent_call/uas.xml", CONTACT_PORTS["1002"], keys={"me": "1002"}, transport="t1")
        caller = sipp.run("agent_call/uac.xml", transport="t1", service="1002", keys={"caller": "1001"},
                          auth=("1001", sipp.password("1001")))
        answered = callee.result()
    finally:  # a binding left behind would ring in the calls of later tests (forking)
        sipp.unregister("1002", f"<sip:1002@127.0.0.1:{CONTACT_PORTS['1002']};transport=tcp>")
    sipp.assert_ok(caller, answered)
    (invite,) = answered.received("INVITE")
    assert re.search(r"^Via: SIP/2\.0/TCP 127\.0\.0\.1:25060;", invite, flags=re.MULTILINE), invite
    assert re.search(r"^Record-Route: <sip:127\.0\.0\.1:25060;transport=tcp;", invite, flags=re.MULTILINE), invite
    assert "0.0.0.0" not in invite
