"""SIP responses to a MessageRequest, built straight on the protobuf (no SIP parse, no conversion).

RFC 3261 §8.2.6 (UAS behaviour, generating the response):

* §8.2.6.1: a 100 Trying copies the request's ``Timestamp``.
* §8.2.6.2: Via values equal and in the same order, From, Call-ID and CSeq equal, To equal plus a tag
  when the request had none (except on 100). The tag depends only on the request (Call-ID, From tag, top
  Via branch, ``ref``), so a retransmission gets the same one and no replica keeps state (DESIGN §10).
* §12.1.1: a dialog-creating response (101-299 to INVITE, SUBSCRIBE, REFER, NOTIFY) copies Record-Route.
* Content-Length 0 (no body); ``Server`` only when asked for.

The numeric status goes into ``SIPMessage.status_code`` and Routr's ``ResponseType`` enum gets the matching
value (or its class marker for codes missing from the enum, e.g. 422 -> CLIENT_ERROR), so Routr-compatible
peers and routr-ray agree (routr.md §2.3). ``sender`` and ``metadata`` of the request are kept, as Routr
processors (which answer with the whole request object) do.

Extra ``headers`` that have a typed field in SIPMessage (Contact, WWW-Authenticate, Expires, ...) are filled
through :func:`routr_ray.proto.convert.to_proto`, so Routr processors and matchFuncs see them typed; other
headers travel as extensions, in the order given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

from routr_ray.proto.convert import response_type_for, to_proto
from routr_ray.proto.gen import processor_pb2, sipmessage_pb2
from routr_ray.sip.headers import Headers, header_key
from routr_ray.sip.message import Response

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
HeaderItems = Iterable[tuple[str, str]] | Mapping[str, str]

DEFAULT_RETRY_AFTER_SECONDS = 5

# RFC 3261 §21 (and the RFCs that added codes) default reason phrases.
REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    200: "OK", 202: "Accepted", 300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service", 400: "Bad Request", 401: "Unauthorized",
    402: "Payment Required", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required", 423: "Interval Too Brief",
    429: "Too Many Requests", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# Headers with a typed SIPMessage field; an extra header of one of these kinds goes through to_proto.
_TYPED_KINDS = frozenset({"contact", "expires", "www-authenticate", "authorization", "route", "record-route",
                          "max-forwards"})
# Copied from the request by every builder (§8.2.6.2); an extra header may not replace them.
_COPIED_KINDS = frozenset({"via", "from", "to", "call-id", "cseq", "content-length"})
_DIALOG_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})
_ACK = processor_pb2.Method.Value("ACK")
_METHOD_NAMES: dict[int, str] = {v.number: v.name for v in processor_pb2.Method.DESCRIPTOR.values}


def reason_phrase(status: int) -> str:
    """The default reason phrase of ``status`` (RFC 3261 §21); the class's x00 phrase for other codes."""
    return REASON_PHRASES.get(status) or REASON_PHRASES.get(status // 100 * 100, "")


def is_answerable(req: MessageRequest) -> bool:
    """A SIP answer may be sent: the message is a request other than ACK (RFC 3261 §17.1.1.3)."""
    return req.message.WhichOneof("message_type") == "request_uri" and req.method != _ACK


def to_tag_for(req: MessageRequest) -> str:
    """A To tag that depends only on the request (§8.2.6.2), so retransmissions get the same one."""
    msg = req.message
    branch = msg.via[0].branch if msg.via else ""
    seed = "\0".join((msg.call_id.call_id, getattr(msg, "from").tag, branch, req.ref))
    return hashlib.blake2s(seed.encode(), digest_size=6).hexdigest()


def _method_of(req: MessageRequest) -> str:
    return req.message.method or _METHOD_NAMES.get(req.method, "")


def _add_headers(out: sipmessage_pb2.SIPMessage, headers: HeaderItems) -> None:
    items = headers.items() if isinstance(headers, Mapping) else headers
    typed: list[tuple[str, str]] = []
    add_ext = out.extensions.add
    for name, value in items:
        key = header_key(name)
        if key in _COPIED_KINDS:
            raise ValueError(f"{name} is copied from the request (RFC 3261 §8.2.6.2); it cannot be set here")
        if key in _TYPED_KINDS:
            typed.append((name, value))
        else:
            add_ext(name=name, value=value)
    if typed:
        key = tuple(typed)
        converted = _TYPED_EXTRAS.get(key)
        if converted is None:
            converted = _typed_extras(typed)
            if len(_TYPED_EXTRAS) >= 4096:
                _TYPED_EXTRAS.clear()
            _TYPED_EXTRAS[key] = converted
        extensions, fields = converted
        for name, value in extensions:
            add_ext(name=name, value=value)
        out.MergeFromString(fields)


# (name, value) pairs of typed extra headers -> what they add to a response: the extensions (in order) and the
# serialized typed fields. A pure function of the pairs, and the same ones recur (a phone's Contact and Expires on
# every re-registration, the challenge of a realm). Bounded: cleared when full.
_TYPED_EXTRAS: dict[tuple[tuple[str, str], ...], tuple[list[tuple[str, str]], bytes]] = {}


def _typed_extras(typed: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], bytes]:
    extra = to_proto(Response(200, "", Headers(typed)))
    # Repeats of a single-valued typed kind (one WWW-Authenticate per digest algorithm, RFC 8760 §2.4) have no
    # typed field: to_proto made them extensions; keep them, in order.
    extensions = [(ext.name, ext.value) for ext in extra.extensions]
    for field in ("response_type", "status_code", "reason_phrase", "header_names", "header_value_counts",
                  "extensions"):
        extra.ClearField(field)
    return extensions, extra.SerializeToString()


