"""Conversion between ``routr_ray.sip`` messages and Routr's ``SIPMessage`` protobuf.

Routr semantics (routr.md §2.3, §5.4): headers with a typed field (Via, Route, Record-Route, From, To,
Contact, Call-ID, Max-Forwards, Expires, Content-Length, WWW-Authenticate, Authorization, the Request-URI or
the response code) travel typed; every other header travels as an ``Extension`` (name, value), in order,
repeated headers kept; a processor returns the whole message.

routr-ray extensions (field numbers >= 100, see protos/sipmessage.proto) carry what Routr's fields cannot:
every URI/header parameter in order, URI headers, non-SIP schemes (``tel:``, ``urn:``), every Contact, the
exact status code, the method, binary bodies and the header layout (order, names as written, grouping).

Merge rule, applied by :func:`from_proto`:

* A value carrying ``raw`` (its exact text as received) also carries ``raw_crc``, a CRC-32 of its typed
  fields when ``raw`` was taken. ``raw`` is used only while the typed fields still hash to ``raw_crc``: a
  processor that changed a typed field wins, and the value is rendered from the typed fields, keeping the
  order and values of the ``params`` extension for everything the typed fields do not cover.
* A Routr processor knows none of the extensions; protobuf-js drops them when it re-encodes. Every
  extension may therefore be absent: the value is rendered from Routr's typed fields alone, ``contact``
  alone gives one Contact, a missing layout gives Routr's header order (Via, Route, Record-Route,
  Max-Forwards, Call-ID, WWW-Authenticate, Authorization, From, To, Contact, Expires, extensions).
* ``contact`` (Routr's field) stays authoritative for the first Contact; ``contacts[1:]`` add the others.
* ``status_code`` is used while ``response_type`` still maps to it; a changed ``response_type`` wins. Codes
  missing from ``ResponseType`` travel as its class marker (422 -> CLIENT_ERROR) so a Routr processor that
  drops ``status_code`` still sees the right class (and gets x00 back).
* Code that edits extension fields directly (``params``, ``scheme``, ...) must clear ``raw``.

Normalization of a round trip (everything else is kept byte for byte): line folding is unfolded and each
header line is written ``Name: value``; several values on one line are re-joined with ``", "``; Max-Forwards
and Content-Length are written as plain numbers (``0068`` -> ``68``); Content-Length always equals the body
length; typed headers that were interleaved with other headers of the same name keep their relative order
but a header kind whose values changed count is re-grouped at its last line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from zlib import crc32

from routr_ray.sip.digest import parse_auth_params
from routr_ray.sip.errors import ParseError
from routr_ray.sip.fields import NameAddr, Via, parse_name_addr
from routr_ray.sip.headers import Headers, header_key
from routr_ray.sip.message import Message, Request, Response
from routr_ray.sip.syntax import quote, split_list
from routr_ray.sip.uri import URI, format_host

from .gen import common_pb2, processor_pb2, sipmessage_pb2

SIPMessage = sipmessage_pb2.SIPMessage
MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
NetInterface = processor_pb2.NetInterface


class ConversionError(ValueError):
    """A SIPMessage that cannot become a SIP message (no start line information)."""


# ------------------------------------------------------------------------------------------------
# Tables

_CODE_TO_TYPE: dict[int, int] = {
    code: sipmessage_pb2.ResponseType.Value(name)
    for code, name in (
        (100, "TRYING"), (180, "RINGING"), (181, "CALL_IS_BEING_FORWARDED"), (182, "QUEUED"),
        (183, "SESSION_PROGRESS"), (200, "OK"), (202, "ACCEPTED"), (300, "MULTIPLE_CHOICES"),
        (301, "MOVED_PERMANENTLY"), (302, "MOVED_TEMPORARILY"), (305, "USE_PROXY"), (380, "ALTERNATIVE_SERVICE"),
        (400, "BAD_REQUEST"), (401, "UNAUTHORIZED"), (402, "PAYMENT_REQUIRED"), (403, "FORBIDDEN"),
        (404, "NOT_FOUND"), (405, "METHOD_NOT_ALLOWED"), (406, "NOT_ACCEPTABLE"),
        (407, "PROXY_AUTHENTICATION_REQUIRED"), (408, "REQUEST_TIMEOUT"), (410, "GONE"),
        (413, "REQUEST_ENTITY_TOO_LARGE"), (414, "REQUEST_URI_TOO_LONG"), (415, "UNSUPPORTED_MEDIA_TYPE"),
        (416, "UNSUPPORTED_URI_SCHEME"), (420, "BAD_EXTENSION"), (421, "EXTENSION_REQUIRED"),
        (423, "INTERVAL_TOO_BRIEF"), (480, "TEMPORARILY_UNAVAILABLE"),
        (481, "CALL_OR_TRANSACTION_DOES_NOT_EXIST"), (482, "LOOP_DETECTED"), (483, "TOO_MANY_HOPS"),
        (484, "ADDRESS_INCOMPLETE"), (485, "AMBIGUOUS"), (486, "BUSY_HERE"), (487, "REQUEST_TERMINATED"),
        (488, "NOT_ACCEPTABLE_HERE"), (489, "BAD_EVENT"), (491, "REQUEST_PENDING"), (493, "UNDECIPHERABLE"),
        (500, "SERVER_INTERNAL_ERROR"), (501, "NOT_IMPLEMENTED"), (502, "BAD_GATEWAY"),
        (503, "SERVICE_UNAVAILABLE"), (504, "SERVER_TIMEOUT"), (505, "VERSION_NOT_SUPPORTED"),
        (513, "MESSAGE_TOO_LARGE"), (600, "BUSY_EVERYWHERE"), (603, "DECLINE"),
        (604, "DOES_NOT_EXIST_ANYWHERE"), (606, "SESSION_NOT_ACCEPTABLE"),
    )
}
# Class markers: the type a code missing from the table travels as (1xx has no marker).
_CLASS_TYPE = {1: 0, 2: 6, 3: 9, 4: 15, 5: 45, 6: 53}
_TYPE_TO_CODE: dict[int, int] = {t: c for c, t in _CODE_TO_TYPE.items()}
_TYPE_TO_CODE.update({6: 200, 9: 300, 15: 400, 45: 500, 53: 600})

_METHODS: dict[str, int] = {name: processor_pb2.Method.Value(name) for name in processor_pb2.Method.keys()}
_TRANSPORTS: dict[str, int] = {name: common_pb2.Transport.Value(name) for name in common_pb2.Transport.keys()}
_TRANSPORT_NAMES: dict[int, str] = {v: k for k, v in _TRANSPORTS.items()}

# Typed header kinds (lower-case long names). List kinds may hold several values per line.
_LIST_KINDS = frozenset(("via", "route", "record-route", "contact"))
_SINGLE_KINDS = ("from", "to", "call-id", "max-forwards", "expires", "content-length", "www-authenticate",
                 "authorization")
_TYPED_KINDS = _LIST_KINDS | frozenset(_SINGLE_KINDS)
# Routr's EdgePort order (routr.md §5.4), used when the layout extension is missing.
_ROUTR_ORDER = ("via", "route", "record-route", "max-forwards", "call-id", "www-authenticate", "authorization",
                "from", "to", "contact", "expires")
_CANONICAL = {
    "via": "Via", "route": "Route", "record-route": "Record-Route", "contact": "Contact", "from": "From",
    "to": "To", "call-id": "Call-ID", "max-forwards": "Max-Forwards", "expires": "Expires",
    "content-length": "Content-Length", "www-authenticate": "WWW-Authenticate", "authorization": "Authorization",
    "content-type": "Content-Type", "supported": "Supported", "subject": "Subject",
    "content-encoding": "Content-Encoding", "event": "Event", "refer-to": "Refer-To", "referred-by": "Referred-By",
    "allow-events": "Allow-Events", "accept-contact": "Accept-Contact", "reject-contact": "Reject-Contact",
    "request-disposition": "Request-Disposition", "session-expires": "Session-Expires", "identity": "Identity",
    "identity-info": "Identity-Info",
}
_ABSENT = object()  # override: drop the parameter
_PRESENT = object()  # override: keep the parameter as received, or add it as a flag


_KEY_MEMO: dict[str, str] = {}


def _memo_key(name: str) -> str:
    """header_key() memoized for header names seen before (bounded)."""
    key = header_key(name)
    if len(_KEY_MEMO) < 4096:
        _KEY_MEMO[name] = key
    return key


# ------------------------------------------------------------------------------------------------
# Small public helpers

def method_enum(method: str) -> int:
    """Routr ``Method`` enum value of a method name (UNKNOWN for extension methods)."""
    return _METHODS.get(method.upper(), 0)


def transport_enum(transport: str) -> int:
    """Routr ``Transport`` enum value of ``"udp"``, ``"TCP"``, ... (ValueError when unknown)."""
    try:
        return _TRANSPORTS[transport.upper()]
    except KeyError:
        raise ValueError(f"unknown transport {transport!r}") from None


def transport_name(value: int) -> str:
    """Upper-case transport name of a Routr ``Transport`` enum value."""
    return _TRANSPORT_NAMES[value]


def net_interface(host: str, port: int, transport: str | int) -> processor_pb2.NetInterface:
    t = transport if isinstance(transport, int) else transport_enum(transport)
    return NetInterface(host=host, port=port, transport=t)


def response_type_for(status: int) -> int:
    """Routr ``ResponseType`` of a status code; codes missing from the enum give their class marker."""
    t = _CODE_TO_TYPE.get(status)
    return t if t is not None else _CLASS_TYPE.get(status // 100, 0)


def status_of(pm: sipmessage_pb2.SIPMessage) -> int:
    """The response status a SIPMessage stands for (merge rule above); ConversionError when unknown."""
    rtype = pm.response_type
    code = pm.status_code
    if code and response_type_for(code) == rtype:
        return code
    typed = _TYPE_TO_CODE.get(rtype)
    if typed is None:
        raise ConversionError("response without a known status (ResponseType UNKNOWN, no status_code)")
    return typed


# ------------------------------------------------------------------------------------------------
# SIP -> protobuf

def _param_list(params: Mapping[str, str | None]) -> list[str]:
    return [name if value is None else f"{name}={value}" for name, value in params.items()]


def _crc(key: str) -> int:
    return crc32(key.encode("utf-8", "surrogatepass"))


# Typed keys: one string per value built from its typed fields. to_proto builds it from the Python values it
# writes, from_proto from the protobuf fields it reads; both give the same text for the same field values.

def _uri_key(pu: sipmessage_pb2.SipURI) -> str:
    return (f"{pu.user}\0{pu.user_password}\0{pu.host}\0{pu.port}\0{pu.transport_param}\0{pu.m_addr_param}\0"
            f"{pu.method_param}\0{pu.user_param}\0{pu.ttl_param}\0{pu.lr_param:d}{pu.bnc_param:d}{pu.secure:d}")


def _fill_uri(pu: sipmessage_pb2.SipURI, uri: URI, raw: str | None) -> str:
    """Fill a SipURI; returns its typed key (part of the enclosing header's key)."""
    scheme = uri.scheme
    user = password = host = ""
    secure = False
    if scheme == "sip" or scheme == "sips":
        host = uri.host
        pu.host = host
        if uri.user is not None:
            user = uri.user
            pu.user = user
            if uri.password is not None:
                password = uri.password
                pu.user_password = password
        if scheme == "sips":
            secure = pu.secure = True
    elif scheme == "tel" and uri.opaque:
        user = pu.user = uri.opaque
    port = -1 if uri.port is None else uri.port
    pu.port = port
    pu.scheme = scheme
    transport = maddr = method = user_param = ""
    ttl = 0
    lr = bnc = False
    params = uri.params
    if params:
        get = params.get
        transport = get("transport") or ""
        if transport:
            pu.transport_param = transport
        maddr = get("maddr") or ""
        if maddr:
            pu.m_addr_param = maddr
        method = get("method") or ""
        if method:
            pu.method_param = method
        user_param = get("user") or ""
        if user_param:
            pu.user_param = user_param
        value = get("ttl")
        if value and value.isdigit() and len(value) < 4:
            ttl = pu.ttl_param = int(value)
        if "lr" in params:
            lr = pu.lr_param = True
        if "bnc" in params:
            bnc = pu.bnc_param = True
        pu.params.extend(_param_list(params))
    if uri.headers:
        pu.headers.extend([f"{k}={v}" for k, v in uri.headers.items()])
    key = (f"{user}\0{password}\0{host}\0{port}\0{transport}\0{maddr}\0{method}\0{user_param}\0{ttl}\0"
           f"{lr:d}{bnc:d}{secure:d}")
    if raw is not None:
        pu.raw = raw
        pu.raw_crc = _crc(key)
    return key


def _map_key(parameters: Mapping[str, str]) -> str:
    return repr(sorted(parameters.items())) if parameters else ""


# URI text of a name-addr -> (serialized SipURI, typed key): the URI of a From/To/Contact recurs while its tag or
# other header parameters change. A pure function of the text (parse errors are never cached). Bounded.
_ADDRESS_URI_CACHE: dict[str, tuple[bytes, str]] = {}


def _fill_address(pa: sipmessage_pb2.Address, na: NameAddr) -> str:
    if na.wildcard:
        pa.wildcard = True
        return "*"
    display = na.display_name
    if display is not None:
        pa.display_name = display
    text = na.uri_text
    hit = _ADDRESS_URI_CACHE.get(text)
    if hit is not None:
        pa.uri.MergeFromString(hit[0])
        return hit[1] + "\1" + (display or "")
    pu = pa.uri
    key = _fill_uri(pu, na.uri, text)
    if len(_ADDRESS_URI_CACHE) >= _VALUE_CACHE_SIZE:
        _ADDRESS_URI_CACHE.clear()
    _ADDRESS_URI_CACHE[text] = (pu.SerializeToString(deterministic=True), key)
    return key + "\1" + (display or "")


def _fill_name_addr_params(px, na: NameAddr, tag_field: bool) -> str:  # type: ignore[no-untyped-def]
    """From/To/Route/Record-Route parameters: Routr's map (all but tag) + the ordered list. Returns the
    parameter part of the typed key."""
    params = na.params
    if not params:
        return "\1"
    tag = ""
    others: dict[str, str] = {}
    for name, value in params.items():
        if name == "tag" and tag_field:
            tag = value or ""
        else:
            others[name] = "" if value is None else value
    if tag:
        px.tag = tag
    if others:
        px.parameters.update(others)
    px.params.extend(_param_list(params))
    return f"{tag}\1{_map_key(others)}"


def _from_to_key(px, address_key: str) -> str:  # type: ignore[no-untyped-def]
    return f"{address_key}\2{px.tag}\1{_map_key(px.parameters)}"


def _route_key(px, address_key: str) -> str:  # type: ignore[no-untyped-def]
    return f"{address_key}\2\1{_map_key(px.parameters)}"


def _fill_from_to(px, na: NameAddr, raw: str) -> None:  # type: ignore[no-untyped-def]
    key = _fill_address(px.address, na) + "\2" + _fill_name_addr_params(px, na, True)
    px.raw = raw
    px.raw_crc = _crc(key)


def _fill_route(px, na: NameAddr, raw: str | None) -> None:  # type: ignore[no-untyped-def]
    key = _fill_address(px.address, na) + "\2" + _fill_name_addr_params(px, na, False)
    if raw is not None:
        px.raw = raw
        px.raw_crc = _crc(key)


def _contact_tail_key(pc: sipmessage_pb2.Contact) -> str:
    return f"\2{pc.expires}\2{pc.q_value!r}"


def _fill_contact(pc: sipmessage_pb2.Contact, na: NameAddr, raw: str | None) -> None:
    key = _fill_address(pc.address, na)
    expires = -1
    pc.q_value = -1.0
    params = na.params
    if params:
        value = params.get("expires")
        if value is not None and value.isdigit() and len(value) < 10:
            expires = int(value)
        value = params.get("q")
        if value is not None:
            try:
                pc.q_value = float(value)
            except ValueError:
                pass
        pc.params.extend(_param_list(params))
    pc.expires = expires
    if raw is not None:
        pc.raw = raw
        pc.raw_crc = _crc(f"{key}\2{expires}\2{pc.q_value!r}")  # q as float32, read back


def _via_key(pv: sipmessage_pb2.Via) -> str:
    return (f"{pv.host}\0{pv.port}\0{pv.branch}\0{pv.transport}\0{pv.r_port_flag:d}\0{pv.r_port}\0"
            f"{pv.received}\0{pv.m_addr}\0{pv.ttl}")


def _fill_via(pv: sipmessage_pb2.Via, via: Via, raw: str | None) -> None:
    host = pv.host = via.host
    port = pv.port = -1 if via.port is None else via.port
    transport = pv.transport = via.transport
    branch = received = maddr = ""
    rport_flag = False
    rport = -1
    ttl = 0
    params = via.params
    if params:
        get = params.get
        branch = get("branch") or ""
        if branch:
            pv.branch = branch
        if "rport" in params:
            value = params["rport"]
            if value is None:
                rport_flag = pv.r_port_flag = True
            elif value.isdigit() and len(value) < 6:
                rport = int(value)
        received = get("received") or ""
        if received:
            pv.received = received
        maddr = get("maddr") or ""
        if maddr:
            pv.m_addr = maddr
        value = get("ttl")
        if value and value.isdigit() and len(value) < 4:
            ttl = pv.ttl = int(value)
        pv.params.extend(_param_list(params))
    pv.r_port = rport
    if raw is not None:
        pv.raw = raw
        pv.raw_crc = _crc(f"{host}\0{port}\0{branch}\0{transport}\0{rport_flag:d}\0{rport}\0{received}\0{maddr}\0{ttl}")


def _www_key(pw: sipmessage_pb2.WWWAuthenticate) -> str:
    return (f"{pw.realm}\0{pw.domain}\0{pw.scheme}\0{pw.nonce}\0{pw.algorithm}\0{pw.qop}\0{pw.opaque}\0"
            f"{pw.stale:d}")


def _authorization_key(pa: sipmessage_pb2.Authorization) -> str:
    return (f"{pa.realm}\0{pa.scheme}\0{pa.c_nonce}\0{pa.nonce}\0{pa.algorithm}\0{pa.qop}\0{pa.opaque}\0"
            f"{pa.response}\0{pa.username}\0{pa.uri}\0{pa.method}\0{pa.nonce_count}")


# auth-param = token LWS "=" LWS ( token / quoted-string ) (RFC 2617 section 1.2), comma separated. Only used to
# fill the typed fields; the header text itself travels in `raw`. Group 1 is the whole element, so the elements
# found cover the text exactly when their lengths add up to it (a gap means the text is not a plain list).
_AUTH_PARAM_RE = re.compile(
    r'([ \t]*([A-Za-z0-9\-.!%*_+`\'~]+)[ \t]*=[ \t]*("[^"\\]*(?:\\.[^"\\]*)*"[ \t]*(?=,|$)|[^,]*)(?:,|$))', re.S
)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)


