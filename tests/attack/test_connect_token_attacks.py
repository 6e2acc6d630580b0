"""X-Connect-Token on the wire (issue 20 item 6, docs/security.md "Web agents"): forged, unsigned, HMAC-confused,
self-keyed, expired, wrong-audience and borrowed tokens register nothing and call nobody, a web agent never reaches
the trunk, and the token never leaves Connect. In-process EdgePort + Connect on loopback
(tests/attack/connect_stack.py) with a verifier for one P-256 key and the audience ``routr-ray-tests``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from routr_ray.processors.connect.connect_token import ConnectTokenVerifier
from routr_ray.proto.gen import location_pb2
from tests.attack.connect_stack import DOMAIN, PREMIUM, Phone, connect_stack, message, nothing_arrives, reply

pytestmark = pytest.mark.timeout(30)

ISSUER = ec.generate_private_key(ec.SECP256R1())  # the operator's token service
ATTACKER = ec.generate_private_key(ec.SECP256R1())
PUBLIC_PEM = ISSUER.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
AUDIENCE = "routr-ray-tests"


def claims(user: str = "web-1", **more: object) -> dict[str, object]:
    payload = {"aor": f"sip:{user}@{DOMAIN}", "domain": DOMAIN, "allowedMethods": ["REGISTER", "INVITE"],
               "aud": AUDIENCE, "iat": int(time.time()), "exp": int(time.time()) + 600, **more}
    return {k: v for k, v in payload.items() if v is not None}


def signed(payload: dict[str, object] | None = None, key: object = ISSUER, headers: dict[str, object] | None = None
           ) -> str:
    return jwt.encode(payload or claims(), key, algorithm="ES256", headers=headers)  # type: ignore[arg-type]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def handmade(header: dict[str, object], payload: dict[str, object], sign: object = None) -> str:
    """A JWS written by hand (pyjwt refuses to make the malicious ones): ``sign(signing_input) -> bytes``."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = sign(signing_input.encode()) if callable(sign) else b""
    return f"{signing_input}.{b64(signature)}"


def verifier() -> ConnectTokenVerifier:
    return ConnectTokenVerifier([PUBLIC_PEM], audience=AUDIENCE)


def token_line(value: str) -> str:
    return f"X-Connect-Token: {value}"


async def register(phone: Phone, value: str, *, to_user: str | None = None) -> int:
    """A token REGISTER for phone.user (or `to_user`); returns the status."""
    to = f"sip:{to_user or phone.user}@{DOMAIN}"
    answer = await phone.request("REGISTER", f"sip:{DOMAIN}", to=to, call_id=f"reg-{phone.peer.port}-{to_user}",
                                 extra=[token_line(value)])
    assert "WWW-Authenticate" not in answer.headers, "a token REGISTER is never challenged"
    return answer.status


MALICIOUS = {
    "forged signature (another key)": lambda: signed(key=ATTACKER),
    "alg none": lambda: handmade({"alg": "none", "typ": "JWT"}, claims()),
    "alg None with a signature": lambda: handmade({"alg": "None"}, claims(), lambda data: b"x" * 64),
    "HS256 keyed with our public key": lambda: handmade(
        {"alg": "HS256", "typ": "JWT"}, claims(), lambda data: hmac.new(PUBLIC_PEM, data, hashlib.sha256).digest()),
    "the attacker's key embedded as jwk": lambda: signed(key=ATTACKER, headers={"jwk": json.loads(
        jwt.algorithms.ECAlgorithm.to_jwk(ATTACKER.public_key()))}),
    "expired": lambda: signed(claims(exp=int(time.time()) - 60, iat=int(time.time()) - 700)),
    "no exp": lambda: signed(claims(exp=None)),
    "wrong audience": lambda: signed(claims(aud="another-service")),
    "no audience": lambda: signed(claims(aud=None)),
    "REGISTER not allowed": lambda: signed(claims(allowedMethods=["INVITE"])),
    "a genuine signature over other claims": lambda: tampered(),
}


def tampered() -> str:
    """A genuine token whose claims were changed afterwards (ten more years), its signature kept."""
    header, _, signature = signed().split(".")
    longer = b64(json.dumps(claims(exp=int(time.time()) + 10 * 365 * 86400)).encode())
    return f"{header}.{longer}.{signature}"


@pytest.mark.parametrize("name", MALICIOUS)
async def test_a_malicious_token_registers_nothing(name: str) -> None:
    async with connect_stack(verifier()) as stack:
        web = await Phone.open("web-1", stack)
        assert await register(web, MALICIOUS[name]()) == 403, name
        assert await stack.contacts("web-1") == []
        assert await register(web, signed()) == 200  # the genuine token still works (no ban after one)
        web.close()


async def test_a_token_for_one_aor_cannot_take_another_agents_calls() -> None:
    async with connect_stack(verifier()) as stack:
        victim = await Phone.open("1001", stack)
        await victim.register()
        attacker = await Phone.open("web-1", stack)
        for to_user in ("1001", "1002"):  # a genuine web-1 token, To an agent's AOR
            assert await register(attacker, signed(), to_user=to_user) == 403
        assert await stack.contacts("1001") == [victim.contact.strip("<>")]
        assert await stack.contacts("1002") == []
        # nor call as someone else: a web-1 token with From 1001
        spoof = await Phone.open("1001", stack)
        answer = await spoof.request("INVITE", f"sip:1002@{DOMAIN}", to=f"sip:1002@{DOMAIN}", call_id="spoof-1",
                                     extra=[token_line(signed())])
        assert answer.status == 403 and "Proxy-Authenticate" not in answer.headers
        victim.close(), attacker.close(), spoof.close()


