"""Identity headers through Connect (RFC 3325 trust domain; issue 14 item 3): what a client writes is not an
identity. Peers/Trunks with `trustAssertedIdentity` (peer-02 "media" and trunk-01 in test_connect_support) keep
theirs; everyone else loses P-Asserted-Identity / Remote-Party-ID; P-Preferred-Identity never leaves Connect."""

from __future__ import annotations

from test_connect_dialogs import CALLEE, CALLER, callee_bye, caller_bye, established, in_dialog
from test_connect_support import Harness, sip

from routr_ray.processors.connect.headers import identity_headers_to_remove, privacy_asks_for_id
from routr_ray.sip.message import Request

SPOOFED = ('P-Asserted-Identity: "CEO" <sip:ceo@sip.local>', "Remote-Party-ID: <sip:ceo@sip.local>;party=calling",
           "P-Preferred-Identity: <sip:ceo@sip.local>")
IDENTITY = ("P-Asserted-Identity", "Remote-Party-ID", "P-Preferred-Identity")
TRUNK01 = ("198.51.100.7", 5060, "UDP")


def identity_of(out: Request) -> dict[str, list[str]]:
    return {name: out.headers.get_all(name) for name in IDENTITY if out.headers.get_all(name)}


async def test_an_agent_cannot_assert_an_identity_to_another_agent() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=CALLEE)
    req = sip("INVITE", "sip:1002@sip.local", from_="sip:1001@sip.local", to="sip:1002@sip.local",
              contact="<sip:1001@10.0.0.5:5060>", extra=(*SPOOFED, "Privacy: none"))
    out, _ = await h.authed(req, "1001", "1234", CALLER)
    assert isinstance(out, Request) and out.uri == "sip:1002@10.0.0.6:5060"
    assert identity_of(out) == {}
    assert out.headers.get("Privacy") == "none"  # a privacy request is not an identity: it stays


async def test_an_agent_cannot_assert_an_identity_to_a_trusted_peer() -> None:
    h = Harness()
    await h.register("asterisk", "<sip:asterisk@10.0.0.20:5060>", password="secret", sender=("10.0.0.20", 5060, "UDP"))
    req = sip("MESSAGE", "sip:conference@sip.local", from_="sip:1001@sip.local", to="sip:conference@sip.local",
              extra=SPOOFED)
    out, _ = await h.authed(req, "1001", "1234", CALLER)
    assert isinstance(out, Request) and identity_of(out) == {}


async def test_an_untrusted_peer_loses_its_identity_headers_a_trusted_one_keeps_them() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=CALLEE)
    untrusted = sip("INVITE", "sip:1002@sip.local", from_="sip:asterisk@10.0.0.20", to="sip:1002@sip.local",
                    extra=SPOOFED)
    out, _ = await h.authed(untrusted, "asterisk", "secret", ("10.0.0.20", 5060, "UDP"))
    assert isinstance(out, Request) and out.headers.get("X-Call-Direction") == "peer-to-agent"
    assert identity_of(out) == {}
    trusted = sip("INVITE", "sip:1002@sip.local", from_="sip:media@10.0.0.50", to="sip:1002@sip.local",
                  extra=SPOOFED)
    out, _ = await h.send(trusted, ("10.0.0.50", 5060, "UDP"))  # peer-02: ACL-only, trustAssertedIdentity
    assert isinstance(out, Request)
    assert identity_of(out) == {"P-Asserted-Identity": ['"CEO" <sip:ceo@sip.local>'],
                                "Remote-Party-ID": ["<sip:ceo@sip.local>;party=calling"]}


async def test_privacy_id_hides_a_trusted_identity_from_an_agent() -> None:
    """RFC 3325 §7: with `Privacy: id` the asserted identity is not given to a party outside the trust domain."""
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=CALLEE)
    req = sip("INVITE", "sip:1002@sip.local", from_="sip:media@10.0.0.50", to="sip:1002@sip.local",
              extra=(*SPOOFED, "Privacy: id"))
    out, _ = await h.send(req, ("10.0.0.50", 5060, "UDP"))
    assert isinstance(out, Request) and identity_of(out) == {} and out.headers.get("Privacy") == "id"


