"""Connect routing decision table: every direction and failure status, through ConnectProcessor.process."""

from __future__ import annotations

import pytest
from test_connect_support import Harness, authorize, net, record_route_texts, sip, to_message_request

from routr_ray.processors.connect import (
    DIRECTION_KEY,
    FAILOVER_KEY,
    NEXT_HOP_FLOW_KEY,
    NEXT_HOP_KEY,
    FailureTracker,
)
from routr_ray.processors.sdk import is_drop
from routr_ray.sip.message import Request, Response

CALLER = ("10.0.0.5", 5060, "UDP")


def invite(ruri: str, *, from_: str = "sip:1001@sip.local", to: str | None = None, method: str = "INVITE",
           extra: tuple[str, ...] = (), via: str = "SIP/2.0/UDP 10.0.0.5:5060", call_id: str | None = None
           ) -> Request:
    return sip(method, ruri, from_=from_, to=to or ruri, contact="<sip:caller@10.0.0.5:5060>", extra=extra,
               via=via, call_id=call_id)


async def call(h: Harness, req: Request, user: str = "1001", password: str = "1234", sender=CALLER):  # type: ignore[no-untyped-def]
    out, resp = await h.authed(req, user, password, sender)
    return out, resp


# ---- agent-to-agent -----------------------------------------------------------------------------

async def test_agent_to_agent_reaches_the_most_recent_binding() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    h.clock.now += 1
    await h.register("1002", "<sip:1002@10.0.0.9:5080>", sender=("10.0.0.9", 5080, "UDP"))
    out, resp = await call(h, invite("sip:1002@sip.local"))
    assert isinstance(out, Request)
    assert out.uri == "sip:1002@10.0.0.9:5080"
    assert out.headers.get("X-Call-Direction") == "agent-to-agent"
    assert out.max_forwards == 69
    assert "Proxy-Authorization" not in out.headers and "Authorization" not in out.headers
    assert out.via[0].host == "10.0.0.1" and out.via[0].branch is None and len(out.via) == 2
    assert record_route_texts(out) == ["sip:10.0.0.1:5060;transport=udp;lr"]
    assert resp.metadata[NEXT_HOP_KEY] == "sip:10.0.0.9:5080;transport=udp"
    assert resp.metadata[DIRECTION_KEY] == "agent-to-agent"


async def test_invite_challenge_is_407_proxy_authenticate() -> None:
    h = Harness()
    resp = await h.answer(invite("sip:1002@sip.local"))
    assert resp.status == 407
    assert 'realm="sip.local"' in (resp.headers.get("Proxy-Authenticate") or "")


async def test_always_401_option() -> None:
    h = Harness(always_401=True)
    resp = await h.answer(invite("sip:1002@sip.local"))
    assert resp.status == 401 and resp.headers.get("WWW-Authenticate")


async def test_authorization_header_is_accepted_for_invite_too() -> None:
    h = Harness(always_401=True)
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    out, _ = await call(h, invite("sip:1002@sip.local"))
    assert isinstance(out, Request) and out.uri == "sip:1002@10.0.0.6:5060"


async def test_callee_not_registered_is_480() -> None:
    h = Harness()
    out, _ = await call(h, invite("sip:1002@sip.local"))
    assert isinstance(out, Response) and out.status == 480


async def test_unknown_user_in_the_domain_is_404() -> None:
    h = Harness()
    out, _ = await call(h, invite("sip:4444@sip.local"))
    assert isinstance(out, Response) and out.status == 404


async def test_call_into_another_domain_is_403() -> None:
    h = Harness()
    out, _ = await call(h, invite("sip:2001@other.local"))
    assert isinstance(out, Response) and out.status == 403


async def test_message_is_routed_like_invite_without_record_route() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    out, _ = await call(h, invite("sip:1002@sip.local", method="MESSAGE"))
    assert isinstance(out, Request) and out.method == "MESSAGE" and out.uri == "sip:1002@10.0.0.6:5060"
    assert out.record_routes == []


