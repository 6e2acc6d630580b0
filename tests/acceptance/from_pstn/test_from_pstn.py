"""On config/ as shipped, a call from the trunk's address to Number +17066041488 reaches the Peer its aorLink names
(sip:conference@sip.local, a SIPp UAS registered as Peer `asterisk`)."""

from __future__ import annotations

from tests.support.acceptance import CONTACT_PORTS


def test_trunk_call_to_number_reaches_peer(sipp) -> None:  # type: ignore[no-untyped-def]
    peer_port = CONTACT_PORTS["asterisk"]
    sipp.assert_ok(sipp.register("asterisk"))
    peer = sipp.uas("from_pstn/peer_uas.xml", peer_port, keys={"me": "asterisk"})
    trunk = sipp.run("from_pstn/trunk_uac.xml", service="+17066041488")
    answered = peer.result()
    sipp.assert_ok(trunk, answered)
    (invite,) = answered.received("INVITE")
    assert invite.startswith(f"INVITE sip:asterisk@127.0.0.1:{peer_port} SIP/2.0")
    assert "X-Call-Direction: from-pstn" in invite
    assert answered.received("BYE")