def _auth_params(text: str) -> dict[str, str]:
    """Digest parameters by lower-case name, values unquoted; falls back to the strict parser when the
    text is not a plain parameter list."""
    found = _AUTH_PARAM_RE.findall(text)
    covered = 0
    params: dict[str, str] = {}
    for whole, name, value in found:
        if not whole:
            return parse_auth_params(text)
        covered += len(whole)
        value = value.rstrip(" \t")  # an unquoted value runs to the next comma, less trailing LWS
        if value[:1] == '"':
            value = value[1:-1]
            if "\\" in value:
                value = _QUOTED_PAIR_RE.sub(r"\1", value)
        params[name.lower()] = value
    if covered != len(text):
        return parse_auth_params(text)
    return params


def _split_scheme(value: str) -> tuple[str, str]:
    stripped = value.strip(" \t")
    head, space, rest = stripped.partition(" ")
    if "\t" not in head:
        return (head, rest.lstrip(" \t")) if space else (stripped, "")
    for i, ch in enumerate(stripped):
        if ch in " \t":
            return stripped[:i], stripped[i:].lstrip(" \t")
    return stripped, ""


def _fill_www_authenticate(pw: sipmessage_pb2.WWWAuthenticate, value: str) -> None:
    scheme, rest = _split_scheme(value)
    get = _auth_params(rest).get
    realm = pw.realm = get("realm", "")
    domain = pw.domain = get("domain", "")
    nonce = pw.nonce = get("nonce", "")
    algorithm = pw.algorithm = get("algorithm", "")
    qop = pw.qop = get("qop", "")
    opaque = pw.opaque = get("opaque", "")
    stale = pw.stale = get("stale", "").lower() == "true"
    pw.scheme = scheme
    pw.raw = value
    # the text of _www_key(pw), from the values just written
    pw.raw_crc = _crc(f"{realm}\0{domain}\0{scheme}\0{nonce}\0{algorithm}\0{qop}\0{opaque}\0{stale:d}")


