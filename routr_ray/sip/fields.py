"""Typed views of header values: Via, name-addr (From/To/Contact/Route/...), CSeq (RFC 3261 §20, §25)."""

from __future__ import annotations

import re

from .errors import ParseError
from .syntax import TOKEN_CHARS, TOKEN_RE, parse_params, quote, render_params, scan_quoted, unquote
from .uri import URI, format_host, parse_host_port, parse_uri

MAX_CSEQ = 2**32 - 1  # RFC 3261 §8.1.1.5: the sequence number MUST be expressible as a 32-bit unsigned int

# Via = sent-protocol LWS sent-by *( SEMI via-params ); sent-protocol = name SLASH version SLASH transport,
# SLASH = SWS "/" SWS, sent-by = host [ COLON port ] (RFC 3261 §20.42, §25.1). LWS allowed around the
# separators (RFC 4475 §3.1.1.1 wsinv).
_VIA_RE = re.compile(
    rf"([{TOKEN_CHARS}]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)[ \t]*/[ \t]*([{TOKEN_CHARS}]+)[ \t]+"
    r"(?:\[([^\]\s]*)\]|([A-Za-z0-9_](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_])?\.?))"
    r"(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*(?:;(.*))?",
    re.S,
)
# the usual name-addr: optional quoted or token display name, <URI>, optional parameters
_NAME_ADDR_RE = re.compile(
    rf'(?:"((?:[^"\\]|\\.)*)"[ \t]*|([{TOKEN_CHARS}]+(?:[ \t]+[{TOKEN_CHARS}]+)*)[ \t]*)?'
    r"<([^<>\s]+:[^<>\s]*)>[ \t]*(?:;(.*))?",
    re.S,
)
_CSEQ_RE = re.compile(rf"[ \t]*([0-9]+)[ \t]+([{TOKEN_CHARS}]+)[ \t]*")
_DISPLAY_TOKENS_RE = re.compile(rf"[{TOKEN_CHARS}]+(?:[ \t]+[{TOKEN_CHARS}]+)*")