async def test_from_pstn_identity_is_kept_only_for_a_trusted_trunk_that_proved_it() -> None:
    h = Harness()
    await h.register("1001", "<sip:1001@10.0.0.5:5060>")
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=CALLEE)
    trusted = sip("INVITE", "sip:+17066041487@trunk01.provider.net", from_="sip:+15550001111@provider.net",
                  to="sip:+17066041487@trunk01.provider.net", extra=SPOOFED)
    out, _ = await h.send(trusted, TRUNK01)  # trunk-01: trusted, its ACL's allow list admits the source
    assert isinstance(out, Request) and out.headers.get("X-Call-Direction") == "from-pstn"
    assert set(identity_of(out)) == {"P-Asserted-Identity", "Remote-Party-ID"}
    untrusted = sip("INVITE", "sip:+17066041489@trunk02.provider.net", from_="sip:+15550001111@provider.net",
                    to="sip:+17066041489@trunk02.provider.net", extra=SPOOFED)
    out, _ = await h.authed(untrusted, "provider", "pw", ("8.8.4.4", 5060, "UDP"))  # trunk-02: not trusted
    assert isinstance(out, Request) and out.headers.get("X-Call-Direction") == "from-pstn"
    assert identity_of(out) == {}


async def test_toward_the_pstn_connect_asserts_the_number() -> None:
    h = Harness()
    req = sip("INVITE", "sip:+15551234567@sip.local", from_="sip:1002@sip.local", to="sip:+15551234567@sip.local",
              extra=SPOOFED)
    out, _ = await h.authed(req, "1002", "1234", CALLER)
    assert isinstance(out, Request)
    assert identity_of(out)["P-Asserted-Identity"] == ["<sip:+17066041487@primary.provider.net;user=phone>"]
    assert "P-Preferred-Identity" not in out.headers


async def test_in_dialog_requests_of_an_untrusted_party_lose_identity_headers() -> None:
    h = Harness()
    invite = await established(h)
    routes = [str(r.uri) for r in invite.record_routes]
    reinvite = caller_bye(invite, routes, method="INVITE")
    for line in SPOOFED:
        name, _, value = line.partition(": ")
        reinvite.headers.add(name, value)
    out, _ = await h.send(reinvite, CALLER)
    assert isinstance(out, Request) and out.method == "INVITE" and identity_of(out) == {}
    update = callee_bye(invite, routes)
    update.headers.add("P-Asserted-Identity", "<sip:ceo@sip.local>")
    out, _ = await h.send(update, CALLEE)
    assert isinstance(out, Request) and identity_of(out) == {}


async def test_in_dialog_requests_of_a_trusted_peer_keep_identity_headers() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=CALLEE)
    req = sip("INVITE", "sip:1002@sip.local", from_="sip:media@10.0.0.50", to="sip:1002@sip.local",
              contact="<sip:media@10.0.0.50:5060>")
    invite, _ = await h.send(req, ("10.0.0.50", 5060, "UDP"))
    assert isinstance(invite, Request) and invite.from_ is not None
    routes = [str(r.uri) for r in invite.record_routes]
    update = in_dialog("UPDATE", "sip:1002@10.0.0.6:5060", from_=f"<sip:media@10.0.0.50>;tag={invite.from_.tag}",
                       to="<sip:1002@sip.local>;tag=c1", call_id=invite.call_id or "",
                       routes=[f"<{u}>" for u in reversed(routes)], via="SIP/2.0/UDP 10.0.0.50:5060")
    update.headers.add("P-Asserted-Identity", "<sip:+15550001111@sip.local>")
    out, _ = await h.send(update, ("10.0.0.50", 5060, "UDP"))
    assert isinstance(out, Request) and out.headers.get("P-Asserted-Identity") == "<sip:+15550001111@sip.local>"
    # the agent's answer in the other direction is not trusted
    back = in_dialog("UPDATE", "sip:media@10.0.0.50:5060", from_="<sip:1002@sip.local>;tag=c1",
                     to=f"<sip:media@10.0.0.50>;tag={invite.from_.tag}", call_id=invite.call_id or "",
                     routes=[f"<{u}>" for u in routes], via="SIP/2.0/UDP 10.0.0.6:5060")
    back.headers.add("P-Asserted-Identity", "<sip:ceo@sip.local>")
    out, _ = await h.send(back, CALLEE)
    assert isinstance(out, Request) and "P-Asserted-Identity" not in out.headers


def test_identity_rules() -> None:
    req = sip("INVITE", "sip:a@b", from_="sip:c@d", to="sip:a@b", extra=("Privacy: header;id",))
    assert identity_headers_to_remove(req, sender_trusted=True, receiver_trusted=True) == ["P-Preferred-Identity"]
    assert set(identity_headers_to_remove(req, sender_trusted=True, receiver_trusted=False)) == set(IDENTITY)
    assert set(identity_headers_to_remove(req, sender_trusted=False, receiver_trusted=True)) == set(IDENTITY)
    assert privacy_asks_for_id(["none", "session; id"]) and not privacy_asks_for_id(["none", "session"])