async def test_flow_binding_goes_to_the_source_over_the_flow() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@abcd.invalid;transport=ws>", sender=("10.0.0.6", 61000, "WS"),
                     via="SIP/2.0/WS abcd.invalid")
    out, resp = await call(h, invite("sip:1002@sip.local"))
    assert isinstance(out, Request)
    assert out.uri == "sip:1002@abcd.invalid;transport=ws"  # the Contact, as RFC 5626 wants
    assert resp.metadata[NEXT_HOP_KEY] == "sip:10.0.0.6:61000;transport=ws"
    assert resp.metadata[NEXT_HOP_FLOW_KEY] == "true"
    # UDP caller, WS callee: bridged, so two Record-Routes with r2=on
    assert record_route_texts(out) == [
        "sip:10.0.0.1:5062;transport=ws;r2=on;lr", "sip:10.0.0.1:5060;transport=udp;r2=on;lr"]


async def test_private_contact_behind_nat_is_a_flow() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@192.168.1.30:5060>", sender=("10.0.0.99", 40123, "UDP"),
                     via="SIP/2.0/UDP 192.168.1.30:5060")
    out, resp = await call(h, invite("sip:1002@sip.local"))
    assert isinstance(out, Request)
    assert resp.metadata[NEXT_HOP_KEY] == "sip:10.0.0.99:40123;transport=udp"


# ---- agent-to-peer ------------------------------------------------------------------------------

async def test_agent_to_peer_uses_the_peer_aor_with_balancing() -> None:
    h = Harness()
    await h.register("asterisk", "<sip:asterisk@10.0.0.20:5060>", password="secret",
                     sender=("10.0.0.20", 5060, "UDP"), extra=("X-Session-Count: 5",))
    await h.register("asterisk", "<sip:asterisk@10.0.0.21:5060>", password="secret",
                     sender=("10.0.0.21", 5060, "UDP"), extra=("X-Session-Count: 1",))
    out, _ = await call(h, invite("sip:conference@sip.local"))
    assert isinstance(out, Request)
    assert out.uri == "sip:asterisk@10.0.0.21:5060"  # least sessions
    assert out.headers.get("X-Call-Direction") == "agent-to-peer"


async def test_agent_to_peer_is_authenticated() -> None:
    h = Harness()
    resp = await h.answer(invite("sip:conference@sip.local"))
    assert resp.status == 407


# ---- agent-to-pstn ------------------------------------------------------------------------------

async def test_agent_to_pstn_through_egress_policy_trunk_priority_and_privacy() -> None:
    h = Harness()
    req = invite("sip:+15551234567@sip.local", extra=("P-Asserted-Identity: <sip:evil@x>",))
    req.headers.set("From", '"John" <sip:1001@sip.local>;tag=abc')
    out, resp = await call(h, req)
    assert isinstance(out, Request)
    # enabled URIs by priority (10 before 20), then weight; the disabled one is skipped
    assert out.uri == "sip:+15551234567@primary.provider.net:5060;transport=tcp"
    assert resp.metadata[FAILOVER_KEY] == "sip:+15551234567@sip.provider.net:5070"
    assert resp.metadata[NEXT_HOP_KEY] == "sip:primary.provider.net:5060;transport=tcp"
    assert out.headers.get("X-Call-Direction") == "agent-to-pstn"
    # agent 1001 is PRIVATE: RFC 3323 Privacy: id and an anonymous From, the DID asserted to the trunk
    assert out.headers.get("Privacy") == "id"
    assert out.headers.get_all("P-Asserted-Identity") == ["<sip:+17066041487@primary.provider.net;user=phone>"]
    assert "privacy=full" in (out.headers.get("Remote-Party-ID") or "")
    assert out.from_ is not None and str(out.from_.uri) == "sip:anonymous@anonymous.invalid"
    assert out.from_.tag == "abc"


