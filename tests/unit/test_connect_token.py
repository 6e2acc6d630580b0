"""X-Connect-Token web agents (issue 20 item 6, routr.md §3.2 step 3): the verifier (RS256/ES256 keys, expiry,
audience, the allowed methods, AOR and domain) and a token REGISTER through ConnectProcessor."""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from test_connect_support import KEY, Harness, resources, sip

from routr_ray.location import LocationService
from routr_ray.location.local_client import LocalLocationClient
from routr_ray.processors.connect import ConnectProcessor
from routr_ray.processors.connect.connect_token import ConnectTokenVerifier, TokenRejected
from routr_ray.proto.gen import location_pb2

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


def harness_with_tokens() -> Harness:
    h = Harness()
    h.processor = ConnectProcessor(resources(), LocalLocationClient([h.service]), nonce_key=KEY, clock=h.clock,
                                   connect_tokens=VERIFIER)
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