class Via:
    """One Via value (RFC 3261 §20.42). ``params`` keep their order; ``rport`` with no value is None."""

    __slots__ = ("protocol", "transport", "host", "port", "params")

    def __init__(
        self,
        transport: str = "UDP",
        host: str = "",
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.protocol = protocol
        self.transport = transport.upper()
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = {} if params is None else params

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> str | None:
        return self.params.get("rport")

    def sent_by(self) -> str:
        host = format_host(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by()}{render_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other) if isinstance(other, Via) else NotImplemented

    __hash__ = None  # type: ignore[assignment]


def parse_via(text: str) -> Via:
    """Parse one Via value (already split from its list)."""
    m = _VIA_RE.fullmatch(text.strip(" \t"))
    if m is None:
        raise ParseError(f"malformed Via {text!r}")
    name, version, transport, ipv6, host, port_text, param_text = m.groups()
    if ipv6 is not None:
        host, _ = parse_host_port(f"[{ipv6}]")
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise ParseError(f"invalid Via port in {text!r}")
    params = parse_params(param_text) if param_text is not None else {}
    if params.get("rport") == "":
        params["rport"] = None  # "rport=" asks for rport as a bare "rport" does (RFC 3581 §3)
    return Via(transport, host, port, params, f"{name.upper()}/{version}")


class NameAddr:
    """A name-addr / addr-spec with header parameters: From, To, Contact, Route, Record-Route, ...

    ``uri`` is parsed on first access (its text is in ``uri_text``); ``Contact: *`` gives
    ``wildcard=True`` and an empty URI text.
    """

    __slots__ = ("display_name", "uri_text", "_uri", "params", "wildcard")

    def __init__(
        self,
        uri: URI | str | None = None,
        display_name: str | None = None,
        params: dict[str, str | None] | None = None,
        wildcard: bool = False,
    ) -> None:
        self.display_name = display_name
        self._uri: URI | None
        if isinstance(uri, URI):
            self._uri, self.uri_text = uri, str(uri)
        else:
            self._uri, self.uri_text = None, uri or ""
        self.params: dict[str, str | None] = {} if params is None else params
        self.wildcard = wildcard

    @property
    def uri(self) -> URI:
        """Parsed URI (ParseError(400) if the URI text is malformed)."""
        if self._uri is None:
            if self.wildcard:
                raise ParseError("the Contact wildcard '*' has no URI")
            self._uri = parse_uri(self.uri_text)
        return self._uri

    @uri.setter
    def uri(self, value: URI) -> None:
        self._uri, self.uri_text = value, str(value)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @tag.setter
    def tag(self, value: str | None) -> None:
        if value is None:
            self.params.pop("tag", None)
        else:
            self.params["tag"] = value

    def __str__(self) -> str:
        if self.wildcard:
            return "*"
        uri = str(self._uri) if self._uri is not None else self.uri_text
        if self.display_name is not None:
            name = self.display_name
            shown = name if _DISPLAY_TOKENS_RE.fullmatch(name) else quote(name)
            head = f"{shown} <{uri}>"
        else:
            head = f"<{uri}>"
        return head + render_params(self.params)

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return str(self) == str(other) if isinstance(other, NameAddr) else NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> NameAddr:
        copy = NameAddr(self.uri_text, self.display_name, dict(self.params), self.wildcard)
        if self._uri is not None:
            copy._uri = self._uri.copy()
        return copy


def parse_name_addr(text: str, allow_wildcard: bool = False) -> NameAddr:
    """Parse one (name-addr / addr-spec) *( SEMI generic-param ) value (RFC 3261 §20.10, §25.1).

    The URI itself is checked lazily (on ``.uri``); the structure (quotes, <>, display name tokens,
    parameters) is checked here.
    """
    s = text.strip(" \t")
    m = _NAME_ADDR_RE.fullmatch(s)
    if m is not None:
        quoted, words, uri_text, param_text = m.groups()
        display = words if quoted is None else (unquote(f'"{quoted}"') if "\\" in quoted else quoted)
        return NameAddr(uri_text, display, parse_params(param_text) if param_text is not None else {}, False)
    if allow_wildcard and s == "*":
        return NameAddr(None, None, None, True)
    display = None
    if s[:1] == '"':
        end = scan_quoted(s, 0)
        display = unquote(s[:end])
        rest = s[end:].lstrip(" \t")
        if rest[:1] != "<":
            raise ParseError(f"quoted display name without <URI> in {text!r}")
        lt = 0
        s = rest
    else:
        lt = s.find("<")
        if lt > 0:
            words = s[:lt].strip(" \t")
            if words:
                if not _DISPLAY_TOKENS_RE.fullmatch(words):
                    raise ParseError(f"malformed display name in {text!r}")
                display = words
    if lt >= 0:
        gt = s.find(">", lt + 1)
        if gt < 0:
            raise ParseError(f"missing '>' in {text!r}")
        uri_text = s[lt + 1 : gt]
        after = s[gt + 1 :].lstrip(" \t")
        if after and after[0] != ";":
            raise ParseError(f"junk after '>' in {text!r}")
        param_text = after[1:] if after else None
    else:
        # addr-spec: a URI holding "," "?" or ";" MUST be in <> (RFC 3261 §20), so ";" starts params.
        uri_text, semi, param_text_ = s.partition(";")
        uri_text = uri_text.rstrip(" \t")
        param_text = param_text_ if semi else None
        if "?" in uri_text or "," in uri_text:
            raise ParseError(f"URI with '?' or ',' must be enclosed in <> in {text!r}")
    if not uri_text or " " in uri_text or "\t" in uri_text or ":" not in uri_text:
        raise ParseError(f"malformed URI in {text!r}")
    params = parse_params(param_text) if param_text is not None else {}
    return NameAddr(uri_text, display, params, False)


class CSeq:
    """CSeq = 1*DIGIT LWS Method (RFC 3261 §20.16)."""

    __slots__ = ("seq", "method")

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.seq}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return self.seq == other.seq and self.method == other.method

    def __hash__(self) -> int:
        return hash((self.seq, self.method))


def parse_cseq(text: str) -> CSeq:
    m = _CSEQ_RE.fullmatch(text)
    if m is None:
        raise ParseError(f"malformed CSeq {text!r}")
    seq = int(m.group(1))
    if seq > MAX_CSEQ:
        raise ParseError("CSeq number larger than 2**32-1")
    return CSeq(seq, m.group(2))


def parse_token(text: str, what: str) -> str:
    value = text.strip(" \t")
    if not TOKEN_RE.fullmatch(value):
        raise ParseError(f"malformed {what} {text!r}")
    return value