async def test_a_trunk_with_outbound_credentials_hands_them_to_the_edgeport() -> None:
    """The EdgePort answers the trunk's 401/407 with them (routr-ray.gateway-auth, Routr's X-Gateway-Auth); a
    trunk without outbound credentials sends none."""
    import base64

    from routr_ray.edge.directives import GATEWAY_AUTH_KEY, read_directive

    h = Harness()
    out, resp = await call(h, invite("sip:+15551234567@sip.local"))
    assert isinstance(out, Request)
    assert base64.b64decode(resp.metadata[GATEWAY_AUTH_KEY]) == b"pbx-1:trunkpw"
    assert read_directive(dict(resp.metadata)).gateway_auth == ("pbx-1", "trunkpw")
    assert "X-Gateway-Auth" not in out.headers and "trunkpw" not in bytes(out).decode()


async def test_trunk_credentials_go_only_with_an_authorised_invite() -> None:
    from routr_ray.edge.directives import GATEWAY_AUTH_KEY

    h = Harness()
    for method in ("MESSAGE", "OPTIONS", "SUBSCRIBE"):
        out, resp = await call(h, invite("sip:+15551234567@sip.local", method=method))
        assert isinstance(out, Request) and out.headers.get("X-Call-Direction") == "agent-to-pstn", method
        assert GATEWAY_AUTH_KEY not in resp.metadata, method
    unauthenticated = await h.answer(invite("sip:+15551234567@sip.local"))
    assert unauthenticated.status == 407


async def test_credentials_of_another_agent_are_refused() -> None:
    h = Harness()
    out, _ = await call(h, invite("sip:1002@sip.local"), user="1002")  # From 1001, credentials of 1002
    assert isinstance(out, Response) and out.status == 407


async def test_agent_to_pstn_not_private_keeps_from() -> None:
    h = Harness()
    req = invite("tel:+15551234567", from_="sip:1002@sip.local", to="sip:+15551234567@sip.local")
    out, _ = await call(h, req, user="1002")
    assert isinstance(out, Request)
    assert out.uri == "sip:+15551234567@primary.provider.net:5060;transport=tcp"
    assert out.headers.get("Privacy") == "none"
    assert out.from_ is not None and str(out.from_.uri) == "sip:1002@sip.local"


async def test_no_egress_policy_is_403_and_foreign_hosts_are_not_relayed() -> None:
    h = Harness()
    out, _ = await call(h, invite("sip:bob@elsewhere.example"))
    assert isinstance(out, Response) and out.status == 403


# ---- from-pstn ----------------------------------------------------------------------------------

TRUNK_SOURCE = ("198.51.100.7", 5060, "UDP")


async def test_from_pstn_reaches_the_aor_link_with_extra_headers() -> None:
    h = Harness()
    await h.register("1001", "<sip:1001@10.0.0.5:5060>")
    req = invite("sip:+17066041487@trunk01.provider.net", from_="sip:+15550001111@provider.net",
                 via="SIP/2.0/UDP 198.51.100.7:5060")
    out, _ = await h.send(req, TRUNK_SOURCE)
    assert isinstance(out, Request)
    assert out.uri == "sip:1001@10.0.0.5:5060"
    assert out.headers.get("X-Call-Direction") == "from-pstn"
    assert out.headers.get("X-Extra") == "yes"


async def test_from_pstn_with_tel_user_without_plus() -> None:
    h = Harness()
    await h.register("1001", "<sip:1001@10.0.0.5:5060>")
    req = invite("sip:17066041487@trunk01.provider.net", from_="sip:+15550001111@provider.net")
    out, _ = await h.send(req, TRUNK_SOURCE)
    assert isinstance(out, Request) and out.uri == "sip:1001@10.0.0.5:5060"


async def test_from_pstn_outside_trunk_acl_is_403() -> None:
    h = Harness()
    await h.register("1001", "<sip:1001@10.0.0.5:5060>")
    req = invite("sip:+17066041487@trunk01.provider.net", from_="sip:+15550001111@provider.net")
    resp = await h.answer(req, ("8.8.8.8", 5060, "UDP"))
    assert resp.status == 403


