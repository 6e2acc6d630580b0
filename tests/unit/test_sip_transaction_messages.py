"""ACK/CANCEL building and matching keys from parsed messages; digest over a parsed REGISTER."""

from __future__ import annotations

import hashlib

from routr_ray.sip import Request, Response, parse
from routr_ray.sip.digest import DigestAuthenticator, DigestResult, find_credentials, parse_auth_params
from routr_ray.sip.transaction import InviteClientTransaction
from routr_ray.sip.transaction_effects import SendAck
from routr_ray.sip.transaction_keys import ClientKey, LegacyServerKey, ServerKey
from routr_ray.sip.transaction_messages import build_ack, build_cancel, client_key_for, server_key_for

INVITE = (
    b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP proxy.atlanta.com;branch=z9hG4bKnashds8, SIP/2.0/UDP pc33.Atlanta.com:5066;branch=z9hG4bK1\r\n"
    b"Max-Forwards: 69\r\n"
    b"Route: <sip:p1.example.com;lr>\r\n"
    b"Route: <sip:p2.example.com;lr>\r\n"
    b"To: Bob <sip:bob@biloxi.com>\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.com>\r\n"
    b"Content-Length: 0\r\n\r\n"
)

BUSY = (
    b"SIP/2.0 486 Busy Here\r\n"
    b"Via: SIP/2.0/UDP proxy.atlanta.com;branch=z9hG4bKnashds8\r\n"
    b"To: Bob <sip:bob@biloxi.com>;tag=a6c85cf\r\n"
    b"From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def _invite() -> Request:
    msg = parse(INVITE)
    assert isinstance(msg, Request)
    return msg


def _busy() -> Response:
    msg = parse(BUSY)
    assert isinstance(msg, Response)
    return msg


def test_build_ack_for_non_2xx() -> None:
    invite, busy = _invite(), _busy()
    tx = InviteClientTransaction(invite, reliable=False)
    tx.start()
    acks = [e for e in tx.on_response(busy.status, busy) if isinstance(e, SendAck)]
    assert len(acks) == 1
    ack = parse(bytes(build_ack(invite, acks[0].response)))
    assert isinstance(ack, Request)
    assert ack.method == "ACK" and ack.uri == "sip:bob@biloxi.com"
    assert [str(v) for v in ack.via] == ["SIP/2.0/UDP proxy.atlanta.com;branch=z9hG4bKnashds8"]
    assert [str(r.uri) for r in ack.routes] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert ack.to is not None and ack.to.tag == "a6c85cf"
    assert ack.from_ is not None and ack.from_.tag == "1928301774"
    assert ack.call_id == "a84b4c76e66710"
    assert (ack.cseq.seq, ack.cseq.method) == (314159, "ACK")
    assert ack.max_forwards == 69
    assert ack.content_length == 0
    # The ACK matches the INVITE's server transaction at the next hop (§17.2.3).
    assert server_key_for(ack) == server_key_for(invite)


def test_build_cancel() -> None:
    invite = _invite()
    cancel = parse(bytes(build_cancel(invite, reason='SIP;cause=408;text="Timer C"')))
    assert isinstance(cancel, Request)
    assert cancel.method == "CANCEL" and cancel.uri == invite.uri
    assert len(cancel.via) == 1 and cancel.via[0].branch == "z9hG4bKnashds8"
    assert cancel.to is not None and cancel.to.tag is None
    assert (cancel.cseq.seq, cancel.cseq.method) == (314159, "CANCEL")
    assert cancel.headers.get("Reason") == 'SIP;cause=408;text="Timer C"'
    assert len(cancel.routes) == 2
    key = server_key_for(cancel)
    assert isinstance(key, ServerKey) and key.method == "CANCEL"


def test_keys_from_messages() -> None:
    invite, busy = _invite(), _busy()
    assert server_key_for(invite) == ServerKey("z9hG4bKnashds8", "proxy.atlanta.com", "INVITE")
    assert client_key_for(busy) == ClientKey("z9hG4bKnashds8", "INVITE")
    legacy = parse(INVITE.replace(b"branch=z9hG4bKnashds8", b"branch=nashds8"))
    assert isinstance(legacy, Request)
    key = server_key_for(legacy)
    assert isinstance(key, LegacyServerKey)
    assert (key.call_id, key.cseq_seq, key.from_tag, key.method) == ("a84b4c76e66710", 314159, "1928301774", "INVITE")


def test_digest_over_a_parsed_register() -> None:
    auth = DigestAuthenticator(bytes(32))
    challenge = auth.challenge("sip.local", now=1000.0)[0]
    nonce = parse_auth_params(challenge.split(" ", 1)[1])["nonce"]

    def h(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    response = h(f"{h('1001:sip.local:1234')}:{nonce}:00000001:abc:auth:{h('REGISTER:sip:sip.local')}")
    register = parse(
        b"REGISTER sip:sip.local;transport=udp SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-1\r\n"
        b"From: <sip:1001@sip.local>;tag=1\r\nTo: <sip:1001@sip.local>\r\n"
        b"Call-ID: reg1\r\nCSeq: 2 REGISTER\r\nMax-Forwards: 70\r\n"
        b'Authorization: Digest username="other",realm="other.net",nonce="x",uri="sip:other.net",response="00"\r\n'
        + (
            f'Authorization: Digest username="1001",realm="sip.local",cnonce="abc",nc=00000001,qop=auth,'
            f'uri="sip:sip.local",nonce="{nonce}",response="{response}",algorithm=MD5\r\n'
        ).encode()
        + b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(register, Request)
    creds = find_credentials(register.headers.get_all("Authorization"), "sip.local")
    assert creds is not None and creds.username == "1001"
    # HA2 uses the uri of the header, although the Request-URI carries ;transport=udp.
    assert creds.uri != register.uri
    outcome = auth.verify(creds, method=register.method, realm="sip.local", password="1234", now=1001.0)
    assert outcome.result is DigestResult.OK
