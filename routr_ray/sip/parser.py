"""Whole-message parsing (RFC 3261 §7, §18.3): a UDP datagram, a WebSocket message or one message cut
from a stream by the StreamFramer.

What ``parse`` checks, and nothing more (the rest is checked lazily by the typed views):
- the start line (strict single-SP separators, method token, absolute Request-URI; SIP/2.0 else 505),
- header lines (token names, line folding, no stray CR/LF),
- the headers a server needs before it can answer (RFC 3261 §8.1.1, §8.2): Via (all values), From,
  To, Call-ID, CSeq present and well-formed, at most one of each singleton header, CSeq method equal
  to the request method, Max-Forwards 0-255, Content-Length a single non-negative integer,
- SIP/SIPS/TEL Request-URIs fully (an IPv6 host must be bracketed, RFC 5118 §4.2; no escaped headers,
  RFC 3261 §19.1.1 table 1); other schemes only as absolute URIs (416 is the router's call),
- the body against Content-Length: longer is truncated, shorter is 400 (RFC 3261 §18.3). Without
  Content-Length (UDP only) the body is the rest of the datagram.
Errors in a response have status None: a response is never answered, only dropped.
"""

from __future__ import annotations

import re

from .errors import ParseError
from .fields import parse_cseq, parse_name_addr, parse_via
from .headers import Entry, Headers, header_key
from .message import _ENCODING, _ERRORS, Message, Request, Response, max_forwards_value
from .syntax import TOKEN_RE, split_list
from .uri import parse_uri

MAX_MESSAGE_SIZE = 65535  # largest UDP datagram; streams use the same bound per message by default

_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.I)
_SCHEME_PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_SINGLETONS = ("from", "to", "call-id", "cseq", "max-forwards", "content-length")
_WSP = " \t"


