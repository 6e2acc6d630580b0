"""SIP requests and responses (RFC 3261 §7) with lazily parsed, cached typed header views.

Serialization (``bytes(message)``): an unmodified parsed message gives back exactly the bytes it was
parsed from (less leading CRLFs and datagram bytes past Content-Length, RFC 3261 §18.3). After a change,
the message is rebuilt: the start line from its fields, unchanged header lines exactly as received
(folding included), changed/new ones as ``Name: value``, then the body. A rebuilt message that has no
Content-Length header gets ``Content-Length: <len(body)>`` appended on output (§20.14: mandatory on streams).

Typed views (``via``, ``from_``, ...) are snapshots: to change a header, change ``headers`` (e.g.
``headers.replace_first_value("Via", str(via))``); views are re-parsed after any header change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import ParseError
from .fields import CSeq, NameAddr, Via, parse_cseq, parse_name_addr, parse_via
from .headers import Headers
from .syntax import split_list
from .uri import URI, parse_uri

_ENCODING = "utf-8"
_ERRORS = "surrogateescape"  # bytes that are not UTF-8 survive a decode/encode round trip

MAX_EXPIRES = 2**32 - 1

# RFC 3261 §21 reason phrases (plus a few later ones), used by Request.make_response
REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued", 183: "Session Progress",
    200: "OK", 202: "Accepted", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service", 400: "Bad Request",
    401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Timeout", 410: "Gone", 413: "Request Entity Too Large", 414: "Request-URI Too Long",
    415: "Unsupported Media Type", 416: "Unsupported URI Scheme", 420: "Bad Extension",
    421: "Extension Required", 423: "Interval Too Brief", 429: "Too Many Requests",
    439: "First Hop Lacks Outbound Support", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


def _one(message: Message, key: str) -> str | None:
    return message.headers.get(key)


def _name_addr_list(message: Message, key: str, allow_wildcard: bool = False) -> list[NameAddr]:
    out: list[NameAddr] = []
    for line in message.headers.get_lines(key):
        for part in split_list(line):
            if not part:
                raise ParseError(f"empty element in {key} header")
            out.append(parse_name_addr(part, allow_wildcard))
    return out


def _view_via(message: Message) -> list[Via]:
    out: list[Via] = []
    for line in message.headers.get_lines("via"):
        for part in split_list(line):
            if not part:
                raise ParseError("empty element in Via header")
            out.append(parse_via(part))
    return out


def _view_from(message: Message) -> NameAddr | None:
    value = _one(message, "from")
    return None if value is None else parse_name_addr(value)


def _view_to(message: Message) -> NameAddr | None:
    value = _one(message, "to")
    return None if value is None else parse_name_addr(value)


def _view_contacts(message: Message) -> list[NameAddr]:
    return _name_addr_list(message, "contact", allow_wildcard=True)


def _view_routes(message: Message) -> list[NameAddr]:
    return _name_addr_list(message, "route")


def _view_record_routes(message: Message) -> list[NameAddr]:
    return _name_addr_list(message, "record-route")


def _view_call_id(message: Message) -> str | None:
    value = _one(message, "call-id")
    if value is None:
        return None
    # Call-ID = word [ "@" word ] (RFC 3261 §20.8): no whitespace inside.
    if not value or " " in value or "\t" in value:
        raise ParseError("malformed Call-ID")
    return value


def _view_cseq(message: Message) -> CSeq | None:
    value = _one(message, "cseq")
    return None if value is None else parse_cseq(value)


def _digits(value: str, what: str) -> int:
    value = value.strip(" \t")
    if not value.isdigit() or not value.isascii():
        raise ParseError(f"malformed {what} {value!r}")
    return int(value)


def max_forwards_value(value: str) -> int:
    """A Max-Forwards header value as a number (RFC 3261 §20.22: 0-255); ParseError otherwise."""
    number = _digits(value, "Max-Forwards")
    if number > 255:
        raise ParseError("Max-Forwards larger than 255")
    return number


def _view_max_forwards(message: Message) -> int | None:
    value = _one(message, "max-forwards")
    return None if value is None else max_forwards_value(value)


def _view_expires(message: Message) -> int | None:
    value = _one(message, "expires")
    if value is None:
        return None
    # RFC 3261 §20.19: "Malformed values SHOULD be treated as equivalent to 3600"; we report None and let
    # the registrar apply its default. Values past 2**32-1 are malformed too (RFC 4475 §3.1.2.4).
    value = value.strip(" \t")
    if not value.isdigit() or not value.isascii() or int(value) > MAX_EXPIRES:
        return None
    return int(value)


def _view_content_length(message: Message) -> int | None:
    value = _one(message, "content-length")
    return None if value is None else _digits(value, "Content-Length")


class Message:
    """Base of Request and Response."""

    __slots__ = ("headers", "_body", "version", "_raw", "_raw_start", "_raw_gen", "_raw_headers",
                 "_views", "_views_gen", "_views_headers")

    is_request: bool = False

    def __init__(self, headers: Headers | None = None, body: bytes = b"", version: str = "SIP/2.0") -> None:
        self.headers = headers if headers is not None else Headers()
        self._body = bytes(body)
        self.version = version
        self._raw: bytes | None = None
        self._raw_start = ""
        self._raw_gen = -1
        self._raw_headers: Headers | None = None
        self._views: dict[str, Any] = {}
        self._views_gen = -1
        self._views_headers: Headers | None = None

    # body ----------------------------------------------------------------------------------------
    @property
    def body(self) -> bytes:
        return self._body

    @body.setter
    def body(self, value: bytes) -> None:
        self.set_body(value)

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        """Replace the body and set Content-Length (and Content-Type when given) to match."""
        self._body = bytes(body)
        self.headers.set("Content-Length", str(len(self._body)))
        if content_type is not None:
            self.headers.set("Content-Type", content_type)

    # serialization -------------------------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def __bytes__(self) -> bytes:
        headers = self.headers
        if (
            self._raw is not None
            and headers is self._raw_headers
            and headers.generation == self._raw_gen
            and self.start_line() == self._raw_start
        ):
            return self._raw
        text = self.start_line() + "\r\n" + headers.render()
        if "content-length" not in headers:
            text += f"Content-Length: {len(self._body)}\r\n"
        return (text + "\r\n").encode(_ENCODING, _ERRORS) + self._body

    def copy(self) -> Message:
        clone = self.__class__.__new__(self.__class__)
        Message.__init__(clone, self.headers.copy(), self._body, self.version)
        self._copy_start_into(clone)
        if self._raw is not None and self.headers is self._raw_headers and self.headers.generation == self._raw_gen:
            clone._raw = self._raw
            clone._raw_start = self._raw_start
            clone._raw_gen = clone.headers.generation
            clone._raw_headers = clone.headers
        return clone

    def _copy_start_into(self, clone: Message) -> None:
        raise NotImplementedError

    # typed views ---------------------------------------------------------------------------------
    def _view(self, name: str, build: Callable[[Message], Any]) -> Any:
        headers = self.headers
        if headers is self._views_headers and headers.generation == self._views_gen:
            views = self._views
            if name in views:  # the common case: a view the parser (or an earlier read) already built
                return views[name]
        else:
            self._views = {}
            self._views_headers = headers
            self._views_gen = headers.generation
        value = self._views[name] = build(self)
        return value

    def replace_top_via(self, via: Via) -> None:
        """Write the top Via back into the headers after changing its view in place (``received``/``rport``,
        RFC 3261 §18.2.1, RFC 3581 §4). Only that value's text changes, so when ``via`` is the current top Via
        view every other typed view stays valid instead of being parsed again."""
        headers = self.headers
        current = headers is self._views_headers and headers.generation == self._views_gen
        vias = self._views.get("via") if current else None
        headers.replace_first_value("Via", str(via))
        if vias and vias[0] is via:
            self._views_gen = headers.generation

    @property
    def via(self) -> list[Via]:
        """Every Via value across all Via/v headers, top first."""
        return self._view("via", _view_via)

    @property
    def top_via(self) -> Via | None:
        vias = self.via
        return vias[0] if vias else None

    @property
    def from_(self) -> NameAddr | None:
        return self._view("from", _view_from)

    @property
    def to(self) -> NameAddr | None:
        return self._view("to", _view_to)

    @property
    def contacts(self) -> list[NameAddr]:
        """Every Contact value; ``Contact: *`` gives ``[NameAddr(wildcard=True)]``."""
        return self._view("contact", _view_contacts)

    @property
    def call_id(self) -> str | None:
        return self._view("call-id", _view_call_id)

    @property
    def cseq(self) -> CSeq | None:
        return self._view("cseq", _view_cseq)

    @property
    def max_forwards(self) -> int | None:
        return self._view("max-forwards", _view_max_forwards)

    @property
    def expires(self) -> int | None:
        """Expires header in seconds; None when absent or malformed (RFC 3261 §20.19)."""
        return self._view("expires", _view_expires)

    @property
    def routes(self) -> list[NameAddr]:
        return self._view("route", _view_routes)

    @property
    def record_routes(self) -> list[NameAddr]:
        return self._view("record-route", _view_record_routes)

    @property
    def content_length(self) -> int | None:
        return self._view("content-length", _view_content_length)

    @property
    def content_type(self) -> str | None:
        return self.headers.get("content-type")


class Request(Message):
    __slots__ = ("method", "uri", "_ruri", "_ruri_text")

    is_request = True

    def __init__(
        self,
        method: str,
        uri: str | URI,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body, version)
        self.method = method
        self._ruri: URI | None = uri if isinstance(uri, URI) else None
        self.uri: str = str(uri)
        self._ruri_text = self.uri

    @property
    def request_uri(self) -> URI:
        """Parsed Request-URI (cached; ParseError(400) when malformed). Setting it updates ``uri``."""
        if self._ruri is None or self._ruri_text is not self.uri:
            self._ruri = parse_uri(self.uri)
            self._ruri_text = self.uri
        return self._ruri

    @request_uri.setter
    def request_uri(self, value: URI) -> None:
        self.uri = str(value)
        self._ruri = value
        self._ruri_text = self.uri

    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def make_response(self, status: int, reason: str | None = None, to_tag: str | None = None) -> Response:
        """A response per RFC 3261 §8.2.6.2: Via (all, in order), From, Call-ID and CSeq copied as
        received; To copied, with ``to_tag`` added when the To has no tag and status > 100. No body,
        ``Content-Length: 0``. Record-Route (§12.1.1) and other headers are the caller's business."""
        headers = Headers()
        entries = headers._entries
        for entry in self.headers._entries:
            key = entry[0]
            if key in ("via", "from", "call-id", "cseq"):
                entries.append(entry)
            elif key == "to":
                value = entry[2]
                if to_tag is not None and status > 100 and (self.to is None or self.to.tag is None):
                    entries.append((key, entry[1], f"{value};tag={to_tag}", None))
                else:
                    entries.append(entry)
        headers.add("Content-Length", "0")
        return Response(status, REASON_PHRASES.get(status, "") if reason is None else reason, headers)

    def _copy_start_into(self, clone: Message) -> None:
        assert isinstance(clone, Request)
        clone.method = self.method
        clone.uri = self.uri
        clone._ruri = None
        clone._ruri_text = self.uri

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    __slots__ = ("status", "reason")

    is_request = False

    def __init__(
        self,
        status: int,
        reason: str = "",
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body, version)
        self.status = status
        self.reason = reason

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def _copy_start_into(self, clone: Message) -> None:
        assert isinstance(clone, Response)
        clone.status = self.status
        clone.reason = self.reason

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"
