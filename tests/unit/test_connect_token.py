"""X-Connect-Token web agents (issue 20 item 6, routr.md §3.2 step 3, §3.3): the verifier (RS256/ES256 keys,
expiry, audience, lifetime, the allowed methods, AOR and domain), a token REGISTER through ConnectProcessor, and the
calls of a web agent (INVITE, MESSAGE with its token instead of digest) and to it."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from test_connect_support import KEY, Harness, resources, sip

from routr_ray.location import LocationService
from routr_ray.location.local_client import LocalLocationClient
from routr_ray.processors.connect import ConnectProcessor, FailureTracker
from routr_ray.processors.connect.connect_token import ConnectTokenVerifier, TokenRejected
from routr_ray.proto.gen import location_pb2
from routr_ray.sip.message import Request, Response

RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())


def public_pem(key: object) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,  # type: ignore[attr-defined]
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def token(key: object = EC, algorithm: str = "ES256", **claims: object) -> str:
    payload = {"aor": "sip:web-1@sip.local", "domain": "sip.local", "allowedMethods": ["REGISTER", "INVITE"],
               "exp": int(time.time()) + 600, "aud": "routr", **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=algorithm)  # type: ignore[arg-type]


VERIFIER = ConnectTokenVerifier([public_pem(RSA), public_pem(EC)], audience="routr")


def test_valid_tokens_of_either_algorithm() -> None:
    claims = VERIFIER.check(token(RSA, "RS256"), "REGISTER", "sip:web-1@SIP.local")
    assert claims.aor == "sip:web-1@sip.local" and claims.allowed_methods == {"REGISTER", "INVITE"}
    assert VERIFIER.check(token(maxContacts=2), "invite", "sip:web-1@sip.local").max_contacts == 2


@pytest.mark.parametrize(("bad", "reason"), [
    (lambda: token(OTHER), "signature"),
    (lambda: token(exp=int(time.time()) - 60), "expired"),
    (lambda: token(exp=None), "exp"),
    (lambda: token(aud="someone-else"), "audience"),
    (lambda: token(aud=None), "aud"),
    (lambda: token(iat=int(time.time()) + 3600), "not yet valid"),
    (lambda: token(nbf=int(time.time()) + 3600), "not yet valid"),
    (lambda: token(allowedMethods=["INVITE"]), "allowedMethods"),
    (lambda: token(aor="sip:web-2@sip.local"), "aor"),
    (lambda: token(aor="sip:web-1@other.example", domain="other.example"), "aor"),
    (lambda: jwt.encode({"aor": "sip:web-1@sip.local", "domain": "sip.local", "allowedMethods": ["REGISTER"],
                         "exp": int(time.time()) + 60, "aud": "routr"}, "secret", algorithm="HS256"), "algorithm"),
    (lambda: "not.a.jwt", ""),
])
def test_rejected_tokens(bad: object, reason: str) -> None:
    with pytest.raises(TokenRejected) as caught:
        VERIFIER.check(bad(), "REGISTER", "sip:web-1@sip.local")  # type: ignore[operator]
    assert reason.lower() in str(caught.value).lower()


def test_only_asymmetric_algorithms() -> None:
    with pytest.raises(ValueError, match="RS256 or ES256"):
        ConnectTokenVerifier([public_pem(EC)], algorithms=("HS256",))


def harness_with_tokens(verifier: ConnectTokenVerifier = VERIFIER, failures: FailureTracker | None = None) -> Harness:
    h = Harness()
    h.processor = ConnectProcessor(resources(), LocalLocationClient([h.service]), nonce_key=KEY, clock=h.clock,
                                   connect_tokens=verifier, failures=failures)
    h.clock.now = time.time()
    return h


async def test_a_token_registers_a_web_agent_without_digest() -> None:
    h = harness_with_tokens()
    h.clock.now = time.time()
    req = sip("REGISTER", "sip:sip.local", from_="sip:web-1@sip.local", to="sip:web-1@sip.local",
              contact="<sip:web-1@df7jal23ls0d.invalid;transport=ws>", extra=(f"X-Connect-Token: {token()}",))
    resp = await h.answer(req)
    assert resp.status == 200
    found = await h.location.find_routes(location_pb2.FindRoutesRequest(aor="sip:web-1@sip.local"))
    assert len(found.routes) == 1


async def test_a_bad_token_is_403_and_registers_nothing() -> None:
    h = harness_with_tokens()
    h.clock.now = time.time()
    cases = [(token(OTHER), "sip:web-1@sip.local"),  # signed by a key we do not know
             (token(), "sip:1001@sip.local"),  # a token for web-1 used for another AOR
             (token(domain="nowhere.example", aor="sip:web-1@nowhere.example"), "sip:web-1@nowhere.example")]
    for bad, to in cases:  # the last one: a domain that is not ours
        req = sip("REGISTER", "sip:sip.local", from_="sip:web-1@sip.local", to=to,
                  contact="<sip:web-1@10.0.0.9>", extra=(f"X-Connect-Token: {bad}",))
        resp = await h.answer(req)
        assert resp.status == 403 and "WWW-Authenticate" not in str(resp.headers)
    for aor in ("sip:web-1@sip.local", "sip:1001@sip.local"):
        assert not (await h.location.find_routes(location_pb2.FindRoutesRequest(aor=aor))).routes


async def test_without_a_verifier_the_header_is_ignored() -> None:
    h = Harness()
    req = sip("REGISTER", "sip:sip.local", from_="sip:1001@sip.local", to="sip:1001@sip.local",
              contact="<sip:1001@10.0.0.9>", extra=(f"X-Connect-Token: {token(aor='sip:1001@sip.local')}",))
    assert (await h.answer(req)).status == 401  # digest as always
    assert isinstance(LocationService, type)


def test_max_lifetime_needs_iat_and_bounds_the_token() -> None:
    verifier = ConnectTokenVerifier([public_pem(EC)], audience="routr", max_lifetime=600)
    now = int(time.time())
    assert verifier.check(token(iat=now, exp=now + 600), "REGISTER", "sip:web-1@sip.local")
    for bad, reason in ((token(exp=now + 60), "iat"), (token(iat=now, exp=now + 3600), "maxLifetime")):
        with pytest.raises(TokenRejected, match=reason):
            verifier.check(bad, "REGISTER", "sip:web-1@sip.local")


def test_keys_are_public_keys_only() -> None:
    private = EC.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    with pytest.raises(ValueError, match="private key"):
        ConnectTokenVerifier([private])
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ValueError, match="1024 bits"):
        ConnectTokenVerifier([public_pem(weak)])
    both = ConnectTokenVerifier([public_pem(RSA) + public_pem(EC)], audience="routr")  # one text, two keys
    assert both.check(token(RSA, "RS256"), "REGISTER", "sip:web-1@sip.local")
    assert both.check(token(EC, "ES256"), "REGISTER", "sip:web-1@sip.local")


def test_from_options_is_what_a_replica_builds() -> None:
    verifier = ConnectTokenVerifier.from_options({"publicKeys": [public_pem(EC).decode()], "audience": "routr",
                                                  "algorithms": ["ES256"], "leewaySeconds": 0,
                                                  "maxLifetimeSeconds": None})
    assert verifier.check(token(), "INVITE", "sip:web-1@sip.local").aor == "sip:web-1@sip.local"
    with pytest.raises(TokenRejected, match="algorithm"):
        verifier.check(token(RSA, "RS256"), "INVITE", "sip:web-1@sip.local")


# ---- calls of and to web agents --------------------------------------------------------------------------


def web_invite(ruri: str, *, user: str = "web-1", tokens: tuple[str, ...] | None = None, method: str = "INVITE",
               **claims: object) -> Request:
    values = tokens if tokens is not None else (token(aor=f"sip:{user}@sip.local", **claims),)
    return sip(method, ruri, from_=f"sip:{user}@sip.local", to=ruri,
               contact=f"<sip:{user}@df7jal23ls0d.invalid;transport=ws>",
               extra=tuple(f"X-Connect-Token: {v}" for v in values))


async def register_web_agent(h: Harness, user: str, sender: tuple[str, int, str]) -> None:
    req = sip("REGISTER", "sip:sip.local", from_=f"sip:{user}@sip.local", to=f"sip:{user}@sip.local",
              via=f"SIP/2.0/WS {sender[0]}:{sender[1]}", contact=f"<sip:{user}@{user}.invalid;transport=ws>",
              extra=(f"X-Connect-Token: {token(aor=f'sip:{user}@sip.local')}",))
    assert (await h.answer(req, sender)).status == 200


async def test_a_web_agent_calls_an_agent_with_its_token_and_the_token_goes_no_further() -> None:
    h = harness_with_tokens()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    out, resp = await h.send(web_invite("sip:1002@sip.local"), ("10.0.0.7", 40000, "WS"))
    assert isinstance(out, Request), out
    assert out.uri == "sip:1002@10.0.0.6:5060"
    assert out.headers.get("X-Call-Direction") == "agent-to-agent"
    assert "X-Connect-Token" not in out.headers  # a bearer credential: the callee could act as web-1 with it
    assert h.processor.metrics.auth.get("token") == 1


async def test_a_web_agent_calls_another_web_agent_and_an_agent_calls_a_web_agent() -> None:
    h = harness_with_tokens()
    await register_web_agent(h, "web-2", ("10.0.0.8", 40002, "WS"))
    out, resp = await h.send(web_invite("sip:web-2@sip.local"), ("10.0.0.7", 40000, "WS"))
    assert isinstance(out, Request), out
    assert out.uri == "sip:web-2@web-2.invalid;transport=ws"
    assert resp.metadata["routr-ray.next-hop"] == "sip:10.0.0.8:40002;transport=ws"
    # a digest agent reaches the web agent by its AOR (no Agent resource, before any egress policy)
    call = sip("INVITE", "sip:web-2@sip.local", from_="sip:1001@sip.local", to="sip:web-2@sip.local",
               contact="<sip:1001@10.0.0.5:5060>")
    out, resp = await h.authed(call, "1001", "1234")
    assert isinstance(out, Request) and out.uri == "sip:web-2@web-2.invalid;transport=ws", out
    # nobody registered there: 480 for a web agent (it may come back), the egress policies for an agent
    out, _ = await h.send(web_invite("sip:web-3@sip.local"), ("10.0.0.7", 40000, "WS"))
    assert isinstance(out, Response) and out.status == 480, out


async def test_a_web_agent_with_an_aor_link_reaches_that_peer_and_never_the_pstn() -> None:
    h = harness_with_tokens()
    await h.register("asterisk", "<sip:asterisk@10.0.0.40:5060>", password="secret",
                     sender=("10.0.0.40", 5060, "UDP"))
    out, _ = await h.send(web_invite("sip:anything@sip.local", aorLink="sip:conference@sip.local"),
                          ("10.0.0.7", 40000, "WS"))
    assert isinstance(out, Request) and out.uri == "sip:asterisk@10.0.0.40:5060", out
    assert out.headers.get("X-Call-Direction") == "agent-to-peer"
    for ruri in ("sip:+17065550100@sip.local", "sip:+17065550100@carrier.example", "tel:+17065550100"):
        out, _ = await h.send(web_invite(ruri), ("10.0.0.7", 40000, "WS"))
        assert isinstance(out, Response) and out.status in (403, 480), (ruri, out)
    out, _ = await h.send(web_invite("sip:2001@other.local"), ("10.0.0.7", 40000, "WS"))
    assert isinstance(out, Response) and out.status == 403 and "domains" in out.reason


@pytest.mark.parametrize(("request_", "why"), [
    (lambda: web_invite("sip:1002@sip.local", allowedMethods=["REGISTER"]), "INVITE not in allowedMethods"),
    (lambda: web_invite("sip:1002@sip.local", method="MESSAGE"), "MESSAGE not in allowedMethods"),
    (lambda: web_invite("sip:1002@sip.local", user="1001", tokens=(token(),)), "From is not the token's aor"),
    (lambda: web_invite("sip:1002@sip.local", tokens=(token(), token())), "two tokens"),
    (lambda: web_invite("sip:1002@sip.local", tokens=(token(OTHER),)), "unknown key"),
    (lambda: web_invite("sip:1002@sip.local", tokens=(token(exp=int(time.time()) - 60),)), "expired"),
    (lambda: web_invite("sip:1002@sip.local", tokens=(token(aud="other"),)), "wrong audience"),
])
async def test_a_bad_token_call_is_403_never_a_challenge(request_: object, why: str) -> None:
    h = harness_with_tokens()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    out, _ = await h.send(request_(), ("10.0.0.7", 40000, "WS"))  # type: ignore[operator]
    assert isinstance(out, Response) and out.status == 403, (why, out)
    assert "Proxy-Authenticate" not in out.headers and "WWW-Authenticate" not in out.headers, why


async def test_a_message_with_a_token_that_allows_it_is_forwarded() -> None:
    h = harness_with_tokens()
    await h.register("1002", "<sip:1002@10.0.0.6:5060>", sender=("10.0.0.6", 5060, "UDP"))
    out, _ = await h.send(web_invite("sip:1002@sip.local", method="MESSAGE", allowedMethods=["MESSAGE"]),
                          ("10.0.0.7", 40000, "WS"))
    assert isinstance(out, Request) and out.method == "MESSAGE" and "X-Connect-Token" not in out.headers, out


async def test_refused_tokens_ban_the_source_and_the_domain_acl_applies() -> None:
    h = harness_with_tokens(failures=FailureTracker(max_failures=3))
    forged = web_invite("sip:1002@sip.local", tokens=(token(OTHER),))
    for _ in range(3):
        assert (await h.answer(forged, ("10.0.0.7", 40000, "WS"))).status == 403
    good = web_invite("sip:1002@sip.local")
    banned = await h.answer(good, ("10.0.0.7", 40000, "WS"))
    assert banned.status == 403 and "too many" in banned.reason  # a valid token no longer helps from there
    assert h.processor.metrics.bans == 1
    outside = await h.answer(web_invite("sip:1002@sip.local"), ("203.0.113.50", 40000, "WS"))
    assert outside.status == 403 and "source address" in outside.reason  # sip.local's ACL: local networks only
