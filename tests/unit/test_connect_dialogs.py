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
    # (until issue 14 a token that did not verify made the request an initial one, challenged with 407)
    h = Harness()
    invite = await established(h)
    route = str(invite.record_routes[0].uri)
    bogus = caller_bye(invite, [route.replace("rrk=", "rrk=X")])
    assert (await h.answer(bogus)).status == 403
    other_call = caller_bye(invite, [route])
    other_call.headers.set("Call-ID", "another-call")  # a token is only good for its own dialog
    assert (await h.answer(other_call)).status == 403
    other_tag = caller_bye(invite, [route])
    other_tag.headers.set("From", "<sip:1001@sip.local>;tag=another-tag")
    assert (await h.answer(other_tag)).status == 403
    untokened = caller_bye(invite, [route.split(";rrk=")[0] + ";lr"])
    assert (await h.answer(untokened)).status == 407  # no token at all: an initial request, authenticated


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


# ---- the token binds the next hops and an expiry (issue 14 item 2) ---------------------------------

def route_set(invite: Request) -> list[str]:
    return [str(r.uri) for r in invite.record_routes]


async def test_retargeting_an_authorised_dialog_to_a_premium_number_is_403() -> None:
    """1001's call to 1002 is authorised; the same Call-ID and From tag with a Route to the trunk (premium number,
    no egress policy consulted) or a Request-URI at the trunk is not part of that dialog."""
    h = Harness()
    invite = await established(h)
    ours = route_set(invite)
    for method in ("INVITE", "MESSAGE", "BYE"):
        via_route = caller_bye(invite, ours, method=method)
        via_route.headers.add("Route", "<sip:+19005550100@primary.provider.net:5060;transport=tcp;lr>")
        resp = await h.answer(via_route)
        assert resp.status == 403 and "party of this dialog" in resp.reason, method
        direct = caller_bye(invite, ours, method=method)
        direct.uri = PREMIUM  # no Route after ours: the Request-URI is the next hop
        assert (await h.answer(direct)).status == 403, method


async def test_a_route_naming_another_clients_flow_is_403() -> None:
    h = Harness()
    await h.register("1003", "<sip:1003@10.0.0.77:5060;transport=tcp>", sender=("10.0.0.77", 43999, "TCP"),
                     via="SIP/2.0/TCP 10.0.0.77:5060")
    invite = await established(h)
    into_flow = caller_bye(invite, route_set(invite), method="INVITE")
    into_flow.headers.add("Route", "<sip:10.0.0.77:43999;transport=tcp;lr>")
    assert (await h.answer(into_flow)).status == 403
    by_uri = caller_bye(invite, route_set(invite), method="MESSAGE")
    by_uri.uri = "sip:1003@10.0.0.77:43999;transport=tcp"
    assert (await h.answer(by_uri)).status == 403
    # the callee's own address stays allowed, as the genuine BYE shows
    out, _ = await h.send(caller_bye(invite, route_set(invite)), CALLER)
    assert isinstance(out, Request) and out.method == "BYE"


async def test_a_caller_cannot_make_its_own_contact_a_next_hop_elsewhere() -> None:
    """The caller writes its Contact at the trunk, then sends as if it were the callee (To tag = its own tag) to
    that Contact: a client-written address away from its source is not a hop of the dialog."""
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=CALLEE)
    req = sip("INVITE", "sip:1002@sip.local", from_="sip:1001@sip.local", to="sip:1002@sip.local",
              contact="<sip:+19005550100@198.51.100.7:5060>")
    invite, _ = await h.authed(req, "1001", "1234", CALLER)
    assert isinstance(invite, Request) and invite.from_ is not None
    forged = in_dialog("INVITE", "sip:+19005550100@198.51.100.7:5060", from_="<sip:1002@sip.local>;tag=fresh",
                       to=f"<sip:1001@sip.local>;tag={invite.from_.tag}", call_id=invite.call_id or "",
                       routes=[f"<{u}>" for u in route_set(invite)])
    assert (await h.answer(forged, CALLER)).status == 403


