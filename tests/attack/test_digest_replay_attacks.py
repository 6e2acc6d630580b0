"""Digest replay on the wire (issue 14 item 4): a REGISTER Authorization sniffed from 1001's phone, replayed from
another address (and from the phone's own address) with a new Call-ID and Contact, gets 401 and the binding does
not change. In-process EdgePort + Connect on loopback (tests/attack/connect_stack.py)."""

from __future__ import annotations

import pytest

from tests.attack.connect_stack import DOMAIN, Phone, connect_stack

pytestmark = pytest.mark.timeout(30)


async def test_a_replayed_register_authorization_gets_401_and_changes_no_binding() -> None:
    async with connect_stack() as stack:
        phone = await Phone.open("1001", stack)
        sniffed = await phone.register()
        before = await stack.contacts("1001")
        assert before == [f"sip:1001@127.0.0.1:{phone.peer.port}"]
        attacker = await Phone.open("1001", stack, host="127.0.0.2")  # another address
        answer = await attacker.request("REGISTER", f"sip:{DOMAIN}", to=f"sip:1001@{DOMAIN}", call_id="hijack-1",
                                        authorization=sniffed)
        assert answer.status == 401
        # the same bytes from the phone's own address (a spoofed source on its path): the count was used
        same_place = await Phone.open("1001", stack)
        same_place.peer.close()
        same_place.peer = phone.peer
        replay = await same_place.request("REGISTER", f"sip:{DOMAIN}", to=f"sip:1001@{DOMAIN}", call_id="hijack-2",
                                          contact="<sip:1001@127.0.0.2:5999>", authorization=sniffed)
        assert replay.status == 401 and "stale=true" in (replay.headers.get("WWW-Authenticate") or "")
        assert await stack.contacts("1001") == before
        attacker.close(), phone.close()