def parse(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> Request | Response:
    """Parse one whole SIP message. Raises ParseError (with the status to answer) on bad syntax."""
    is_response = data[:4] == b"SIP/" or (data[:1] in (b"\r", b"\n") and data.lstrip(b"\r\n")[:4] == b"SIP/")
    try:
        if len(data) > max_size:
            raise ParseError(f"message larger than {max_size} bytes", 413)
        return _parse(data)
    except ParseError as error:
        if is_response:
            error.status = None
        raise
    except (ValueError, IndexError) as error:  # defensive: never let a stray error escape as non-ParseError
        raise ParseError(f"malformed message: {error}", None if is_response else 400) from None


def _parse(data: bytes) -> Request | Response:
    start = 0
    # RFC 3261 §7.5: CRLFs before the start line are ignored.
    while data[start : start + 2] == b"\r\n":
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end >= 0:
        sep = "\r\n"
        body_start = end + 4
    else:
        end = data.find(b"\n\n", start)
        if end < 0:
            raise ParseError("header section not terminated by an empty line")
        sep = "\n"  # liberal: a message written with bare LF line ends (no CRLF CRLF anywhere)
        body_start = end + 2
    head = data[start:end].decode(_ENCODING, _ERRORS)
    lines = head.split(sep)
    if sep == "\r\n":
        if head.count("\r") != len(lines) - 1 or head.count("\n") != len(lines) - 1:
            raise ParseError("stray CR or LF inside the header section")
    elif "\r" in head:
        raise ParseError("mixed line ends in the header section")

    entries = _header_entries(lines, sep)
    headers = Headers._from_entries(entries)

    first = lines[0]
    message: Request | Response
    if first[:4] == "SIP/":
        message = _response(first, headers)
    else:
        message = _request(first, headers)

    # Content-Length and body (RFC 3261 §18.3, §20.14)
    cl_values = [e[2] for e in entries if e[0] == "content-length"]
    available = len(data) - body_start
    if cl_values:
        if len(cl_values) > 1:
            raise ParseError("more than one Content-Length")
        value = cl_values[0]
        if not value.isdigit() or not value.isascii():
            raise ParseError(f"malformed Content-Length {value!r}")
        length = int(value)
        if length > available:
            raise ParseError("body shorter than Content-Length")
        end_of_message = body_start + length
    else:
        length = available
        end_of_message = len(data)
    message._body = data[body_start:end_of_message]
    message._raw = data[start:end_of_message] if start or end_of_message != len(data) else data
    message._raw_start = first
    message._raw_gen = headers.generation
    message._raw_headers = headers
    _check_core_headers(message, entries)
    return message


# header name as received -> (lookup key, name without trailing WSP); only valid token names get in
_NAME_CACHE: dict[str, tuple[str, str]] = {}


def _header_name(name: str, line: str) -> tuple[str, str]:
    clean = name.rstrip(_WSP)
    if not TOKEN_RE.fullmatch(clean):
        raise ParseError(f"invalid header name {line[:40]!r}")
    known = (header_key(clean), clean)
    if len(_NAME_CACHE) < 4096:
        _NAME_CACHE[name] = known
    return known


def _header_entries(lines: list[str], sep: str) -> list[Entry]:
    entries: list[Entry] = []
    append = entries.append
    cache = _NAME_CACHE
    keep_raw = sep == "\r\n"
    for index in range(1, len(lines)):
        line = lines[index]
        first = line[:1]
        if first == " " or first == "\t":
            # RFC 3261 §7.3.1 line folding: the continuation is equivalent to a single SP.
            if not entries:
                raise ParseError("continuation line before the first header")
            key, name, value, raw = entries[-1]
            value = (value + " " + line.strip(_WSP)).strip(_WSP) if value else line.strip(_WSP)
            entries[-1] = (key, name, value, raw + sep + line if raw is not None else None)
            continue
        name, colon, value = line.partition(":")
        known = cache.get(name)
        if known is None:
            if not colon:
                raise ParseError(f"header line without ':' {line[:40]!r}")
            known = _header_name(name, line)
        elif not colon:
            raise ParseError(f"header line without ':' {line[:40]!r}")
        append((known[0], known[1], value.strip(_WSP), line if keep_raw else None))
    return entries


def _request(line: str, headers: Headers) -> Request:
    # Request-Line = Method SP Request-URI SP SIP-Version (RFC 3261 §25.1): exactly one SP each.
    parts = line.split(" ")
    if len(parts) != 3:
        raise ParseError("malformed Request-Line")
    method, uri, version = parts
    if not _VERSION_RE.fullmatch(version):
        raise ParseError(f"malformed SIP-Version {version[:20]!r}")
    if version.upper() != "SIP/2.0":
        raise ParseError(f"SIP version {version!r} not supported", 505)
    if not TOKEN_RE.fullmatch(method):
        raise ParseError("malformed method")
    if not _SCHEME_PREFIX_RE.match(uri):
        raise ParseError("Request-URI is not an absolute URI")
    request = Request(method, uri, headers, b"", version)
    if uri in _VALID_RURIS:  # checked before: Request.request_uri parses it again on first use
        return request
    ruri = parse_uri(uri)
    if ruri.headers and ruri.is_sip:
        raise ParseError("headers are not allowed in a Request-URI (RFC 3261 §19.1.1)")
    request._ruri = ruri
    if len(_VALID_RURIS) >= 4096:
        _VALID_RURIS.clear()
    _VALID_RURIS.add(uri)
    return request


# Request-URIs that passed the checks above. Whether a URI text is valid is a pure function of the text, and the
# same few R-URIs (the registrar's domain, the users of a dialog) recur. Bounded: cleared when full.
_VALID_RURIS: set[str] = set()


def _response(line: str, headers: Headers) -> Response:
    # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase (RFC 3261 §25.1)
    version, _, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if version.upper() != "SIP/2.0":
        raise ParseError(f"SIP version {version[:20]!r} not supported", None)
    if len(code) != 3 or not code.isdigit() or not code.isascii() or not "1" <= code[0] <= "6":
        raise ParseError(f"malformed status code {code[:20]!r}", None)
    return Response(int(code), reason, headers, b"", version)


def _check_core_headers(message: Message, entries: list[Entry]) -> None:
    singles: dict[str, str] = {}
    via_lines: list[str] = []
    for entry in entries:
        key = entry[0]
        if key == "via":
            via_lines.append(entry[2])
        elif key in _SINGLETONS:
            if key in singles:
                raise ParseError(f"more than one {key} header")
            singles[key] = entry[2]
    if not via_lines:
        raise ParseError("missing mandatory Via header")
    try:
        from_value = singles["from"]
        to_value = singles["to"]
        call_id = singles["call-id"]
        cseq_value = singles["cseq"]
    except KeyError as missing:
        raise ParseError(f"missing mandatory {missing.args[0]} header") from None
    views = message._views
    message._views_headers = message.headers
    message._views_gen = message.headers.generation
    vias = []
    for line in via_lines:
        for part in split_list(line):
            if not part:
                raise ParseError("empty element in Via header")
            vias.append(parse_via(part))
    views["via"] = vias
    views["from"] = parse_name_addr(from_value)
    views["to"] = parse_name_addr(to_value)
    # Call-ID = word [ "@" word ] (RFC 3261 §20.8): no whitespace inside.
    if not call_id or " " in call_id or "\t" in call_id:
        raise ParseError("malformed Call-ID")
    views["call-id"] = call_id
    cseq = views["cseq"] = parse_cseq(cseq_value)
    if message.is_request and cseq.method != message.method:  # type: ignore[attr-defined]
        # RFC 3261 §8.1.1.5: the CSeq method MUST match the request method.
        raise ParseError("CSeq method does not match the request method")
    max_forwards = singles.get("max-forwards")
    if max_forwards is not None:  # the view Message.max_forwards would build, from the line found above
        views["max-forwards"] = max_forwards_value(max_forwards)