async def test_an_expired_token_is_refused() -> None:
    h = Harness()
    invite = await established(h)
    h.clock.now += 24 * 3600 - 60  # a long call: still fine
    out, _ = await h.send(caller_bye(invite, route_set(invite)), CALLER)
    assert isinstance(out, Request) and out.method == "BYE"
    h.clock.now += 120
    resp = await h.answer(caller_bye(invite, route_set(invite)), CALLER)
    assert resp.status == 403 and "expired" in resp.reason
    ack = caller_bye(invite, route_set(invite), method="ACK")
    assert is_drop(await h.processor.process(to_message_request(ack, CALLER)))


async def test_a_dialog_with_a_trunk_admits_the_carriers_addresses_only() -> None:
    """The carrier's 2xx Contact often names another address than the host we sent the INVITE to: the trunk's
    outbound hosts and the networks of its inbound ACL (198.51.100.0/24 here) are the trunk's side."""
    h = Harness()
    req = sip("INVITE", "sip:+15551234567@sip.local", from_="sip:1002@sip.local", to="sip:+15551234567@sip.local",
              contact="<sip:1002@10.0.0.5:5060>")
    invite, _ = await h.authed(req, "1002", "1234", CALLER)
    assert isinstance(invite, Request) and invite.headers.get("X-Call-Direction") == "agent-to-pstn"
    assert invite.from_ is not None
    ours = route_set(invite)

    def bye(ruri: str) -> Request:
        assert invite.from_ is not None
        return in_dialog("BYE", ruri, from_=f"<sip:1002@sip.local>;tag={invite.from_.tag}",
                         to="<sip:+15551234567@sip.local>;tag=carrier", call_id=invite.call_id or "",
                         routes=[f"<{u}>" for u in reversed(ours)])

    for ruri in ("sip:+15551234567@198.51.100.9:5060", "sip:+15551234567@sip.provider.net:5070",
                 "sip:+15551234567@primary.provider.net;transport=tcp"):
        out, resp = await h.send(bye(ruri), CALLER)
        assert isinstance(out, Request) and out.method == "BYE", ruri
        assert "routr-ray.gateway-auth" not in resp.metadata  # credentials only go with an authorised INVITE
    assert (await h.answer(bye("sip:+15551234567@203.0.113.99:5060"), CALLER)).status == 403


async def test_a_call_from_the_pstn_lets_the_callee_answer_the_carrier() -> None:
    h = Harness()
    await h.register("1001", "<sip:1001@10.0.0.5:5060>")
    req = sip("INVITE", "sip:+17066041487@trunk01.provider.net", from_="sip:+15550001111@provider.net",
              to="sip:+17066041487@trunk01.provider.net", contact="<sip:+15550001111@198.51.100.7:5060>",
              via="SIP/2.0/UDP 198.51.100.7:5060")
    invite, _ = await h.send(req, ("198.51.100.7", 5060, "UDP"))
    assert isinstance(invite, Request) and invite.from_ is not None

    def callee_request(ruri: str) -> Request:
        assert invite.from_ is not None
        return in_dialog("BYE", ruri, from_="<sip:1001@sip.local>;tag=agent", to=f"<sip:+15550001111@provider.net>;"
                         f"tag={invite.from_.tag}", call_id=invite.call_id or "",
                         routes=[f"<{u}>" for u in route_set(invite)], via="SIP/2.0/UDP 10.0.0.5:5060")

    for ruri in ("sip:+15550001111@198.51.100.7:5060", "sip:+15550001111@198.51.100.8:5080"):
        out, _ = await h.send(callee_request(ruri), ("10.0.0.5", 5060, "UDP"))
        assert isinstance(out, Request) and out.method == "BYE", ruri
    assert (await h.answer(callee_request(PREMIUM.replace("198.51.100.7", "203.0.113.7")),
                           ("10.0.0.5", 5060, "UDP"))).status == 403