def respond(
    req: MessageRequest,
    status: int,
    reason: str | None = None,
    headers: HeaderItems = (),
    *,
    server: str | None = None,
    to_tag: str | None = None,
) -> MessageResponse:
    """A ``status`` response to ``req`` (RFC 3261 §8.2.6) as the MessageResponse a processor returns.

    ``reason`` defaults to the RFC phrase; ``headers`` are extra (name, value) pairs (Allow, Contact, ...);
    ``server`` adds a ``Server`` header; ``to_tag`` overrides the derived To tag. Does not check
    :func:`is_answerable` (the SDK pipeline does).
    """
    if not 100 <= status <= 699:
        raise ValueError(f"status {status} is not a SIP response code")
    src = req.message
    resp = MessageResponse()
    if req.HasField("sender"):
        resp.sender.CopyFrom(req.sender)
    if req.metadata:
        resp.metadata.update(req.metadata)
    out = resp.message
    out.response_type = response_type_for(status)
    out.status_code = status
    out.reason_phrase = reason if reason is not None else reason_phrase(status)
    out.via.extend(src.via)
    if src.HasField("from"):
        getattr(out, "from").CopyFrom(getattr(src, "from"))
    if src.HasField("to"):
        out.to.CopyFrom(src.to)
        if status != 100 and not out.to.tag:
            # a typed field changed: raw no longer matches raw_crc, so To is rendered with the tag
            out.to.tag = to_tag or to_tag_for(req)
    if src.HasField("call_id"):
        out.call_id.CopyFrom(src.call_id)
    if 100 < status < 300 and src.record_route and _method_of(req) in _DIALOG_METHODS:
        out.record_route.extend(src.record_route)  # §12.1.1
    for ext in src.extensions:
        lname = ext.name.lower()
        if lname == "cseq" or (status == 100 and lname == "timestamp"):  # §8.2.6.1
            out.extensions.add(name=ext.name, value=ext.value)
    if server:
        out.extensions.add(name="Server", value=server)
    if headers:
        _add_headers(out, headers)
    out.content_length.content_length = 0
    return resp


# ------------------------------------------------------------------------------------------------
# Named builders (Routr's Response helpers, routr.md §1.15, plus the codes a registrar/proxy needs)

def trying(req: MessageRequest, *, server: str | None = None) -> MessageResponse:
    """100 Trying (§8.2.6.1: Timestamp copied, no To tag)."""
    return respond(req, 100, server=server)


def ringing(req: MessageRequest, headers: HeaderItems = (), *, server: str | None = None) -> MessageResponse:
    return respond(req, 180, None, headers, server=server)


def ok(req: MessageRequest, headers: HeaderItems = (), *, server: str | None = None) -> MessageResponse:
    """200 OK. For a REGISTER pass the bindings: ``headers=[("Contact", "<sip:...>;expires=600")]``."""
    return respond(req, 200, None, headers, server=server)


