"""Dispatcher failures mapped to SIP answers, not to gRPC errors (routr.md §6, §12; DESIGN §5).

Routr's dispatcher returns gRPC NOT_FOUND / UNAVAILABLE and its EdgePort only logs them, so clients time
out. Here the dispatcher answers the request itself, as a MessageResponse the EdgePort sends back:

* no processor matches                       -> 405 Method Not Allowed + ``Allow`` (RFC 3261 §21.4.6)
* processor unreachable, failing or too late -> 503 Service Unavailable + ``Retry-After`` (§21.5.4, §20.33)
* a (non-optional) middleware fails          -> 500 Server Internal Error (§21.5.1)
* ACK and responses are never answered (RFC 3261 §17.1.1.3, §8.2.6): the builders return None ("drop").

The response copies Via, From, To, Call-ID and CSeq from the request and adds a To tag when the request
had none (RFC 3261 §8.2.6.2). The tag is derived from the request (Call-ID, From tag, top Via branch), so
a retransmitted request gets the same tag without the dispatcher keeping any state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from routr_ray.proto.convert import ConversionError, response_type_for, status_of
from routr_ray.proto.gen import processor_pb2, sipmessage_pb2

DEFAULT_RETRY_AFTER_SECONDS = 5

REASON_PHRASES = {
    405: "Method Not Allowed",
    500: "Server Internal Error",
    503: "Service Unavailable",
}

_ACK = processor_pb2.Method.Value("ACK")


def is_answerable(req: processor_pb2.MessageRequest) -> bool:
    """Whether a SIP answer may be sent for ``req``: a request other than ACK (RFC 3261 §17.1.1.3)."""
    return req.message.WhichOneof("message_type") == "request_uri" and req.method != _ACK


def to_tag_for(req: processor_pb2.MessageRequest) -> str:
    """A To tag that depends only on the request, so retransmissions get the same one."""
    msg = req.message
    branch = msg.via[0].branch if msg.via else ""
    seed = "\0".join((msg.call_id.call_id, getattr(msg, "from").tag, branch, req.ref))
    return hashlib.blake2s(seed.encode(), digest_size=6).hexdigest()


def build_response(req: processor_pb2.MessageRequest, status: int, reason: str | None = None,
                   headers: Iterable[tuple[str, str]] = ()) -> processor_pb2.MessageResponse:
    """A response to ``req`` per RFC 3261 §8.2.6, as the MessageResponse the EdgePort sends back.

    ``headers`` are extra (name, value) headers, e.g. ``Allow``. Does not check :func:`is_answerable`.
    """
    src = req.message
    resp = processor_pb2.MessageResponse()
    if req.HasField("sender"):
        resp.sender.CopyFrom(req.sender)
    out = resp.message
    out.response_type = response_type_for(status)
    out.status_code = status
    out.reason_phrase = reason if reason is not None else REASON_PHRASES.get(status, "")
    # §8.2.6.2: Via values equal and in the same order; From, Call-ID, CSeq equal; To equal plus a tag.
    out.via.extend(src.via)
    if src.HasField("from"):
        getattr(out, "from").CopyFrom(getattr(src, "from"))
    if src.HasField("to"):
        out.to.CopyFrom(src.to)
        if not out.to.tag:
            out.to.tag = to_tag_for(req)  # a typed field: raw no longer matches raw_crc, so To is re-rendered
    if src.HasField("call_id"):
        out.call_id.CopyFrom(src.call_id)
    for ext in src.extensions:
        if ext.name.lower() == "cseq":
            out.extensions.add(name=ext.name, value=ext.value)
    for name, value in headers:
        out.extensions.add(name=name, value=value)
    out.content_length.content_length = 0
    return resp


def method_not_allowed(req: processor_pb2.MessageRequest,
                       allow: Iterable[str]) -> processor_pb2.MessageResponse | None:
    """405 with ``Allow`` listing the methods the config routes (RFC 3261 §21.4.6), or None for ACK/responses."""
    if not is_answerable(req):
        return None
    return build_response(req, 405, headers=[("Allow", ", ".join(allow))])


def service_unavailable(req: processor_pb2.MessageRequest,
                        retry_after: int = DEFAULT_RETRY_AFTER_SECONDS) -> processor_pb2.MessageResponse | None:
    """503 with ``Retry-After`` (RFC 3261 §21.5.4, §20.33), or None for ACK/responses."""
    if not is_answerable(req):
        return None
    return build_response(req, 503, headers=[("Retry-After", str(int(retry_after)))])


def server_internal_error(req: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse | None:
    """500 (RFC 3261 §21.5.1), or None for ACK/responses."""
    if not is_answerable(req):
        return None
    return build_response(req, 500)


def response_status(msg: sipmessage_pb2.SIPMessage) -> int | None:
    """The status of a response SIPMessage (None for a request or an unknown status)."""
    if msg.WhichOneof("message_type") != "response_type":
        return None
    try:
        return status_of(msg)
    except ConversionError:
        return None
