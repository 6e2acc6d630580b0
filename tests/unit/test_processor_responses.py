"""Response builders per RFC 3261 §8.2.6, checked on what goes on the wire (converted back and parsed)."""

from __future__ import annotations

import pytest
from test_processor_support import VIA_1, VIA_2, message_request, sip_request, wire_response

from routr_ray.processors import responses
from routr_ray.proto.gen import sipmessage_pb2
from routr_ray.sip import parse

REQ = message_request(sip_request("OPTIONS", extra="Timestamp: 54\r\n"), metadata={"k": "v"})
REQUEST = parse(sip_request("OPTIONS"))


def _assert_copied(resp, request=REQUEST) -> None:  # type: ignore[no-untyped-def]
    sip = wire_response(resp)
    # §8.2.6.2: all Via values, equal and in order; From, Call-ID, CSeq equal.
    assert sip.headers.get_all("Via") == [VIA_1, VIA_2]
    assert sip.headers.get("From") == request.headers.get("From")
    assert sip.headers.get("Call-ID") == request.headers.get("Call-ID")
    assert sip.headers.get("CSeq") == request.headers.get("CSeq")
    assert sip.to is not None and request.to is not None and str(sip.to.uri) == str(request.to.uri)
    assert sip.content_length == 0 and sip.body == b""


BUILDERS = [
    (lambda r: responses.ok(r), 200, "OK", sipmessage_pb2.OK),
    (lambda r: responses.ringing(r), 180, "Ringing", sipmessage_pb2.RINGING),
    (lambda r: responses.bad_request(r, "Missing CSeq"), 400, "Missing CSeq", sipmessage_pb2.BAD_REQUEST),
    (lambda r: responses.forbidden(r), 403, "Forbidden", sipmessage_pb2.FORBIDDEN),
    (lambda r: responses.not_found(r), 404, "Not Found", sipmessage_pb2.NOT_FOUND),
    (lambda r: responses.temporarily_unavailable(r), 480, "Temporarily Unavailable",
     sipmessage_pb2.TEMPORARILY_UNAVAILABLE),
    (lambda r: responses.loop_detected(r), 482, "Loop Detected", sipmessage_pb2.LOOP_DETECTED),
    (lambda r: responses.too_many_hops(r), 483, "Too Many Hops", sipmessage_pb2.TOO_MANY_HOPS),
    (lambda r: responses.busy_here(r), 486, "Busy Here", sipmessage_pb2.BUSY_HERE),
    (lambda r: responses.server_internal_error(r), 500, "Server Internal Error",
     sipmessage_pb2.SERVER_INTERNAL_ERROR),
    (lambda r: responses.not_implemented(r), 501, "Not Implemented", sipmessage_pb2.NOT_IMPLEMENTED),
]


@pytest.mark.parametrize(("build", "status", "reason", "rtype"), BUILDERS, ids=[str(b[1]) for b in BUILDERS])
def test_builders_copy_the_request_headers_and_tag_to(build, status, reason, rtype) -> None:  # type: ignore[no-untyped-def]
    resp = build(REQ)
    assert resp.message.status_code == status
    assert resp.message.response_type == rtype
    _assert_copied(resp)
    sip = wire_response(resp)
    assert (sip.status, sip.reason) == (status, reason)
    assert sip.to is not None and sip.to.tag == responses.to_tag_for(REQ)
    assert sip.headers.get("Timestamp") is None  # only 100 copies it
    assert sip.headers.get("Server") is None and sip.headers.get("Contact") is None


def test_sender_and_metadata_are_kept() -> None:
    resp = responses.ok(REQ)
    assert resp.sender == REQ.sender
    assert dict(resp.metadata) == {"k": "v"}


def test_100_trying_copies_timestamp_and_adds_no_tag() -> None:
    sip = wire_response(responses.trying(REQ))
    assert (sip.status, sip.reason) == (100, "Trying")
    assert sip.headers.get("Timestamp") == "54"  # §8.2.6.1
    assert sip.to is not None and sip.to.tag is None  # §8.2.6.2: not on 100
    _assert_copied(responses.trying(REQ))


def test_to_tag_is_stable_for_retransmissions_and_kept_when_present() -> None:
    again = message_request(sip_request("OPTIONS", extra="Timestamp: 54\r\n"))
    assert responses.to_tag_for(again) == responses.to_tag_for(REQ)
    other = message_request(sip_request("OPTIONS", vias=("SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKother",)))
    assert responses.to_tag_for(other) != responses.to_tag_for(REQ)
    tagged = message_request(sip_request("BYE", to_tag="abc123"))
    sip = wire_response(responses.ok(tagged))
    assert sip.to is not None and sip.to.tag == "abc123"
    assert sip.headers.get("To") == "<sip:1001@sip.local>;tag=abc123"


