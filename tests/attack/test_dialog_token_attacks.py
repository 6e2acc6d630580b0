"""Dialog tokens on the wire (issue 14 item 2): after an authorised 1001 → 1002 call, requests that carry the
call's Call-ID, From tag and valid `rrk` token but go somewhere else are refused, and nothing reaches that
somewhere. In-process EdgePort + Connect on loopback (tests/attack/connect_stack.py)."""

from __future__ import annotations

import pytest

from tests.attack.connect_stack import (
    DOMAIN,
    PREMIUM,
    Phone,
    TcpPhone,
    answered_call,
    connect_stack,
    message,
    nothing_arrives,
)

pytestmark = pytest.mark.timeout(30)


async def test_retargeting_the_call_to_a_premium_number_through_the_trunk_is_403() -> None:
    async with connect_stack() as stack:
        caller, callee = await Phone.open("1001", stack), await Phone.open("1002", stack)
        await callee.register()
        call = await answered_call(caller, callee)
        premium = f"sip:{PREMIUM}@127.0.0.1:{stack.carrier.port}"
        for method in ("INVITE", "MESSAGE"):
            answer = await caller.request(method, premium, to=f"sip:1002@{DOMAIN}", call_id=call.call_id,
                                          from_tag=call.caller_tag, to_tag=call.callee_tag,
                                          routes=[*call.route_set, f"<{premium};lr>"])
            assert answer.status == 403, (method, answer)
            direct = await caller.request(method, premium, to=f"sip:1002@{DOMAIN}", call_id=call.call_id,
                                          from_tag=call.caller_tag, to_tag=call.callee_tag, routes=call.route_set)
            assert direct.status == 403, (method, direct)
        await nothing_arrives(stack.carrier)
        await nothing_arrives(callee.peer, 0.1)
        # the dialog itself still works: the genuine BYE reaches the callee
        caller.cseq += 1
        caller.send(message("BYE", callee.contact.strip("<>"), via=caller.via, from_=f"<{caller.uri}>;tag=caller",
                            to=f"<{callee.uri}>;tag=callee", call_id=call.call_id, cseq=caller.cseq,
                            routes=call.route_set))
        bye = await callee.peer.recv()
        assert bye.method == "BYE"  # type: ignore[union-attr]
        caller.close(), callee.close()


async def test_an_expired_token_is_refused() -> None:
    async with connect_stack() as stack:
        caller, callee = await Phone.open("1001", stack), await Phone.open("1002", stack)
        await callee.register()
        call = await answered_call(caller, callee)
        stack.clock.offset = 24 * 3600 + 60  # the dialog token lives 24 h
        answer = await caller.request("BYE", callee.contact.strip("<>"), to=callee.uri, call_id=call.call_id,
                                      from_tag=call.caller_tag, to_tag=call.callee_tag, routes=call.route_set)
        assert answer.status == 403 and "expired" in answer.reason
        await nothing_arrives(callee.peer)
        caller.close(), callee.close()


async def test_a_route_naming_another_clients_tcp_connection_writes_nothing_to_it() -> None:
    async with connect_stack() as stack:
        victim = await TcpPhone.register("1003", stack)
        caller, callee = await Phone.open("1001", stack), await Phone.open("1002", stack)
        await callee.register()
        call = await answered_call(caller, callee)
        flow = f"sip:127.0.0.1:{victim.port};transport=tcp"
        for method in ("INVITE", "MESSAGE", "NOTIFY"):
            answer = await caller.request(method, f"sip:1003@127.0.0.1:{victim.port};transport=tcp", to=callee.uri,
                                          call_id=call.call_id, from_tag=call.caller_tag, to_tag=call.callee_tag,
                                          routes=[*call.route_set, f"<{flow};lr>"])
            assert answer.status == 403, (method, answer)
        await victim.nothing_arrives()
        victim.close(), caller.close(), callee.close()
