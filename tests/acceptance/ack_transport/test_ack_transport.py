"""Issue 13 item 5 through the whole server: agent 1001 calls 1002 with the ACKs Routr's own SIPp scenario sends,
an empty ``;transport=`` in their Request-URI and Contact. The ACK to the 407 is absorbed by the EdgePort, the
ACK to the 200 reaches the callee, and neither is ever answered (RFC 3261 §17.1.1.3, §17.2.1)."""

from __future__ import annotations

from tests.support.acceptance import CONTACT_PORTS


def test_acks_with_an_empty_transport_parameter_pass_and_are_never_answered(sipp) -> None:  # type: ignore[no-untyped-def]
    sipp.assert_ok(sipp.register("1002"))
    callee = sipp.uas("agent_call/uas.xml", CONTACT_PORTS["1002"], keys={"me": "1002"})
    caller = sipp.run("ack_transport/uac.xml", service="1002", keys={"caller": "1001"}, auth=("1001", sipp.password("1001")))
    answered = callee.result()
    sipp.assert_ok(caller, answered)
    (ack,) = answered.received("ACK")
    # the caller's Request-URI ([next_url]: the callee's Contact, with its own ;transport=UDP) plus the empty
    # parameter, passed through untouched
    request_line = ack.splitlines()[0]
    assert request_line.startswith(f"ACK sip:1002@127.0.0.1:{CONTACT_PORTS['1002']};"), request_line
    assert request_line.endswith(";transport= SIP/2.0"), request_line
    assert answered.received("BYE")
    # no answer to either ACK: the caller saw only answers to its INVITEs (100, 407, 180, 200) and its BYE (200)
    statuses = {line.split()[1] for line in caller.received("SIP/2.0 ")}
    assert statuses <= {"100", "407", "180", "200"}, statuses
