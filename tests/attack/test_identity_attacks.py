"""Identity headers on the wire (issue 14 item 3, RFC 3325): a P-Asserted-Identity (or Remote-Party-ID,
P-Preferred-Identity) that agent 1001 writes never reaches 1002, neither in the INVITE nor in a re-INVITE of the
answered call. In-process EdgePort + Connect on loopback (tests/attack/connect_stack.py)."""

from __future__ import annotations

import pytest

from tests.attack.connect_stack import Phone, answered_call, connect_stack, message

pytestmark = pytest.mark.timeout(30)

SPOOFED = ['P-Asserted-Identity: "Bank" <sip:+18005550199@bank.example>',
           "Remote-Party-ID: <sip:+18005550199@bank.example>;party=calling;screen=yes",
           "P-Preferred-Identity: <sip:+18005550199@bank.example>"]
IDENTITY = ("P-Asserted-Identity", "Remote-Party-ID", "P-Preferred-Identity")


async def test_a_spoofed_asserted_identity_from_1001_never_reaches_1002() -> None:
    async with connect_stack() as stack:
        caller, callee = await Phone.open("1001", stack), await Phone.open("1002", stack)
        await callee.register()
        call = await answered_call(caller, callee, extra=SPOOFED)
        assert [n for n in IDENTITY if n in call.invite.headers] == []
        assert "bank.example" not in bytes(call.invite).decode()
        caller.cseq += 1
        caller.send(message("INVITE", callee.contact.strip("<>"), via=caller.via, from_=f"<{caller.uri}>;tag=caller",
                            to=f"<{callee.uri}>;tag=callee", call_id=call.call_id, cseq=caller.cseq,
                            contact=caller.contact, routes=call.route_set, extra=SPOOFED))
        reinvite = await callee.peer.recv()
        assert reinvite.method == "INVITE"  # type: ignore[union-attr]
        assert "bank.example" not in bytes(reinvite).decode()
        caller.close(), callee.close()