def _fill_authorization(pa: sipmessage_pb2.Authorization, value: str, method: str) -> None:
    scheme, rest = _split_scheme(value)
    get = _auth_params(rest).get
    realm = pa.realm = get("realm", "")
    c_nonce = pa.c_nonce = get("cnonce", "")
    nonce = pa.nonce = get("nonce", "")
    algorithm = pa.algorithm = get("algorithm", "")
    qop = pa.qop = get("qop", "")
    opaque = pa.opaque = get("opaque", "")
    response = pa.response = get("response", "")
    username = pa.username = get("username", "")
    uri = pa.uri = get("uri", "")
    pa.scheme = scheme
    pa.method = method
    nc = get("nc", "")
    nonce_count = 0
    if nc:
        try:
            nonce_count = pa.nonce_count = int(nc, 16) & 0x7FFFFFFF
        except ValueError:
            pass
    pa.raw = value
    # the text of _authorization_key(pa), from the values just written
    pa.raw_crc = _crc(f"{realm}\0{scheme}\0{c_nonce}\0{nonce}\0{algorithm}\0{qop}\0{opaque}\0{response}\0"
                      f"{username}\0{uri}\0{method}\0{nonce_count}")


def to_proto(msg: Message, out: sipmessage_pb2.SIPMessage | None = None) -> sipmessage_pb2.SIPMessage:
    """Convert a parsed (or built) SIP message to Routr's ``SIPMessage`` (with routr-ray extensions)."""
    pm = SIPMessage() if out is None else out
    try:
        _to_proto(msg, pm)
    except ValueError as exc:
        if isinstance(exc, ParseError) or "surrogate" not in str(exc) and "UTF-8" not in str(exc):
            raise
        # Header text that is not UTF-8 (kept by the SIP core as surrogate escapes) cannot travel in a
        # protobuf string: replace those bytes with U+FFFD (documented loss) and convert again.
        pm.Clear()
        _to_proto(_utf8_safe_copy(msg), pm)
    return pm


