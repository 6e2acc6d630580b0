"""Agent 1001 dials a PSTN number on config/ as shipped: egress policy → number-01 → trunk-01, whose outbound URI
(127.0.0.1:5080, 25080 in the acceptance copy) is a SIPp UAS playing the provider. The INVITE has the trunk's host in its Request-URI and the DID as
P-Asserted-Identity (RFC 3325), and no credentials of the caller."""

from __future__ import annotations

from tests.support.acceptance import TRUNK_UAS_PORT


def test_agent_call_to_pstn_reaches_trunk(sipp) -> None:  # type: ignore[no-untyped-def]
    trunk = sipp.uas("to_pstn/trunk_uas.xml", TRUNK_UAS_PORT, keys={"me": "trunk01"})
    caller = sipp.run("agent_call/uac.xml", service="17065550100", keys={"caller": "1001"},
                      auth=("1001", sipp.password("1001")))
    answered = trunk.result()
    sipp.assert_ok(caller, answered)
    (invite,) = answered.received("INVITE")
    assert invite.startswith(f"INVITE sip:17065550100@127.0.0.1:{TRUNK_UAS_PORT} SIP/2.0")
    assert "P-Asserted-Identity: <sip:+17066041487@127.0.0.1;user=phone>" in invite
    assert "Privacy: id" in invite  # agent 1001 of config/ as shipped is `privacy: Private` (RFC 3323 §4.2)
    assert "X-Call-Direction: agent-to-pstn" in invite
    assert "Authorization" not in invite


def test_a_trunk_challenge_is_answered_with_the_trunks_credentials(sipp) -> None:  # type: ignore[no-untyped-def]
    """The provider challenges the INVITE: routr-ray ACKs the 401 and sends the INVITE again with CSeq + 1 and
    trunk-01's outbound credentials (trunk01/1234; the provider verifies them); the caller sees only its own CSeq,
    and its ACK reaches the provider with the provider's."""
    trunk = sipp.uas("to_pstn/trunk_auth_uas.xml", TRUNK_UAS_PORT, keys={"me": "trunk01"})
    caller = sipp.run("agent_call/uac.xml", service="17065550100", keys={"caller": "1001"},
                      auth=("1001", sipp.password("1001")))
    answered = trunk.result()
    sipp.assert_ok(caller, answered)
    first, second = answered.received("INVITE")
    assert "Authorization" not in first and "\nAuthorization: Digest " in second
    assert 'username="trunk01"' in second and 'realm="trunk01.provider.example"' in second
