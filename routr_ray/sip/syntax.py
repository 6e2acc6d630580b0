"""Small pieces of the RFC 3261 §25 grammar shared by header, URI and digest parsing.

Everything here works on ``str`` values that have already been unfolded (RFC 3261 §7.3.1).
"""

from __future__ import annotations

import re

from .errors import ParseError

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")   (RFC 3261 §25.1)
TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN_RE = re.compile(f"[{TOKEN_CHARS}]+")
# gen-value = token / host / quoted-string: a token plus the IPv6 reference characters "[", "]", ":".
_GEN_VALUE_RE = re.compile(f"[{TOKEN_CHARS}\\[\\]:]+")
_WSP = " \t"


def is_token(text: str) -> bool:
    return TOKEN_RE.fullmatch(text) is not None


def scan_quoted(text: str, start: int) -> int:
    """Return the index just past the quoted-string that opens at ``text[start] == '"'``.

    quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE; quoted-pair = "\\" (any char but CR/LF).
    """
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            return i + 1
        if c == "\\":
            i += 2
            continue
        i += 1
    raise ParseError("unterminated quoted string")


def unquote(value: str) -> str:
    """Strip the quotes of a quoted-string and resolve its quoted-pairs; other text is returned as is."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        if "\\" not in inner:
            return inner
        out: list[str] = []
        i = 0
        while i < len(inner):
            c = inner[i]
            if c == "\\" and i + 1 < len(inner):
                out.append(inner[i + 1])
                i += 2
            else:
                out.append(c)
                i += 1
        return "".join(out)
    return value


def quote(value: str) -> str:
    """Render ``value`` as a quoted-string (escaping ``"`` and ``\\``)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# one list element (RFC 3261 §7.3.1) with every quoted-string and <...> closed, as the scan of split_list reads it
_LIST_ELEMENT_RE = re.compile(r'[^"<]*(?:(?:"[^"\\]*(?:\\.[^"\\]*)*"|<[^>]*>)[^"<]*)*', re.S)


def split_list(value: str, sep: str = ",") -> list[str]:
    """Split a header value on ``sep`` outside quoted strings and <...>; parts are stripped, empty kept.

    RFC 3261 §7.3.1: a header whose grammar is a comma-separated list may carry several values.
    """
    if '"' not in value and "<" not in value:
        return [part.strip(_WSP) for part in value.split(sep)]
    if sep not in value and _LIST_ELEMENT_RE.fullmatch(value):
        # one element whose quoted strings and <...> are all closed (the scan below would agree)
        return [value.strip(_WSP)]
    parts: list[str] = []
    begin = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if c == '"':
            i = scan_quoted(value, i)
            continue
        if c == "<":
            close = value.find(">", i + 1)
            if close < 0:
                raise ParseError("unbalanced '<' in header value")
            i = close + 1
            continue
        if c == sep:
            parts.append(value[begin:i].strip(_WSP))
            begin = i + 1
        i += 1
    parts.append(value[begin:].strip(_WSP))
    return parts


# a whole ";"-separated parameter list without quotes or LWS, validated by one regex (the common case)
_SIMPLE_PARAMS_RE = re.compile(
    f"[{TOKEN_CHARS}]+(?:=[{TOKEN_CHARS}\\[\\]:]+)?(?:;[{TOKEN_CHARS}]+(?:=[{TOKEN_CHARS}\\[\\]:]+)?)*"
)
# the same with quoted-string values allowed (``+sip.instance="<urn:...>"``): validated whole, then read with findall
_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'  # quoted-string (RFC 3261 §25.1), the unrolled loop
_PARAM = f"[{TOKEN_CHARS}]+(?:=(?:[{TOKEN_CHARS}\\[\\]:]+|{_QUOTED}))?"
_QUOTED_PARAMS_RE = re.compile(f"{_PARAM}(?:;{_PARAM})*", re.S)
_QUOTED_PARAM_FIND_RE = re.compile(f"([{TOKEN_CHARS}]+)(?:=([{TOKEN_CHARS}\\[\\]:]+|{_QUOTED}))?", re.S)


def parse_params(text: str, sep: str = ";") -> dict[str, str | None]:
    """Parse ``name[=value]`` pairs separated by ``sep`` (RFC 3261 generic-param, §25.1).

    ``text`` is what follows the first separator (e.g. ``"tag=1;lr"`` for ``;tag=1;lr``). Names are
    lower-cased (parameter names are case-insensitive, §7.3.1); values are kept exactly, quoted-strings
    with their quotes (use :func:`unquote`); a flag parameter maps to ``None``. LWS around ``=`` and
    separators is allowed. With ``sep=","`` this also reads digest challenge/credential parameters
    (RFC 3261 §25.1 digest-cln / auth-param). Liberal where the meaning is plain: ``name=`` gives ``""``,
    an empty ``;`` piece is skipped. Raises ParseError(400) on malformed parameters.
    """
    params: dict[str, str | None] = {}
    if sep == ";" and _SIMPLE_PARAMS_RE.fullmatch(text):
        for piece in text.split(";"):
            name, eq, value = piece.partition("=")
            params[name.lower()] = value if eq else None
        return params
    if sep == ";" and _QUOTED_PARAMS_RE.fullmatch(text):
        # a value is never empty here, so "" from findall means a flag parameter
        for name, value in _QUOTED_PARAM_FIND_RE.findall(text):
            params[name.lower()] = value or None
        return params
    pieces = text.split(sep) if '"' not in text else split_list(text, sep)
    for piece in pieces:
        name, eq, value = piece.partition("=")
        name = name.strip(_WSP)
        if not name and not eq and sep == ";":
            continue  # an empty parameter (";;", a trailing ";"): nothing to misread, skipped as Kamailio does
        if not TOKEN_RE.fullmatch(name):
            raise ParseError(f"malformed parameter {piece.strip()!r}")
        if eq:
            value = value.strip(_WSP)
            if value[:1] == '"':
                if scan_quoted(value, 0) != len(value):
                    raise ParseError(f"malformed quoted parameter value {value!r}")
            elif value and not _GEN_VALUE_RE.fullmatch(value):  # "name=" is an empty value, kept as ""
                raise ParseError(f"malformed value of parameter {name!r}")
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def render_params(params: dict[str, str | None]) -> str:
    """``{"tag": "1", "lr": None}`` -> ``";tag=1;lr"``."""
    return "".join([f";{k}" if v is None else f";{k}={v}" for k, v in params.items()])