def _utf8_safe(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _utf8_safe_copy(msg: Message) -> Message:
    headers = Headers((_utf8_safe(n), _utf8_safe(v)) for n, v in msg.headers.items())
    if isinstance(msg, Request):
        return Request(_utf8_safe(msg.method), _utf8_safe(msg.uri), headers, msg.body, msg.version)
    assert isinstance(msg, Response)
    return Response(msg.status, _utf8_safe(msg.reason), headers, msg.body, msg.version)


def _to_proto(msg: Message, pm: sipmessage_pb2.SIPMessage) -> None:
    if isinstance(msg, Request):
        pm.method = msg.method
        _fill_request_uri(pm, msg)
    else:
        assert isinstance(msg, Response)
        status = msg.status
        pm.response_type = response_type_for(status)
        pm.status_code = status
        pm.reason_phrase = msg.reason

    # One pass over the header lines: layout, raw values per typed kind, extensions.
    entries = msg.headers.keyed_items()
    names = [entry[1] for entry in entries]
    counts: list[int] = []
    count = counts.append
    raws: dict[str, list[str]] = {}
    ext_lines: list[int] = []  # indexes of the lines that go to extensions
    typed_kinds = _TYPED_KINDS
    list_kinds = _LIST_KINDS
    for i, (key, _, value) in enumerate(entries):
        if key in typed_kinds:
            bucket = raws.get(key)
            if key in list_kinds:
                values = split_list(value) if "," in value else [value.strip(" \t")]
                if bucket is None:
                    raws[key] = values
                else:
                    bucket.extend(values)
                count(len(values))
                continue
            if bucket is None:
                raws[key] = [value]
                count(1)
                continue
        count(0)
        ext_lines.append(i)

    if raws:
        failed = _fill_typed(msg, pm, raws)
        if failed:  # a typed header that does not parse travels as an extension (kept verbatim)
            for i, entry in enumerate(entries):
                if counts[i] and entry[0] in failed:
                    counts[i] = 0
                    ext_lines.append(i)
            ext_lines.sort()
    if ext_lines:
        add = pm.extensions.add
        for i in ext_lines:
            key, name, value = entries[i]
            if len(name) == 1:
                name = _CANONICAL.get(key, name)
            add(name=name, value=value)
    pm.header_names.extend(names)
    pm.header_value_counts.extend(counts)

    body = msg.body
    if body:
        try:
            pm.body = body.decode("utf-8")
        except UnicodeDecodeError:
            pm.body = body.decode("utf-8", "replace")
            pm.body_bytes = body


# Converted values by (kind, text as received): the serialized typed submessage. A value's conversion is a pure
# function of its text, and most values recur (the R-URI of every REGISTER, To/Contact/Route/Record-Route within
# a dialog, the Vias of a response after its request), so a hit replaces parsing and filling by one C-level
# merge. Bounded: cleared when full.
_VALUE_CACHE: dict[tuple[int, str], bytes] = {}
_VALUE_CACHE_SIZE = 8192
_K_URI, _K_VIA, _K_FROM_TO, _K_CONTACT, _K_ROUTE = range(5)


# The other direction: (kind, serialized submessage) -> its SIP text. Also a pure function; to_proto seeds it
# (an unchanged value renders as its raw text), so from_proto finds every value a processor left alone.
_TEXT_CACHE: dict[tuple[int, bytes], str] = {}


def _remember(key: tuple[int, str], sub) -> None:  # type: ignore[no-untyped-def]
    if len(_VALUE_CACHE) >= _VALUE_CACHE_SIZE:
        _VALUE_CACHE.clear()
    if len(_TEXT_CACHE) >= _VALUE_CACHE_SIZE:
        _TEXT_CACHE.clear()
    blob = _VALUE_CACHE[key] = sub.SerializeToString(deterministic=True)
    _TEXT_CACHE[(key[0], blob)] = key[1]


def _text_of(kind: int, sub, render) -> str:  # type: ignore[no-untyped-def]
    key = (kind, sub.SerializeToString(deterministic=True))
    text = _TEXT_CACHE.get(key)
    if text is None:
        text = render(sub)
        if len(_TEXT_CACHE) >= _VALUE_CACHE_SIZE:
            _TEXT_CACHE.clear()
        _TEXT_CACHE[key] = text
    return text


def _fill_list(kind: int, values: list[str], add, view, fill) -> None:  # type: ignore[no-untyped-def]
    """Fill a repeated typed field from its raw values, parsing (through the message's view) only on a miss."""
    parsed = None
    get = _VALUE_CACHE.get
    for i, raw in enumerate(values):
        key = (kind, raw)
        blob = get(key)
        sub = add()
        if blob is not None:
            sub.MergeFromString(blob)
            continue
        if parsed is None:
            parsed = view()
            if len(parsed) != len(values):
                raise ParseError("header values do not match their typed view")
        fill(sub, parsed[i], raw)
        _remember(key, sub)


def _fill_name_addrs(kind: int, values: list[str], add, fill, allow_wildcard: bool) -> None:  # type: ignore[no-untyped-def]
    """Like _fill_list for Contact/Route/Record-Route, whose views the parser does not build: each missed value
    is parsed alone (``parse_name_addr``, as the message's view would parse it)."""
    get = _VALUE_CACHE.get
    for raw in values:
        key = (kind, raw)
        blob = get(key)
        sub = add()
        if blob is not None:
            sub.MergeFromString(blob)
            continue
        fill(sub, parse_name_addr(raw, allow_wildcard), raw)
        _remember(key, sub)


def _fill_one(kind: int, raw: str, sub, view, fill) -> None:  # type: ignore[no-untyped-def]
    key = (kind, raw)
    blob = _VALUE_CACHE.get(key)
    if blob is not None:
        sub.MergeFromString(blob)
        return
    parsed = view()
    if parsed is None:
        raise ParseError("header does not parse")
    fill(sub, parsed, raw)
    _remember(key, sub)


def _fill_request_uri(pm: sipmessage_pb2.SIPMessage, msg: Request) -> None:
    key = (_K_URI, msg.uri)
    blob = _VALUE_CACHE.get(key)
    if blob is not None:
        pm.request_uri.MergeFromString(blob)
        return
    _fill_uri(pm.request_uri, msg.request_uri, msg.uri)
    _remember(key, pm.request_uri)


def _fill_typed(msg: Message, pm: sipmessage_pb2.SIPMessage, raws: dict[str, list[str]]) -> set[str]:
    """Fill typed fields from the header values (typed views parsed on cache misses only); returns the
    kinds that failed to parse."""
    failed: set[str] = set()
    for key, values in raws.items():
        try:
            if key == "via":
                _fill_list(_K_VIA, values, pm.via.add, lambda: msg.via, _fill_via)
            elif key == "from":
                _fill_one(_K_FROM_TO, values[0], getattr(pm, "from"), lambda: msg.from_, _fill_from_to)
            elif key == "to":
                _fill_one(_K_FROM_TO, values[0], pm.to, lambda: msg.to, _fill_from_to)
            elif key == "contact":
                _fill_name_addrs(_K_CONTACT, values, pm.contacts.add, _fill_contact, True)
                if pm.contacts:
                    pm.contact.CopyFrom(pm.contacts[0])
            elif key == "route":
                _fill_name_addrs(_K_ROUTE, values, pm.route.add, _fill_route, False)
            elif key == "record-route":
                _fill_name_addrs(_K_ROUTE, values, pm.record_route.add, _fill_route, False)
            elif key == "call-id":
                call_id = msg.call_id
                assert call_id is not None
                pm.call_id.call_id = call_id
            elif key == "max-forwards":
                value = msg.max_forwards
                assert value is not None
                pm.max_forwards.max_forwards = value
            elif key == "expires":
                # as Message.expires (RFC 3261 §20.19), and it must fit Routr's int32
                text = values[0].strip(" \t")
                if not text.isdigit() or not text.isascii() or int(text) > 0x7FFFFFFF:
                    raise ParseError("Expires is not a number of seconds")
                pm.expires.expires = int(text)
            elif key == "content-length":
                text = values[0].strip(" \t")  # as Message.content_length
                if not text.isdigit() or not text.isascii():
                    raise ParseError("malformed Content-Length")
                pm.content_length.content_length = int(text)
            elif key == "www-authenticate":
                _fill_www_authenticate(pm.www_authenticate, values[0])
            elif key == "authorization":
                method = msg.method if isinstance(msg, Request) else ""
                _fill_authorization(pm.authorization, values[0], method)
        except (ParseError, ValueError, AssertionError) as exc:
            if "surrogate" in str(exc):
                raise
            failed.add(key)
            _clear_kind(pm, key)
    return failed


def _clear_kind(pm: sipmessage_pb2.SIPMessage, key: str) -> None:
    field = {"via": "via", "from": "from", "to": "to", "contact": "contacts", "route": "route",
             "record-route": "record_route", "call-id": "call_id", "max-forwards": "max_forwards",
             "expires": "expires", "content-length": "content_length", "www-authenticate": "www_authenticate",
             "authorization": "authorization"}[key]
    pm.ClearField(field)
    if key == "contact":
        pm.ClearField("contact")


# ------------------------------------------------------------------------------------------------
# protobuf -> SIP

def _render_params(ext, overrides: dict[str, object], authoritative: bool) -> str:  # type: ignore[no-untyped-def]
    """Ordered ``;name[=value]`` text: the ``params`` extension with the typed ``overrides`` applied.

    ``authoritative``: the overrides list every parameter (Routr's ``parameters`` map), so extension
    parameters missing from them were removed by the processor.
    """
    out: list[str] = []
    seen: set[str] = set()
    for entry in ext:
        name = entry.partition("=")[0]
        if name in overrides:
            seen.add(name)
            value = overrides[name]
            if value is _ABSENT:
                continue
            if value is not _PRESENT:
                out.append(f";{name}" if value is None else f";{name}={value}")
                continue
        elif authoritative:
            continue
        out.append(";" + entry)
    for name, value in overrides.items():
        if name in seen or value is _ABSENT:
            continue
        out.append(f";{name}" if value is None or value is _PRESENT else f";{name}={value}")
    return "".join(out)


def _opt(value: str) -> object:
    return value if value else _ABSENT


def uri_text(pu: sipmessage_pb2.SipURI) -> str:
    """Render a SipURI (merge rule: raw while the typed fields are unchanged)."""
    raw = pu.raw
    if raw and _crc(_uri_key(pu)) == pu.raw_crc:
        return raw
    scheme = pu.scheme
    host = pu.host
    if host or scheme in ("", "sip", "sips"):
        out = "sips:" if pu.secure else "sip:"
        if pu.user:
            out += pu.user
            if pu.user_password:
                out += ":" + pu.user_password
            out += "@"
        out += format_host(host)
        if pu.port >= 0:
            out += f":{pu.port}"
    elif scheme == "tel":
        out = "tel:" + pu.user
    else:
        if raw:  # an opaque URI has no typed fields a processor could have changed
            return raw
        out = f"{scheme}:{pu.user}"
    overrides: dict[str, object] = {
        "transport": _opt(pu.transport_param),
        "maddr": _opt(pu.m_addr_param),
        "method": _opt(pu.method_param),
        "user": _opt(pu.user_param),
        "ttl": str(pu.ttl_param) if pu.ttl_param > 0 else _ABSENT,
        "lr": _PRESENT if pu.lr_param else _ABSENT,
        "bnc": _PRESENT if pu.bnc_param else _ABSENT,
    }
    out += _render_params(pu.params, overrides, False)
    if pu.headers:
        out += "?" + "&".join(pu.headers)
    return out


def _address_text(pa: sipmessage_pb2.Address) -> str:
    if pa.wildcard:
        return "*"
    uri = uri_text(pa.uri)
    name = pa.display_name
    return f"{quote(name)} <{uri}>" if name else f"<{uri}>"


def _address_key(pa: sipmessage_pb2.Address) -> str:
    if pa.wildcard:
        return "*"
    return _uri_key(pa.uri) + "\1" + pa.display_name


def _map_overrides(parameters: Mapping[str, str]) -> dict[str, object]:
    return {name: (value if value else None) for name, value in parameters.items()}


def _from_to_text(px) -> str:  # type: ignore[no-untyped-def]
    parameters = px.parameters
    raw = px.raw
    if raw and _crc(_from_to_key(px, _address_key(px.address))) == px.raw_crc:
        return raw
    overrides = _map_overrides(parameters)
    overrides["tag"] = _opt(px.tag)
    return _address_text(px.address) + _render_params(px.params, overrides, True)


def _route_text(px) -> str:  # type: ignore[no-untyped-def]
    parameters = px.parameters
    raw = px.raw
    if raw and _crc(_route_key(px, _address_key(px.address))) == px.raw_crc:
        return raw
    return _address_text(px.address) + _render_params(px.params, _map_overrides(parameters), True)


def _format_q(q: float) -> str:
    text = f"{q:.3f}".rstrip("0").rstrip(".")
    return text or "0"


def _contact_text(pc: sipmessage_pb2.Contact) -> str:
    raw = pc.raw
    if raw and _crc(_address_key(pc.address) + _contact_tail_key(pc)) == pc.raw_crc:
        return raw
    if pc.address.wildcard:
        return "*"
    overrides: dict[str, object] = {
        "expires": str(pc.expires) if pc.expires >= 0 else _ABSENT,
        "q": _format_q(pc.q_value) if pc.q_value >= 0 else _ABSENT,
    }
    return _address_text(pc.address) + _render_params(pc.params, overrides, False)


def _via_text(pv: sipmessage_pb2.Via) -> str:
    raw = pv.raw
    if raw and _crc(_via_key(pv)) == pv.raw_crc:
        return raw
    rport: object
    if pv.r_port >= 0:
        rport = str(pv.r_port)
    elif pv.r_port_flag:
        rport = None
    else:
        rport = _ABSENT
    overrides: dict[str, object] = {
        "branch": _opt(pv.branch),
        "received": _opt(pv.received),
        "maddr": _opt(pv.m_addr),
        "ttl": str(pv.ttl) if pv.ttl > 0 else _ABSENT,
        "rport": rport,
    }
    sent_by = format_host(pv.host) + (f":{pv.port}" if pv.port >= 0 else "")
    transport = (pv.transport or "UDP").upper()
    return f"SIP/2.0/{transport} {sent_by}" + _render_params(pv.params, overrides, False)


def _auth_param_text(pairs: Iterable[tuple[str, str, bool]]) -> str:
    return ", ".join(f"{n}={quote(v) if quoted else v}" for n, v, quoted in pairs if v)


def _www_authenticate_text(pw: sipmessage_pb2.WWWAuthenticate) -> str:
    raw = pw.raw
    if raw and _crc(_www_key(pw)) == pw.raw_crc:
        return raw
    pairs = [("realm", pw.realm, True), ("domain", pw.domain, True), ("nonce", pw.nonce, True),
             ("opaque", pw.opaque, True), ("stale", "true" if pw.stale else "", False),
             ("algorithm", pw.algorithm, False), ("qop", pw.qop, True)]
    return f"{pw.scheme or 'Digest'} {_auth_param_text(pairs)}"


def _authorization_text(pa: sipmessage_pb2.Authorization) -> str:
    raw = pa.raw
    if raw and _crc(_authorization_key(pa)) == pa.raw_crc:
        return raw
    pairs = [("username", pa.username, True), ("realm", pa.realm, True), ("nonce", pa.nonce, True),
             ("uri", pa.uri, True), ("response", pa.response, True), ("algorithm", pa.algorithm, False),
             ("cnonce", pa.c_nonce, True), ("opaque", pa.opaque, True), ("qop", pa.qop, False),
             ("nc", f"{pa.nonce_count:08x}" if pa.nonce_count else "", False)]
    return f"{pa.scheme or 'Digest'} {_auth_param_text(pairs)}"


def _typed_values(pm: sipmessage_pb2.SIPMessage, body_len: int) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    if pm.via:
        values["via"] = [_text_of(_K_VIA, v, _via_text) for v in pm.via]
    if pm.route:
        values["route"] = [_text_of(_K_ROUTE, r, _route_text) for r in pm.route]
    if pm.record_route:
        values["record-route"] = [_text_of(_K_ROUTE, r, _route_text) for r in pm.record_route]
    if pm.HasField("contact"):
        values["contact"] = [_text_of(_K_CONTACT, c, _contact_text) for c in (pm.contact, *pm.contacts[1:])]
    elif pm.contacts:
        values["contact"] = [_text_of(_K_CONTACT, c, _contact_text) for c in pm.contacts]
    if pm.HasField("from"):
        values["from"] = [_text_of(_K_FROM_TO, getattr(pm, "from"), _from_to_text)]
    if pm.HasField("to"):
        values["to"] = [_text_of(_K_FROM_TO, pm.to, _from_to_text)]
    if pm.HasField("call_id"):
        values["call-id"] = [pm.call_id.call_id]
    if pm.HasField("max_forwards"):
        values["max-forwards"] = [str(pm.max_forwards.max_forwards)]
    if pm.HasField("expires"):
        values["expires"] = [str(pm.expires.expires)]
    if pm.HasField("www_authenticate"):
        values["www-authenticate"] = [_www_authenticate_text(pm.www_authenticate)]
    if pm.HasField("authorization"):
        values["authorization"] = [_authorization_text(pm.authorization)]
    values["content-length"] = [str(body_len)]
    return values


def _body_of(pm: sipmessage_pb2.SIPMessage) -> bytes:
    raw = pm.body_bytes
    text = pm.body
    if raw and text == raw.decode("utf-8", "replace"):
        return raw
    return text.encode("utf-8")


_Entry = tuple[str, str, str]  # (lookup key, name as written, value)


def _key(name: str) -> str:
    return _KEY_MEMO.get(name) or _memo_key(name)


def _header_entries(pm: sipmessage_pb2.SIPMessage, body: bytes) -> list[_Entry]:
    typed = _typed_values(pm, len(body))
    exts = [(e.name, e.value) for e in pm.extensions]
    names = pm.header_names
    counts = pm.header_value_counts
    entries: list[_Entry] = []
    append = entries.append
    if not names or len(names) != len(counts):
        # No layout (a Routr processor dropped it, or the message was built from scratch): Routr's order.
        for key in _ROUTR_ORDER:
            for value in typed.get(key, ()):
                append((key, _CANONICAL[key], value))
        entries.extend([(_key(name), name, value) for name, value in exts])
        if pm.HasField("content_length") or body:
            append(("content-length", "Content-Length", typed["content-length"][0]))
        return entries

    plan_key = (tuple(names), tuple(counts), tuple(typed), tuple(map(len, typed.values())), len(exts))
    plan = _PLANS.get(plan_key)
    if plan is None:
        plan = _make_plan(plan_key[0], plan_key[1], typed, len(exts))
        if len(_PLANS) >= _PLANS_SIZE:
            _PLANS.clear()
        _PLANS[plan_key] = plan
    ops, ext_tail, add_content_length = plan
    for op in ops:
        kind = op[0]
        if kind == _OP_TYPED:
            _, key, name, start, end = op
            values = typed[key]
            append((key, name, values[start] if end == start + 1 else ", ".join(values[start:end])))
        elif kind == _OP_EXT:
            _, key, name, index = op
            ext_name, value = exts[index]
            if ext_name != name:
                ext_key = _key(ext_name)
                if ext_key != key:
                    key, name = ext_key, ext_name
            append((key, name, value))
        else:
            for key in op[1]:
                name = _CANONICAL[key]
                for value in typed[key]:
                    append((key, name, value))
    if ext_tail < len(exts):
        entries.extend([(_key(name), name, value) for name, value in exts[ext_tail:]])
    if add_content_length and (pm.HasField("content_length") or body):
        append(("content-length", "Content-Length", typed["content-length"][0]))
    return entries


# Header layout plans: how the lines of a layout are filled from the typed values and extensions. A plan is a
# pure function of the layout (names, value counts), of which typed kinds carry how many values and of the number
# of extensions, and the same UA sends the same layout again and again. Bounded: cleared when full.
_OP_TYPED, _OP_EXT, _OP_NEW = range(3)
_Plan = tuple[list[tuple], int, bool]  # type: ignore[type-arg]
_PLANS: dict[tuple, _Plan] = {}  # type: ignore[type-arg]
_PLANS_SIZE = 1024


def _make_plan(names: tuple[str, ...], counts: tuple[int, ...], typed: dict[str, list[str]], n_ext: int) -> _Plan:
    """Header order (merge rule 2 and 5): each layout line in turn, a typed kind's values spread over its lines
    (all the remaining ones on its last line), kinds new to the message after the last Via line (or first
    when there is none), extensions in order, the extensions past the layout at the end."""
    keys = [_key(n) for n in names]
    last_line = {key: i for i, (key, count) in enumerate(zip(keys, counts, strict=True)) if count}
    positions = dict.fromkeys(typed, 0)
    ext_index = 0
    ops: list[tuple] = []  # type: ignore[type-arg]
    new_kinds = tuple(k for k in _ROUTR_ORDER if k in typed and k not in last_line)
    if new_kinds and "via" not in last_line:
        ops.append((_OP_NEW, new_kinds))
        new_kinds = ()
    for i, (name, count, key) in enumerate(zip(names, counts, keys, strict=True)):
        if not count:
            if ext_index < n_ext:
                ops.append((_OP_EXT, key, name, ext_index))
                ext_index += 1
            continue
        values = typed.get(key)
        if values is not None:
            start = positions[key]
            end = len(values) if last_line[key] == i else min(start + count, len(values))
            if end > start:
                ops.append((_OP_TYPED, key, name, start, end))
                positions[key] = end
        if new_kinds and key == "via" and last_line["via"] == i:
            ops.append((_OP_NEW, new_kinds))
            new_kinds = ()
    return ops, ext_index, "content-length" not in last_line


def _start_line(pm: sipmessage_pb2.SIPMessage) -> tuple[str, str, int, str]:
    """("request", method, 0, uri) or ("response", "", status, reason)."""
    kind = pm.WhichOneof("message_type")
    if kind == "request_uri":
        method = pm.method or _cseq_method(pm)
        if not method:
            raise ConversionError("request without a method (no SIPMessage.method and no CSeq extension)")
        return "request", method, 0, _text_of(_K_URI, pm.request_uri, uri_text)
    if kind == "response_type":
        return "response", "", status_of(pm), pm.reason_phrase
    raise ConversionError("SIPMessage has neither request_uri nor response_type")


def from_proto(pm: sipmessage_pb2.SIPMessage) -> Request | Response:
    """Convert a ``SIPMessage`` (possibly changed by a processor) back to a SIP message (merge rule above)."""
    kind, method, status, text = _start_line(pm)
    body = _body_of(pm)
    headers = Headers.from_keyed(_header_entries(pm, body))
    if kind == "request":
        return Request(method, text, headers, body)
    return Response(status, text, headers, body)


def to_sip_bytes(pm: sipmessage_pb2.SIPMessage) -> bytes:
    """The wire bytes of ``from_proto(pm)`` without building the message object (same output as
    ``bytes(from_proto(pm))``), for a caller that only sends it."""
    kind, method, status, text = _start_line(pm)
    body = _body_of(pm)
    entries = _header_entries(pm, body)
    start = f"{method} {text} SIP/2.0\r\n" if kind == "request" else f"SIP/2.0 {status} {text}\r\n"
    lines = "".join([f"{name}: {value}\r\n" for _, name, value in entries])
    if not any(entry[0] == "content-length" for entry in entries):
        lines += f"Content-Length: {len(body)}\r\n"
    return (start + lines + "\r\n").encode("utf-8", "surrogateescape") + body


def _cseq_method(pm: sipmessage_pb2.SIPMessage) -> str:
    for ext in pm.extensions:
        if header_key(ext.name) == "cseq":
            parts = ext.value.split()
            return parts[1] if len(parts) == 2 else ""
    return ""


# ------------------------------------------------------------------------------------------------
# MessageRequest / MessageResponse

_NetLike = processor_pb2.NetInterface | tuple[str, int, str]


def _net(value: _NetLike) -> processor_pb2.NetInterface:
    if isinstance(value, tuple):
        return net_interface(*value)
    return value


def make_message_request(
    msg: Message,
    *,
    edge_port_ref: str,
    sender: _NetLike,
    listening_points: Iterable[_NetLike] = (),
    external_addrs: Iterable[str] = (),
    localnets: Iterable[str] = (),
    metadata: Mapping[str, str] | None = None,
) -> processor_pb2.MessageRequest:
    """Build the ``MessageRequest`` an EdgePort sends to the dispatcher (routr.md §2.2, §5.4).

    ``ref`` is the Call-ID; ``method`` the request method or, for a response, the CSeq method. ``sender``
    is chosen by the caller (Routr uses the top Via sent-by for requests; the packet source is safer).
    """
    req = MessageRequest()
    req.ref = msg.call_id or ""
    req.edge_port_ref = edge_port_ref
    if isinstance(msg, Request):
        req.method = method_enum(msg.method)
    else:
        cseq = msg.cseq
        req.method = method_enum(cseq.method) if cseq is not None else 0
    req.sender.CopyFrom(_net(sender))
    for lp in listening_points:
        req.listening_points.append(_net(lp))
    req.external_addrs.extend(external_addrs)
    req.localnets.extend(localnets)
    to_proto(msg, req.message)
    if metadata:
        req.metadata.update(metadata)
    return req


def read_message_response(resp: processor_pb2.MessageResponse) -> Request | Response:
    """The SIP message a processor answered with."""
    if not resp.HasField("message"):
        raise ConversionError("MessageResponse without a message")
    return from_proto(resp.message)


def make_message_response(
    msg: Message | sipmessage_pb2.SIPMessage,
    *,
    sender: _NetLike | None = None,
    metadata: Mapping[str, str] | None = None,
) -> processor_pb2.MessageResponse:
    """Build a processor's ``MessageResponse`` around a SIP message (converted) or a SIPMessage."""
    resp = MessageResponse()
    if isinstance(msg, Message):
        to_proto(msg, resp.message)
    else:
        resp.message.CopyFrom(msg)
    if sender is not None:
        resp.sender.CopyFrom(_net(sender))
    if metadata:
        resp.metadata.update(metadata)
    return resp


__all__ = [
    "ConversionError", "MessageRequest", "MessageResponse", "NetInterface", "SIPMessage", "from_proto",
    "make_message_request", "make_message_response", "method_enum", "net_interface", "read_message_response",
    "response_type_for", "status_of", "to_proto", "to_sip_bytes", "transport_enum", "transport_name", "uri_text",
]