async def test_from_pstn_unknown_number_is_404() -> None:
    h = Harness()
    req = invite("sip:+19999999999@trunk01.provider.net", from_="sip:+15550001111@provider.net")
    resp = await h.answer(req, TRUNK_SOURCE)
    assert resp.status == 404


async def test_from_pstn_number_of_another_trunk_is_403() -> None:
    h = Harness()
    req = invite("sip:+17066041489@trunk01.provider.net", from_="sip:+15550001111@provider.net")
    resp = await h.answer(req, TRUNK_SOURCE)
    assert resp.status == 403


async def test_from_pstn_with_inbound_credentials_is_challenged() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    req = invite("sip:+17066041489@trunk02.provider.net", from_="sip:+15550001111@provider.net")
    first = await h.answer(req, ("8.8.4.4", 5060, "UDP"))
    assert first.status == 407 and 'realm="trunk02.provider.net"' in first.headers.get("Proxy-Authenticate")
    out, _ = await h.send(authorize(req, first, "provider", "pw"), ("8.8.4.4", 5060, "UDP"))
    assert isinstance(out, Request) and out.uri == "sip:1002@10.0.0.6:5060"


async def test_from_pstn_session_affinity_header_pins_the_peer() -> None:
    h = Harness()
    for host in ("10.0.0.20", "10.0.0.21"):
        await h.register("asterisk", f"<sip:asterisk@{host}:5060>", password="secret", sender=(host, 5060, "UDP"))
    targets = set()
    for _ in range(4):
        req = invite("sip:+17066041488@trunk01.provider.net", from_="sip:+15550001111@provider.net",
                     extra=("X-Room-Id: room-7",))
        out, _ = await h.send(req, TRUNK_SOURCE)
        assert isinstance(out, Request)
        targets.add(out.uri)
    assert len(targets) == 1


# ---- peers --------------------------------------------------------------------------------------

PEER_SOURCE = ("10.0.0.20", 5060, "UDP")


async def test_peer_to_pstn_needs_x_dod_number() -> None:
    h = Harness()
    req = invite("sip:+15551234567@sip.local", from_="sip:asterisk@10.0.0.20")
    out, _ = await call(h, req, "asterisk", "secret", PEER_SOURCE)
    assert isinstance(out, Response) and out.status == 400


async def test_peer_to_pstn_unknown_dod_number_is_404() -> None:
    h = Harness()
    req = invite("sip:+15551234567@sip.local", from_="sip:asterisk@10.0.0.20", extra=("X-DOD-Number: +1999",))
    out, _ = await call(h, req, "asterisk", "secret", PEER_SOURCE)
    assert isinstance(out, Response) and out.status == 404


async def test_peer_to_pstn_with_dod_number() -> None:
    h = Harness()
    req = invite("sip:+15551234567@sip.local", from_="sip:asterisk@10.0.0.20",
                 extra=("X-DOD-Number: +17066041487",))
    out, _ = await call(h, req, "asterisk", "secret", PEER_SOURCE)
    assert isinstance(out, Request)
    assert out.uri == "sip:+15551234567@primary.provider.net:5060;transport=tcp"
    assert out.headers.get("X-Call-Direction") == "peer-to-pstn"
    assert "X-DOD-Number" not in out.headers


async def test_peer_to_agent_is_routed() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    req = invite("sip:1002@sip.local", from_="sip:asterisk@10.0.0.20")
    out, _ = await call(h, req, "asterisk", "secret", PEER_SOURCE)
    assert isinstance(out, Request) and out.uri == "sip:1002@10.0.0.6:5060"
    assert out.headers.get("X-Call-Direction") == "peer-to-agent"


