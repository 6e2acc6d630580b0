"""In-dialog requests are routed without authentication only with our dialog token (no open relay)."""

from __future__ import annotations

from test_connect_support import Harness, sip, to_message_request

from routr_ray.processors.connect import NEXT_HOP_KEY
from routr_ray.processors.sdk import is_drop
from routr_ray.sip import parse
from routr_ray.sip.message import Request

CALLER = ("10.0.0.5", 5060, "UDP")
CALLEE = ("10.0.0.6", 5060, "UDP")
PREMIUM = "sip:+19005550100@198.51.100.7"


def in_dialog(method: str, ruri: str, *, from_: str, to: str, call_id: str, routes: list[str], cseq: int = 2,
              via: str = "SIP/2.0/UDP 10.0.0.5:5060") -> Request:
    lines = [f"{method} {ruri} SIP/2.0", f"Via: {via};branch=z9hG4bKdlg{cseq}{method};rport", "Max-Forwards: 70",
             f"From: {from_}", f"To: {to}", f"Call-ID: {call_id}", f"CSeq: {cseq} {method}"]
    lines += [f"Route: {r}" for r in routes]
    lines += ["Content-Length: 0", "", ""]
    msg = parse("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


async def established(h: Harness, caller_transport: str = "UDP") -> Request:
    """1002 registered, 1001's authenticated INVITE forwarded: the request the callee receives."""
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=CALLEE)
    sender = (CALLER[0], CALLER[1], caller_transport)
    req = sip("INVITE", "sip:1002@sip.local", from_="sip:1001@sip.local", to="sip:1002@sip.local",
              contact="<sip:1001@10.0.0.5:5060>", via=f"SIP/2.0/{caller_transport} 10.0.0.5:5060")
    out, _ = await h.authed(req, "1001", "1234", sender)
    assert isinstance(out, Request) and out.method == "INVITE"
    return out


def caller_bye(invite: Request, route_uris: list[str], method: str = "BYE") -> Request:
    assert invite.from_ is not None
    return in_dialog(method, "sip:1002@10.0.0.6:5060", from_=f"<sip:1001@sip.local>;tag={invite.from_.tag}",
                     to="<sip:1002@sip.local>;tag=callee1", call_id=invite.call_id or "",
                     routes=[f"<{u}>" for u in reversed(route_uris)])  # RFC 3261 §12.1.2: UAC reverses


def callee_bye(invite: Request, route_uris: list[str]) -> Request:
    assert invite.from_ is not None
    return in_dialog("BYE", "sip:1001@10.0.0.5:5060", from_="<sip:1002@sip.local>;tag=callee1",
                     to=f"<sip:1001@sip.local>;tag={invite.from_.tag}", call_id=invite.call_id or "",
                     routes=[f"<{u}>" for u in route_uris], via="SIP/2.0/UDP 10.0.0.6:5060")  # §12.1.1: in order


# ---- forged in-dialog requests ------------------------------------------------------------------

async def test_forged_in_dialog_invite_to_a_premium_number_is_not_relayed() -> None:
    h = Harness()
    forged = in_dialog("INVITE", PREMIUM, from_="<sip:attacker@evil.example>;tag=a1", to=f"<{PREMIUM}>;tag=x1",
                       call_id="forged-1", routes=["<sip:10.0.0.1:5060;lr>"], via="SIP/2.0/UDP 192.0.2.66:5060")
    resp = await h.answer(forged, ("192.0.2.66", 5060, "UDP"))
    assert resp.status == 403


async def test_forged_in_dialog_invite_claiming_an_agent_is_challenged() -> None:
    h = Harness()
    forged = in_dialog("INVITE", PREMIUM, from_="<sip:1001@sip.local>;tag=a1", to=f"<{PREMIUM}>;tag=x1",
                       call_id="forged-2", routes=["<sip:10.0.0.1:5060;transport=udp;lr>"])
    resp = await h.answer(forged)
    assert resp.status == 407  # routed as an initial request: authentication first


async def test_forged_or_foreign_token_is_refused() -> None:
    h = Harness()
    invite = await established(h)
    route = str(invite.record_routes[0].uri)
    # without a valid token the BYE is an initial request: its From (an agent of ours) is challenged first,
    # so nothing is forwarded on the strength of the Route alone
    bogus = caller_bye(invite, [route.replace("rrk=", "rrk=X")])
    assert (await h.answer(bogus)).status == 407
    other_call = caller_bye(invite, [route])
    other_call.headers.set("Call-ID", "another-call")  # a token is only good for its own dialog
    assert (await h.answer(other_call)).status == 407


async def test_forged_bye_and_ack_are_refused() -> None:
    h = Harness()
    bye = in_dialog("BYE", "sip:victim@192.0.2.1", from_="<sip:x@y.example>;tag=a", to="<sip:z@w.example>;tag=b",
                    call_id="forged-3", routes=["<sip:10.0.0.1:5060;transport=udp;lr>"])
    assert (await h.answer(bye)).status == 403
    ack = in_dialog("ACK", PREMIUM, from_="<sip:1001@sip.local>;tag=a", to=f"<{PREMIUM}>;tag=b",
                    call_id="forged-4", routes=["<sip:10.0.0.1:5060;transport=udp;lr>"])
    assert is_drop(await h.processor.process(to_message_request(ack)))


# ---- genuine dialogs ------------------------------------------------------------------------------

async def test_genuine_bye_from_the_caller_follows_the_route_set() -> None:
    h = Harness()
    invite = await established(h)
    routes = [str(r.uri) for r in invite.record_routes]
    assert len(routes) == 1 and ";rrk=" in routes[0]
    out, resp = await h.send(caller_bye(invite, routes), CALLER)
    assert isinstance(out, Request) and out.method == "BYE" and out.uri == "sip:1002@10.0.0.6:5060"
    assert out.routes == [] and "X-Call-Direction" not in out.headers
    assert resp.metadata[NEXT_HOP_KEY] == "sip:10.0.0.6:5060;transport=udp"


async def test_genuine_bye_from_the_callee_follows_the_route_set() -> None:
    h = Harness()
    invite = await established(h)
    out, resp = await h.send(callee_bye(invite, [str(r.uri) for r in invite.record_routes]), CALLEE)
    assert isinstance(out, Request) and out.method == "BYE" and out.uri == "sip:1001@10.0.0.5:5060"
    assert resp.metadata[NEXT_HOP_KEY] == "sip:10.0.0.5:5060;transport=udp"


async def test_double_record_route_carries_the_token_in_both_entries() -> None:
    h = Harness()
    invite = await established(h, caller_transport="TCP")  # TCP caller, UDP callee: r2=on
    routes = [str(r.uri) for r in invite.record_routes]
    assert len(routes) == 2 and all(";r2=on" in r and ";rrk=" in r for r in routes)
    out, _ = await h.send(callee_bye(invite, routes), CALLEE)
    assert isinstance(out, Request) and out.method == "BYE" and out.routes == []
    out, _ = await h.send(caller_bye(invite, routes), (CALLER[0], CALLER[1], "TCP"))
    assert isinstance(out, Request) and out.method == "BYE" and out.routes == []


async def test_genuine_ack_passes() -> None:
    h = Harness()
    invite = await established(h)
    ack = caller_bye(invite, [str(r.uri) for r in invite.record_routes], method="ACK")
    out, resp = await h.send(ack, CALLER)
    assert isinstance(out, Request) and out.method == "ACK" and out.uri == "sip:1002@10.0.0.6:5060"
    assert resp.metadata[NEXT_HOP_KEY] == "sip:10.0.0.6:5060;transport=udp"
