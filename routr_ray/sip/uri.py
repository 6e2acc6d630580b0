"""SIP, SIPS and TEL URIs (RFC 3261 §19.1, §25.1; RFC 3966; IPv6 references per RFC 5118).

Other schemes parse as opaque URIs (scheme + text), so a well-formed message with an unsupported
scheme still parses; answering 416 is the job of whoever routes on the URI (RFC 3261 §8.2.2.1).

Fields keep the text as received (escapes included): ``user="null-%00-null"``. Use :func:`unescape`
(or ``URI.user_unescaped``) to compare, per RFC 3261 §19.1.4. Parameter names are lower-cased.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote as _percent_decode

from .errors import ParseError

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_ESC = r"%[0-9A-Fa-f]{2}"
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
# user = 1*( unreserved / escaped / user-unreserved ); user-unreserved = & = + $ , ; ? /
_USER_RE = re.compile(f"(?:[{_UNRESERVED}&=+$,;?/]|{_ESC})+")
# password = *( unreserved / escaped / & = + $ , )
_PASSWORD_RE = re.compile(f"(?:[{_UNRESERVED}&=+$,]|{_ESC})*")
# paramchar = param-unreserved / unreserved / escaped; param-unreserved = [ ] / : & + $
_PARAMCHARS_RE = re.compile(f"(?:[{_UNRESERVED}\\[\\]/:&+$]|{_ESC})+")
# hname / hvalue: hnv-unreserved = [ ] / ? : + $
_HNAME_RE = re.compile(f"(?:[{_UNRESERVED}\\[\\]/?:+$]|{_ESC})+")
_HVALUE_RE = re.compile(f"(?:[{_UNRESERVED}\\[\\]/?:+$]|{_ESC})*")
# hostname / IPv4address (RFC 3261 §25.1, liberal about "_" which real deployments use)
_HOST_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9\-_.]*[A-Za-z0-9_])?\.?")
_PORT_RE = re.compile(r"[0-9]{1,5}")
# telephone-subscriber (RFC 3966), liberal: digits, hex, visual separators, * # +
_TEL_NUMBER_RE = re.compile(r"[0-9A-Fa-f*#+\-.()pPwW]+|(?:%[0-9A-Fa-f]{2}|[0-9A-Za-z*#+\-.()])+")
# absoluteURI for other schemes: uric characters (reserved / unreserved / escaped) plus "#", "[", "]"
_OPAQUE_RE = re.compile(f"(?:[{_UNRESERVED};/?:@&=+$,#\\[\\]]|{_ESC})*")


def unescape(text: str) -> str:
    """Resolve %HH escapes once (RFC 3261 §19.1.2; not recursive: ``value%2541`` -> ``value%41``)."""
    return _percent_decode(text, errors="surrogateescape") if "%" in text else text


def parse_host_port(text: str) -> tuple[str, int | None]:
    """``host[:port]`` with IPv6 references in brackets; returns the host without brackets."""
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise ParseError(f"unterminated IPv6 reference in {text!r}")
        host = text[1:close]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ParseError(f"invalid IPv6 address {host!r}") from None
        rest = text[close + 1 :]
        if not rest:
            return host, None
        if rest[0] != ":":
            raise ParseError(f"junk after IPv6 reference in {text!r}")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.partition(":")
        if not _HOST_RE.fullmatch(host):
            raise ParseError(f"invalid host {host!r}")
        if not colon:
            return host, None
    if not _PORT_RE.fullmatch(port_text) or int(port_text) > 65535:
        raise ParseError(f"invalid port {port_text!r}")
    return host, int(port_text)


def format_host(host: str) -> str:
    """Bracket an IPv6 address for use in a URI or Via (RFC 5118 §4)."""
    return f"[{host}]" if ":" in host else host


def _parse_uri_params(text: str) -> dict[str, str | None]:
    """``;``-separated uri-parameters. Liberal where the meaning is plain (as Kamailio is): an empty value
    (``;transport=``, sent by SIPp scenarios) is kept as ``""`` (no transport named), and an empty piece
    (``;;lr``, a trailing ``;``) is skipped; the text of the URI is kept as received."""
    params: dict[str, str | None] = {}
    for piece in text.split(";"):
        if not piece:
            continue
        name, eq, value = piece.partition("=")
        if not _PARAMCHARS_RE.fullmatch(name):
            raise ParseError(f"malformed URI parameter {piece!r}")
        if eq:
            if value and not _PARAMCHARS_RE.fullmatch(value):
                raise ParseError(f"malformed URI parameter value {piece!r}")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def _parse_uri_headers(text: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for piece in text.split("&"):
        name, eq, value = piece.partition("=")
        if not eq or not _HNAME_RE.fullmatch(name) or not _HVALUE_RE.fullmatch(value):
            raise ParseError(f"malformed URI header {piece!r}")
        headers[name] = value
    return headers


class URI:
    """A parsed URI; ``str(uri)`` renders it (IPv6 hosts bracketed)."""

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers", "opaque")

    def __init__(
        self,
        scheme: str = "sip",
        user: str | None = None,
        host: str = "",
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: dict[str, str] | None = None,
        password: str | None = None,
        opaque: str | None = None,
    ) -> None:
        self.scheme = scheme.lower()
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = {} if params is None else params
        self.headers: dict[str, str] = {} if headers is None else headers
        self.opaque = opaque

    # convenience views -------------------------------------------------------------------------
    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def is_secure(self) -> bool:
        return self.scheme == "sips"

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else unescape(self.user)

    def host_port(self) -> str:
        host = format_host(self.host)
        return host if self.port is None else f"{host}:{self.port}"

    def aor(self) -> str:
        """``scheme:user@host`` without port, parameters or headers (an address-of-record key)."""
        if not self.is_sip:
            return str(self)
        user = f"{self.user}@" if self.user is not None else ""
        return f"{self.scheme}:{user}{format_host(self.host).lower()}"

    def copy(self) -> URI:
        return URI(
            self.scheme, self.user, self.host, self.port, dict(self.params), dict(self.headers),
            self.password, self.opaque,
        )

    def __str__(self) -> str:
        if self.scheme in ("sip", "sips"):
            out = [self.scheme, ":"]
            if self.user is not None:
                out.append(self.user)
                if self.password is not None:
                    out += [":", self.password]
                out.append("@")
            out.append(self.host_port())
        else:
            out = [self.scheme, ":", self.opaque or ""]
        for name, value in self.params.items():
            out.append(f";{name}" if value is None else f";{name}={value}")
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(out)

    def __repr__(self) -> str:
        return f"URI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, URI):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))


def parse_uri(text: str) -> URI:
    """Parse a SIP/SIPS/TEL URI, or any other absolute URI as opaque; ParseError(400) on bad syntax."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise ParseError(f"invalid URI {text!r}")
    scheme = scheme.lower()
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(scheme, rest)
    if scheme == "tel":
        number, semi, param_text = rest.partition(";")
        if not _TEL_NUMBER_RE.fullmatch(number):
            raise ParseError(f"invalid tel URI {text!r}")
        return URI("tel", None, "", None, _parse_uri_params(param_text) if semi else {}, None, None, number)
    if not rest or not _OPAQUE_RE.fullmatch(rest):
        raise ParseError(f"invalid URI {text!r}")
    return URI(scheme, None, "", None, None, None, None, rest)


def _parse_sip(scheme: str, rest: str) -> URI:
    # RFC 3261 §19.1.1: sip:user:password@host:port;uri-parameters?headers. The user part may hold ";"
    # and "?" (RFC 4475 §3.1.1.9 semiuri), so find "@" first; "@" cannot occur unescaped later on.
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1 :]
        user, colon, pw = userinfo.partition(":")
        if not _USER_RE.fullmatch(user):
            raise ParseError(f"invalid user part {user!r}")
        if colon:
            if not _PASSWORD_RE.fullmatch(pw):
                raise ParseError("invalid password in URI")
            password = pw
    rest, qmark, header_text = rest.partition("?")
    hostport, semi, param_text = rest.partition(";")
    host, port = parse_host_port(hostport)
    params = _parse_uri_params(param_text) if semi else {}
    headers = _parse_uri_headers(header_text) if qmark else {}
    return URI(scheme, user, host, port, params, headers, password, None)