async def test_peer_with_allow_acl_and_no_credentials_is_admitted_by_address_only() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    req = invite("sip:1002@sip.local", from_="sip:media@10.0.0.50")
    out, _ = await h.send(req, ("10.0.0.50", 5060, "UDP"))
    assert isinstance(out, Request) and out.uri == "sip:1002@10.0.0.6:5060"
    resp = await h.answer(req, ("10.0.0.51", 5060, "UDP"))
    assert resp.status == 403


# ---- in-dialog, CANCEL, responses ---------------------------------------------------------------

async def test_in_dialog_bye_follows_the_route_set_without_challenge() -> None:
    h = Harness()
    tokens = h.processor.dialogs
    token = tokens.issue("call-bye", "f-caller", caller=[tokens.hop_id("10.0.0.5", 5060)],
                         callee=[tokens.hop_id("10.0.0.6", 5060)])
    bye = sip("BYE", "sip:1002@10.0.0.6:5060", from_="sip:1001@sip.local", to="sip:1002@sip.local", to_tag="t1",
              call_id="call-bye", extra=(f"Route: <sip:10.0.0.1:5060;transport=udp;rrk={token};lr>",))
    bye.headers.set("From", "<sip:1001@sip.local>;tag=f-caller")
    out, resp = await h.send(bye)
    assert isinstance(out, Request) and out.method == "BYE"
    assert out.uri == "sip:1002@10.0.0.6:5060" and out.routes == []
    assert out.max_forwards == 69 and out.via[0].host == "10.0.0.1"
    assert resp.metadata[NEXT_HOP_KEY] == "sip:10.0.0.6:5060;transport=udp"


async def test_in_dialog_request_not_routed_through_us_is_refused() -> None:
    h = Harness()
    bye = sip("BYE", "sip:victim@192.0.2.1", from_="sip:x@y", to="sip:z@w", to_tag="t1")
    resp = await h.answer(bye)
    assert resp.status == 403


async def test_ack_that_cannot_be_routed_is_dropped_not_answered() -> None:
    h = Harness()
    ack = sip("ACK", "sip:victim@192.0.2.1", from_="sip:x@y", to="sip:z@w", to_tag="t1")
    resp = await h.processor.process(to_message_request(ack))
    assert is_drop(resp)


async def test_cancel_is_answered_481_never_routed() -> None:
    """The EdgePort answers CANCEL hop by hop (RFC 3261 §16.10); one reaching Connect matches no transaction of
    ours. (Until issue 14 it was routed like an INVITE without authentication, to a trunk with its credentials.)"""
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    for ruri in ("sip:1002@sip.local", "sip:+15551234567@sip.local", "sip:+17066041487@trunk01.provider.net"):
        out, resp = await h.send(invite(ruri, method="CANCEL"))
        assert isinstance(out, Response) and out.status == 481, ruri
        assert not any(key.startswith("routr-ray.") for key in resp.metadata), dict(resp.metadata)


async def test_response_loses_our_top_via() -> None:
    h = Harness()
    resp = Response(180, "Ringing")
    for name, value in (("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKedge;rport"),
                        ("Via", "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK1"),
                        ("From", "<sip:1001@sip.local>;tag=a"), ("To", "<sip:1002@sip.local>;tag=b"),
                        ("Call-ID", "c1"), ("CSeq", "1 INVITE"), ("Contact", "<sip:1002@x.invalid;transport=ws>"),
                        ("Content-Length", "0")):
        resp.headers.add(name, value)
    out, _ = await h.send(resp, ("10.0.0.6", 61000, "WS"))
    assert isinstance(out, Response) and out.status == 180
    assert [v.host for v in out.via] == ["10.0.0.5"]
    assert str(out.contacts[0].uri) == "sip:1002@10.0.0.6:61000;transport=ws"


# ---- never an open relay, OPTIONS, bans ---------------------------------------------------------

@pytest.mark.parametrize("ruri, from_", [
    ("sip:bob@elsewhere.example", "sip:alice@attacker.example"),
    ("sip:1002@sip.local", "sip:alice@attacker.example"),
])
async def test_strangers_are_refused(ruri: str, from_: str) -> None:
    h = Harness()
    resp = await h.answer(invite(ruri, from_=from_))
    assert resp.status == 403