def test_challenge_401_sets_typed_www_authenticate_and_keeps_every_value() -> None:
    md5 = 'Digest realm="sip.local", nonce="abc", algorithm=MD5, qop="auth"'
    sha = 'Digest realm="sip.local", nonce="abc", algorithm=SHA-256, qop="auth"'
    reg = message_request(sip_request("REGISTER"))
    resp = responses.challenge(reg, [md5, sha])
    assert resp.message.status_code == 401
    assert resp.message.www_authenticate.realm == "sip.local"  # typed, as Routr processors expect
    assert resp.message.www_authenticate.algorithm == "MD5"
    sip = wire_response(resp)
    assert (sip.status, sip.reason) == (401, "Unauthorized")
    assert sip.headers.get_all("WWW-Authenticate") == [md5, sha]
    assert responses.unauthorized(reg, md5).message.www_authenticate.nonce == "abc"


def test_challenge_407_uses_proxy_authenticate() -> None:
    value = 'Digest realm="sip.local", nonce="n1", algorithm=MD5'
    resp = responses.proxy_authentication_required(message_request(sip_request("INVITE")), value)
    sip = wire_response(resp)
    assert (sip.status, sip.reason) == (407, "Proxy Authentication Required")
    assert sip.headers.get_all("Proxy-Authenticate") == [value]
    assert sip.headers.get("WWW-Authenticate") is None
    with pytest.raises(ValueError):
        responses.challenge(REQ, [])


def test_405_allow_423_min_expires_503_retry_after() -> None:
    sip = wire_response(responses.method_not_allowed(REQ, ["INVITE", "ACK", "BYE"]))
    assert sip.status == 405 and sip.headers.get_all("Allow") == ["INVITE", "ACK", "BYE"]
    sip = wire_response(responses.interval_too_brief(REQ, 3600))
    assert (sip.status, sip.reason, sip.headers.get("Min-Expires")) == (423, "Interval Too Brief", "3600")
    sip = wire_response(responses.service_unavailable(REQ, 9))
    assert (sip.status, sip.headers.get("Retry-After")) == (503, "9")
    _assert_copied(responses.service_unavailable(REQ))


def test_register_ok_with_contact_is_typed() -> None:
    reg = message_request(sip_request("REGISTER"))
    resp = responses.ok(reg, [("Contact", "<sip:alice@198.51.100.7:40000>;expires=600"), ("Expires", "600")])
    assert resp.message.contact.address.uri.host == "198.51.100.7"
    assert resp.message.contact.expires == 600
    assert resp.message.expires.expires == 600
    sip = wire_response(resp)
    assert [str(c.uri) for c in sip.contacts] == ["sip:alice@198.51.100.7:40000"]
    assert sip.contacts[0].params["expires"] == "600"


def test_generic_respond_custom_reason_headers_server_and_unknown_code() -> None:
    resp = responses.respond(REQ, 422, None, {"Min-SE": "90"}, server="routr-ray")
    assert resp.message.status_code == 422
    assert resp.message.response_type == sipmessage_pb2.CLIENT_ERROR  # class marker, numeric code kept
    sip = wire_response(resp)
    assert (sip.status, sip.reason) == (422, "Bad Request")
    assert sip.headers.get("Min-SE") == "90" and sip.headers.get("Server") == "routr-ray"
    sip = wire_response(responses.respond(REQ, 480, "Gone Fishing"))
    assert sip.reason == "Gone Fishing"
    with pytest.raises(ValueError):
        responses.respond(REQ, 99)
    with pytest.raises(ValueError, match="copied"):
        responses.respond(REQ, 200, headers=[("Call-ID", "x")])


def test_record_route_copied_only_on_dialog_creating_responses() -> None:
    rr = "Record-Route: <sip:203.0.113.1:5060;transport=udp;lr>\r\n"
    invite = message_request(sip_request("INVITE", extra=rr))
    assert wire_response(responses.ok(invite)).headers.get_all("Record-Route") == [
        "<sip:203.0.113.1:5060;transport=udp;lr>"]  # §12.1.1
    assert wire_response(responses.busy_here(invite)).headers.get("Record-Route") is None
    options = message_request(sip_request("OPTIONS", extra=rr))
    assert wire_response(responses.ok(options)).headers.get("Record-Route") is None


def test_is_answerable() -> None:
    assert responses.is_answerable(REQ)
    assert not responses.is_answerable(message_request(sip_request("ACK")))