def bad_request(req: MessageRequest, reason: str | None = None, *, server: str | None = None) -> MessageResponse:
    """400; ``reason`` may say what is wrong (RFC 3261 §21.4.1: "the reason phrase SHOULD identify...")."""
    return respond(req, 400, reason, server=server)


def challenge(req: MessageRequest, challenges: str | Iterable[str], *, proxy: bool = False,
              server: str | None = None) -> MessageResponse:
    """401 with ``WWW-Authenticate`` (registrar, UAS) or, with ``proxy=True``, 407 with
    ``Proxy-Authenticate`` (RFC 3261 §22.1, §22.3). ``challenges``: one header value per offered digest
    algorithm (``DigestAuthenticator.challenge()``'s list, RFC 8760 §2.4)."""
    values = [challenges] if isinstance(challenges, str) else list(challenges)
    if not values:
        raise ValueError("a challenge needs at least one WWW-/Proxy-Authenticate value")
    name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
    return respond(req, 407 if proxy else 401, None, [(name, v) for v in values], server=server)


def unauthorized(req: MessageRequest, challenges: str | Iterable[str], *, server: str | None = None) -> MessageResponse:
    """401 Unauthorized with WWW-Authenticate."""
    return challenge(req, challenges, proxy=False, server=server)


def proxy_authentication_required(req: MessageRequest, challenges: str | Iterable[str],
                                  *, server: str | None = None) -> MessageResponse:
    """407 Proxy Authentication Required with Proxy-Authenticate."""
    return challenge(req, challenges, proxy=True, server=server)


def forbidden(req: MessageRequest, reason: str | None = None, *, server: str | None = None) -> MessageResponse:
    return respond(req, 403, reason, server=server)


def not_found(req: MessageRequest, *, server: str | None = None) -> MessageResponse:
    return respond(req, 404, server=server)


def method_not_allowed(req: MessageRequest, allow: Iterable[str], *, server: str | None = None) -> MessageResponse:
    """405 with the mandatory ``Allow`` (RFC 3261 §21.4.6)."""
    return respond(req, 405, None, [("Allow", ", ".join(allow))], server=server)


def interval_too_brief(req: MessageRequest, min_expires: int, *, server: str | None = None) -> MessageResponse:
    """423 with ``Min-Expires`` (RFC 3261 §10.3 step 7, §21.4.17)."""
    return respond(req, 423, None, [("Min-Expires", str(int(min_expires)))], server=server)


def temporarily_unavailable(req: MessageRequest, *, server: str | None = None) -> MessageResponse:
    return respond(req, 480, server=server)


def loop_detected(req: MessageRequest, *, server: str | None = None) -> MessageResponse:
    """482 (RFC 3261 §16.3 step 4)."""
    return respond(req, 482, server=server)


def too_many_hops(req: MessageRequest, *, server: str | None = None) -> MessageResponse:
    """483: Max-Forwards reached 0 on a request to forward (RFC 3261 §16.3 step 2)."""
    return respond(req, 483, server=server)


def busy_here(req: MessageRequest, *, server: str | None = None) -> MessageResponse:
    return respond(req, 486, server=server)


def server_internal_error(req: MessageRequest, reason: str | None = None, *, server: str | None = None) -> MessageResponse:
    return respond(req, 500, reason, server=server)


def not_implemented(req: MessageRequest, *, server: str | None = None) -> MessageResponse:
    return respond(req, 501, server=server)


def service_unavailable(req: MessageRequest, retry_after: int = DEFAULT_RETRY_AFTER_SECONDS,
                        *, server: str | None = None) -> MessageResponse:
    """503 with ``Retry-After`` (RFC 3261 §21.5.4, §20.33)."""
    return respond(req, 503, None, [("Retry-After", str(int(retry_after)))], server=server)


__all__ = [
    "DEFAULT_RETRY_AFTER_SECONDS", "REASON_PHRASES", "bad_request", "busy_here", "challenge", "forbidden",
    "interval_too_brief", "is_answerable", "loop_detected", "method_not_allowed", "not_found", "not_implemented",
    "ok", "proxy_authentication_required", "reason_phrase", "respond", "ringing", "server_internal_error",
    "service_unavailable", "temporarily_unavailable", "to_tag_for", "too_many_hops", "trying", "unauthorized",
]