async def test_options_to_the_server_is_answered() -> None:
    h = Harness()
    resp = await h.answer(invite("sip:sip.local", method="OPTIONS"))
    assert resp.status == 200 and "INVITE" in (resp.headers.get("Allow") or "")


async def test_repeated_failures_ban_the_source() -> None:
    h = Harness(failures=FailureTracker(max_failures=3, window=60, trusted=net("10.0.0.99/32")))
    req = invite("sip:1002@sip.local")
    for _ in range(3):
        first = await h.answer(req)
        assert first.status == 407
        assert (await h.answer(authorize(req, first, "1001", "bad"))).status == 407
    banned = await h.answer(req)
    assert banned.status == 403 and "failed" in banned.reason
    good = authorize(req, first, "1001", "1234")
    assert (await h.answer(good)).status == 403  # even the right password, while banned
    assert (await h.answer(req, ("10.0.0.77", 5060, "UDP"))).status == 407  # other sources unaffected


async def test_trusted_sources_are_never_banned() -> None:
    h = Harness(failures=FailureTracker(max_failures=1, window=60, trusted=net("10.0.0.0/24")))
    req = invite("sip:1002@sip.local")
    for _ in range(3):
        first = await h.answer(req)
        assert first.status == 407
        assert (await h.answer(authorize(req, first, "1001", "bad"))).status == 407


async def test_a_strict_router_before_us_put_our_record_route_in_the_request_uri() -> None:
    """RFC 3261 §16.4: the Request-URI is our Record-Route URI (with its token); the last Route value is the real
    Request-URI: it is put back, removed from the Route set, and the request goes there."""
    h = Harness()
    tokens = h.processor.dialogs
    token = tokens.issue("call-strict", "f-caller", caller=[tokens.hop_id("10.0.0.5", 5060)],
                         callee=[tokens.hop_id("10.0.0.6", 5060)])
    bye = sip("BYE", f"sip:10.0.0.1:5060;transport=udp;rrk={token}", from_="sip:1001@sip.local",
              to="sip:1002@sip.local", to_tag="t1", call_id="call-strict",
              extra=("Route: <sip:1002@10.0.0.6:5060>",))
    bye.headers.set("From", "<sip:1001@sip.local>;tag=f-caller")
    out, resp = await h.send(bye)
    assert isinstance(out, Request) and out.uri == "sip:1002@10.0.0.6:5060" and out.routes == []
    assert resp.metadata[NEXT_HOP_KEY] == "sip:10.0.0.6:5060;transport=udp"


async def test_a_strict_router_after_us_gets_the_next_route_as_request_uri() -> None:
    """RFC 3261 §16.6 step 6: the next hop has no `lr`: the Request-URI goes to the end of the Route set and
    that hop becomes the Request-URI."""
    h = Harness()
    tokens = h.processor.dialogs
    token = tokens.issue("call-strict2", "f-caller", caller=[tokens.hop_id("10.0.0.5", 5060)],
                         callee=[tokens.hop_id("10.0.0.7", 5060)])
    bye = sip("BYE", "sip:1002@10.0.0.6:5060", from_="sip:1001@sip.local", to="sip:1002@sip.local", to_tag="t1",
              call_id="call-strict2",
              extra=(f"Route: <sip:10.0.0.1:5060;transport=udp;rrk={token};lr>, <sip:10.0.0.7:5060>",))
    bye.headers.set("From", "<sip:1001@sip.local>;tag=f-caller")
    out, resp = await h.send(bye)
    assert isinstance(out, Request) and out.uri == "sip:10.0.0.7:5060"
    assert [str(na.uri) for na in out.routes] == ["sip:1002@10.0.0.6:5060"]
    assert resp.metadata[NEXT_HOP_KEY] == "sip:10.0.0.7:5060;transport=udp"
