"""Failures mapped to SIP answers built per RFC 3261 §8.2.6 (checked after conversion back to SIP)."""

from __future__ import annotations

from test_dispatch_support import message_request, sip_request, sip_response

from routr_ray.dispatch.errors import (
    is_answerable,
    method_not_allowed,
    respond,
    server_internal_error,
    service_unavailable,
    to_tag_for,
)
from routr_ray.proto.convert import from_proto
from routr_ray.proto.gen import sipmessage_pb2
from routr_ray.sip.message import Response
from routr_ray.sip.parser import parse


def as_sip(resp) -> Response:  # type: ignore[no-untyped-def]
    msg = parse(bytes(from_proto(resp.message)))  # what goes on the wire parses back
    assert isinstance(msg, Response)
    return msg


def test_405_with_allow_and_the_request_headers_copied() -> None:
    req = message_request(sip_request("OPTIONS", "1001"))
    resp = method_not_allowed(req, ("INVITE", "BYE", "REGISTER"))
    assert resp is not None
    assert resp.message.response_type == sipmessage_pb2.METHOD_NOT_ALLOWED
    assert resp.message.status_code == 405
    sip = as_sip(resp)
    assert (sip.status, sip.reason) == (405, "Method Not Allowed")
    assert sip.headers.get_all("Allow") == ["INVITE", "BYE", "REGISTER"]
    request = parse(sip_request("OPTIONS", "1001"))
    # RFC 3261 §8.2.6.2: Via values equal and in order; From, Call-ID, CSeq equal; To equal + a tag.
    assert sip.headers.get_all("Via") == request.headers.get_all("Via")
    assert sip.headers.get("From") == request.headers.get("From")
    assert sip.headers.get("Call-ID") == request.headers.get("Call-ID")
    assert sip.headers.get("CSeq") == request.headers.get("CSeq")
    assert sip.to is not None and request.to is not None
    assert str(sip.to.uri) == str(request.to.uri)
    assert sip.to.params.get("tag") == to_tag_for(req)
    assert sip.headers.get("Contact") is None and sip.headers.get("User-Agent") is None
    assert sip.content_length == 0 and sip.body == b""
    assert resp.sender == req.sender


def test_to_tag_is_stable_and_an_existing_tag_is_kept() -> None:
    req = message_request(sip_request("INVITE"))
    assert to_tag_for(req) == to_tag_for(message_request(sip_request("INVITE")))
    tagged = message_request(sip_request("BYE", to_tag="abc123"))
    sip = as_sip(service_unavailable(tagged, 7))
    assert sip.to is not None and sip.to.params.get("tag") == "abc123"


def test_503_with_retry_after() -> None:
    resp = service_unavailable(message_request(sip_request("INVITE")), retry_after=7)
    assert resp is not None
    assert resp.message.response_type == sipmessage_pb2.SERVICE_UNAVAILABLE
    sip = as_sip(resp)
    assert (sip.status, sip.headers.get("Retry-After")) == (503, "7")


def test_500() -> None:
    sip = as_sip(server_internal_error(message_request(sip_request("REGISTER"))))
    assert (sip.status, sip.reason) == (500, "Server Internal Error")


def test_ack_and_responses_are_never_answered() -> None:
    ack = message_request(sip_request("ACK"))
    ok = message_request(sip_response(200, "OK"))
    for req in (ack, ok):
        assert not is_answerable(req)
        assert method_not_allowed(req, ["INVITE"]) is None
        assert service_unavailable(req) is None
        assert server_internal_error(req) is None
    assert is_answerable(message_request(sip_request("CANCEL")))


def test_respond_any_status_with_extra_headers() -> None:
    resp = respond(message_request(sip_request("INVITE")), 422, "Session Interval Too Small",
                          [("Min-SE", "90")])
    assert resp.message.response_type == sipmessage_pb2.CLIENT_ERROR  # class marker, exact code alongside
    sip = as_sip(resp)
    assert (sip.status, sip.reason, sip.headers.get("Min-SE")) == (422, "Session Interval Too Small", "90")