async def test_a_token_for_a_domain_that_is_not_ours_registers_nothing() -> None:
    """Signed by our issuer, but for a domain we do not serve: Connect would be a registrar for anyone's domain."""
    async with connect_stack(verifier()) as stack:
        web = await Phone.open("web-1", stack)
        evil = signed(claims(aor="sip:web-1@evil.example", domain="evil.example"))
        answer = await web.request("REGISTER", "sip:evil.example", to="sip:web-1@evil.example", call_id="evil-1",
                                   extra=[token_line(evil)])
        assert answer.status == 403
        found = await stack.location.find_routes(location_pb2.FindRoutesRequest(aor="sip:web-1@evil.example"))
        assert not found.routes
        web.close()


@pytest.mark.parametrize("name", ["forged signature (another key)", "alg none", "HS256 keyed with our public key",
                                  "expired", "wrong audience"])
async def test_a_malicious_token_calls_nobody(name: str) -> None:
    async with connect_stack(verifier()) as stack:
        callee = await Phone.open("1002", stack)
        await callee.register()
        caller = await Phone.open("web-1", stack)
        bad = MALICIOUS[name]()
        answer = await caller.request("INVITE", callee.uri, to=callee.uri, call_id=f"bad-{len(name)}-{hash(name) & 0xffff}",
                                      extra=[token_line(bad)])
        assert answer.status == 403 and "Proxy-Authenticate" not in answer.headers, name
        await nothing_arrives(callee.peer)
        callee.close(), caller.close()


async def test_a_web_agent_never_reaches_the_trunk() -> None:
    async with connect_stack(verifier()) as stack:
        caller = await Phone.open("web-1", stack)
        everything = signed(claims(allowedMethods=["INVITE", "MESSAGE", "OPTIONS", "REGISTER"],
                                   aorLink=f"sip:{PREMIUM}@127.0.0.1:{stack.carrier.port}"))
        for method in ("INVITE", "MESSAGE"):
            for ruri in (f"sip:{PREMIUM}@{DOMAIN}", f"sip:{PREMIUM}@127.0.0.1:{stack.carrier.port}",
                         f"tel:{PREMIUM}"):
                answer = await caller.request(method, ruri, to=ruri, call_id=f"pstn-{method}-{ruri}",
                                              extra=[token_line(everything)])
                assert answer.status in (403, 480), (method, ruri, answer)
        await nothing_arrives(stack.carrier)
        caller.close()


async def test_the_token_never_leaves_connect() -> None:
    """The callee (and whoever it forwards to) never sees the caller's token: it could register or call as the
    caller until the token expires. In-dialog requests that carry it lose it too."""
    async with connect_stack(verifier()) as stack:
        callee = await Phone.open("1002", stack)
        await callee.register()
        caller = await Phone.open("web-1", stack)
        value = signed()
        caller.cseq += 1
        caller.send(message("INVITE", callee.uri, via=caller.via, from_=f"<{caller.uri}>;tag=w1", to=f"<{callee.uri}>",
                            call_id="leak-1", cseq=caller.cseq, contact=caller.contact, extra=[token_line(value)]))
        invite = await callee.peer.recv()
        assert invite.method == "INVITE" and "X-Connect-Token" not in invite.headers  # type: ignore[union-attr]
        assert value not in bytes(invite).decode("latin-1")
        callee.peer.send(reply(invite, 200, "OK", to_tag="c1", contact=callee.contact), stack.udp)  # type: ignore[arg-type]
        ok = await caller.final()
        assert ok.status == 200
        route_set = list(reversed(ok.headers.get_all("Record-Route")))
        caller.send(message("BYE", callee.contact.strip("<>"), via=caller.via, from_=f"<{caller.uri}>;tag=w1",
                            to=f"<{callee.uri}>;tag=c1", call_id="leak-1", cseq=caller.cseq + 1, routes=route_set,
                            extra=[token_line(value)]))
        bye = await callee.peer.recv()
        while bye.method == "ACK":  # type: ignore[union-attr]
            bye = await callee.peer.recv()
        assert bye.method == "BYE" and "X-Connect-Token" not in bye.headers  # type: ignore[union-attr]
        callee.close(), caller.close()


async def test_a_flood_of_forged_tokens_bans_the_source() -> None:
    async with connect_stack(verifier()) as stack:
        web = await Phone.open("web-1", stack, host="127.0.0.2")  # 127.0.0.1 is the trunk's: never banned
        statuses = [await register(web, signed(key=ATTACKER)) for _ in range(20)]
        assert set(statuses) == {403}
        answer = await web.request("REGISTER", f"sip:{DOMAIN}", to=web.uri, call_id="after-ban",
                                   extra=[token_line(signed())])
        assert answer.status == 403 and "too many" in answer.reason  # even a genuine token, from there
        assert stack.connect.metrics.bans == 1
        web.close()
