"""Digest in Connect against replay (issue 14 item 4): nonces bound to the source address, nonce-counts used once,
the digest `uri` bound to the Request-URI or the address the request arrived on, SHA-256 per Domain."""

from __future__ import annotations

import dataclasses

from test_connect_registrar import bindings
from test_connect_support import Harness, authorize, resources, sip

from routr_ray.sip.digest import DigestAlgorithm, compute_ha1, compute_response, parse_auth_params
from routr_ray.sip.message import Request

PHONE = ("10.0.0.5", 5060, "UDP")
ATTACKER = ("10.0.0.66", 5060, "UDP")


def register(contact: str, call_id: str, sender: tuple[str, int, str] = PHONE) -> Request:
    return sip("REGISTER", "sip:sip.local", from_="sip:1001@sip.local", to="sip:1001@sip.local", contact=contact,
               call_id=call_id, via=f"SIP/2.0/UDP {sender[0]}:{sender[1]}")


def with_authorization_of(req: Request, signed: Request) -> Request:
    out = req.copy()
    assert isinstance(out, Request)
    out.headers.set("Authorization", signed.headers.get("Authorization") or "")
    return out


async def phone_registers(h: Harness) -> Request:
    req = register("<sip:1001@10.0.0.5:5060>", "phone-reg")
    signed = authorize(req, await h.answer(req, PHONE), "1001", "1234")
    assert (await h.answer(signed, PHONE)).status == 200
    return signed


async def contacts(h: Harness) -> list[str]:
    return [r.contact_uri for r in await bindings(h, "sip:1001@sip.local")]


async def test_a_replayed_register_from_another_address_is_401_and_changes_nothing() -> None:
    h = Harness()
    signed = await phone_registers(h)
    replay = with_authorization_of(register("<sip:1001@10.0.0.66:5060>", "attacker-reg", ATTACKER), signed)
    resp = await h.answer(replay, ATTACKER)
    assert resp.status == 401
    assert await contacts(h) == ["sip:1001@10.0.0.5:5060"]


async def test_a_replayed_register_from_the_same_address_is_401_stale_and_changes_nothing() -> None:
    h = Harness()
    signed = await phone_registers(h)
    replay = with_authorization_of(register("<sip:1001@10.0.0.66:5060>", "attacker-reg"), signed)
    resp = await h.answer(replay, PHONE)
    assert resp.status == 401 and "stale=true" in (resp.headers.get("WWW-Authenticate") or "")
    assert await contacts(h) == ["sip:1001@10.0.0.5:5060"]
    # the phone itself answers the stale challenge at once, without its user
    again = register("<sip:1001@10.0.0.5:5060>", "phone-reg")
    again.headers.set("CSeq", "5 REGISTER")
    assert (await h.answer(authorize(again, resp, "1001", "1234"), PHONE)).status == 200


async def test_a_nonce_answered_from_another_address_counts_as_a_failure() -> None:
    h = Harness()
    req = register("<sip:1001@10.0.0.5:5060>", "moved")
    challenge = await h.answer(req, PHONE)
    resp = await h.answer(authorize(req, challenge, "1001", "1234"), ATTACKER)
    assert resp.status == 401 and "stale" not in (resp.headers.get("WWW-Authenticate") or "")
    assert len(h.processor.access.failures._sources[ATTACKER[0]].failures) == 1


async def test_the_digest_uri_must_be_the_request_uri_or_where_it_arrived() -> None:
    h = Harness()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    req = sip("INVITE", "sip:1002@sip.local", from_="sip:1001@sip.local", to="sip:1002@sip.local")
    for uri, accepted in (("sip:10.0.0.1:5060", True), ("sip:203.0.113.10", True), ("sip:198.51.100.1:5060", False),
                          ("sip:sip.local", False), ("sip:1002@10.0.0.1", False)):
        challenge = await h.answer(req)  # a fresh nonce each time: a count is good once
        signed = req.copy()
        assert isinstance(signed, Request)
        signed.uri = uri
        signed = authorize(signed, challenge, "1001", "1234")
        signed.uri = req.uri
        out, _ = await h.send(signed)
        assert isinstance(out, Request) is accepted, (uri, out)


def sha256_authorization(challenge_value: str, method: str, uri: str, user: str, password: str) -> str:
    params = parse_auth_params(challenge_value.split(" ", 1)[1])
    alg = DigestAlgorithm.SHA256
    ha1 = compute_ha1(alg, user, params["realm"], password)
    response = compute_response(alg, ha1=ha1, method=method, uri=uri, nonce=params["nonce"], qop="auth",
                                nc="00000001", cnonce="c0ffee")
    return (f'Digest username="{user}", realm="{params["realm"]}", nonce="{params["nonce"]}", uri="{uri}", '
            f'response="{response}", algorithm=SHA-256, qop=auth, nc=00000001, cnonce="c0ffee"')


async def test_sha256_is_switched_on_per_domain() -> None:
    base = resources()
    domains = tuple(dataclasses.replace(d, digest_algorithms=("SHA-256",)) if d.domain_uri == "other.local" else d
                    for d in base.domains)
    h = Harness(resources=dataclasses.replace(base, domains=domains))
    other = sip("REGISTER", "sip:other.local", from_="sip:2001@other.local", to="sip:2001@other.local",
                contact="<sip:2001@10.0.0.5>")
    challenge = await h.answer(other)
    values = challenge.headers.get_all("WWW-Authenticate")
    assert len(values) == 1 and "algorithm=SHA-256" in values[0]
    assert (await h.answer(authorize(other, challenge, "2001", "1234"))).status == 401  # an MD5 answer: refused
    signed = other.copy()
    assert isinstance(signed, Request)
    signed.headers.set("Authorization", sha256_authorization(values[0], "REGISTER", "sip:other.local", "2001", "1234"))
    signed.headers.set("CSeq", "2 REGISTER")
    assert (await h.answer(signed)).status == 200
    local = await h.answer(register("<sip:1001@10.0.0.5>", "md5-domain"))  # sip.local keeps the default
    assert [v for v in local.headers.get_all("WWW-Authenticate") if "algorithm=MD5" in v]