def test_tokens_are_compact_url_safe_and_tamper_evident() -> None:
    import re

    from routr_ray.processors.connect.dialogs import MAX_HOPS, DialogTokens, TokenStatus

    clock = [1_700_000_000.0]
    tokens = DialogTokens(b"k" * 32, clock=lambda: clock[0])
    forks = [tokens.hop_id(f"10.0.1.{i}", 5060) for i in range(MAX_HOPS)]
    token = tokens.issue("cid", "ftag", caller=[tokens.hop_id("10.0.0.5", 5060)] * 3, callee=forks,
                         caller_trusted=True)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", token) and len(token) < 220  # 16 forks
    two_party = tokens.issue("cid", "ftag", caller=forks[:2], callee=forks[2:4])
    assert len(two_party) < 80
    full = tokens.issue("cid", "ftag", caller=forks, callee=forks)
    assert len(full) < 400  # the most a Record-Route can carry
    req = in_dialog("BYE", "sip:x@10.0.1.3", from_="<sip:a@b>;tag=ftag", to="<sip:c@d>;tag=t2", call_id="cid",
                    routes=[])
    read = tokens.read(req, token)
    assert read.status is TokenStatus.VALID and read.from_caller and not read.from_callee
    assert read.allowed_hops() == frozenset(forks)  # every forking target fits
    assert read.sender_trusted and not read.receiver_trusted
    for i in range(len(token)):
        flipped = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
        assert tokens.read(req, flipped).status is not TokenStatus.VALID, i
    assert DialogTokens(b"x" * 32).read(req, token).status is TokenStatus.INVALID  # another key
    clock[0] += 24 * 3600 + 1
    assert tokens.read(req, token).status is TokenStatus.EXPIRED
    assert tokens.read(req, "") is not None and tokens.read(req, "A" * 5000).status is TokenStatus.INVALID


async def test_an_unproven_call_to_a_number_gives_no_way_to_its_trunk() -> None:
    """Anyone may call a Number dialled at our domain (a trunk without inbound ACL or credentials): such a caller is
    not the trunk, so the callee's side of that dialog does not include the trunk's addresses."""
    import dataclasses

    from test_connect_support import resources

    from routr_ray.config.resources import Number, Trunk, TrunkOutbound, TrunkUri

    base = resources()
    trunk = Trunk("trunk-03", "Open", None, TrunkOutbound((TrunkUri("203.0.113.50", 5060, "udp"),)))
    number = Number("number-04", "DID 4", "tel:+17066041490", "trunk-03", "sip:1002@sip.local")
    h = Harness(resources=dataclasses.replace(base, trunks=(*base.trunks, trunk), numbers=(*base.numbers, number)))
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=CALLEE)
    stranger = ("192.0.2.77", 5060, "UDP")
    req = sip("INVITE", "sip:+17066041490@sip.local", from_="sip:someone@elsewhere.example",
              to="sip:+17066041490@sip.local", contact="<sip:someone@192.0.2.77:5060>",
              via="SIP/2.0/UDP 192.0.2.77:5060")
    invite, _ = await h.send(req, stranger)
    assert isinstance(invite, Request) and invite.headers.get("X-Call-Direction") == "from-pstn"
    assert invite.from_ is not None

    def callee_request(ruri: str) -> Request:
        assert invite.from_ is not None
        return in_dialog("INVITE", ruri, from_="<sip:1002@sip.local>;tag=agent",
                         to=f"<sip:someone@elsewhere.example>;tag={invite.from_.tag}", call_id=invite.call_id or "",
                         routes=[f"<{u}>" for u in route_set(invite)], via="SIP/2.0/UDP 10.0.0.6:5060")

    assert (await h.answer(callee_request("sip:+19005550100@203.0.113.50:5060"), CALLEE)).status == 403
    out, _ = await h.send(callee_request("sip:someone@192.0.2.77:5060"), CALLEE)  # the real caller: fine
    assert isinstance(out, Request)
