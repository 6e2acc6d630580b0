"""Bencoding, the dictionary format of RTPEngine's ng control protocol (rtpengine docs "The ng Control Protocol").

Integers ``i42e``, byte strings ``4:spam``, lists ``l...e`` and dictionaries ``d...e``. Strings are text here:
:func:`encode` writes ``str`` as UTF-8 (``surrogateescape``, so undecodable bytes that came in go out unchanged) and
:func:`decode` returns ``str`` for every byte string the same way; dictionary keys are written sorted, as the
format asks (RTPEngine does not insist). Pure and stdlib-only; malformed input raises :class:`BencodeError`,
never anything else, and nesting is bounded (a reply is a few levels deep).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["BencodeError", "decode", "encode"]

MAX_DEPTH = 32
_ENCODING = "utf-8"
_ERRORS = "surrogateescape"


class BencodeError(ValueError):
    """Not a bencoded value (or one nested too deep)."""


def encode(value: Any) -> bytes:
    """``value`` (dict with str keys, list/tuple, str, bytes, int; bools are refused) as bencode."""
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


def _encode(value: Any, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise BencodeError("nested too deep")
    if isinstance(value, bool):
        raise BencodeError("booleans have no bencoding; use an int or a string")
    if isinstance(value, int):
        out.append(b"i%de" % value)
    elif isinstance(value, str):
        _encode_bytes(value.encode(_ENCODING, _ERRORS), out)
    elif isinstance(value, bytes | bytearray):
        _encode_bytes(bytes(value), out)
    elif isinstance(value, Mapping):
        items = []
        for key, item in value.items():
            if not isinstance(key, str | bytes):
                raise BencodeError(f"dictionary key {key!r} is not a string")
            items.append((key.encode(_ENCODING, _ERRORS) if isinstance(key, str) else key, item))
        out.append(b"d")
        for key, item in sorted(items, key=lambda kv: kv[0]):
            _encode_bytes(key, out)
            _encode(item, out, depth + 1)
        out.append(b"e")
    elif isinstance(value, Sequence):
        out.append(b"l")
        for item in value:
            _encode(item, out, depth + 1)
        out.append(b"e")
    else:
        raise BencodeError(f"cannot bencode {type(value).__name__}")


def _encode_bytes(data: bytes, out: list[bytes]) -> None:
    out.append(b"%d:" % len(data))
    out.append(data)


def decode(data: bytes) -> Any:
    """The one value ``data`` holds (trailing bytes are an error)."""
    value, end = _decode(data, 0, 0)
    if end != len(data):
        raise BencodeError(f"{len(data) - end} bytes after the value")
    return value


def _decode(data: bytes, pos: int, depth: int) -> tuple[Any, int]:
    if depth > MAX_DEPTH:
        raise BencodeError("nested too deep")
    if pos >= len(data):
        raise BencodeError("truncated")
    lead = data[pos]
    if lead == 0x69:  # i
        end = data.find(b"e", pos + 1)
        if end < 0:
            raise BencodeError("unterminated integer")
        text = data[pos + 1:end]
        if not text or not (text.isdigit() or (text[:1] == b"-" and text[1:].isdigit())):
            raise BencodeError(f"bad integer {text!r}")
        return int(text), end + 1
    if lead == 0x6C:  # l
        items: list[Any] = []
        pos += 1
        while True:
            if pos >= len(data):
                raise BencodeError("unterminated list")
            if data[pos] == 0x65:  # e
                return items, pos + 1
            item, pos = _decode(data, pos, depth + 1)
            items.append(item)
    if lead == 0x64:  # d
        result: dict[str, Any] = {}
        pos += 1
        while True:
            if pos >= len(data):
                raise BencodeError("unterminated dictionary")
            if data[pos] == 0x65:
                return result, pos + 1
            key, pos = _decode(data, pos, depth + 1)
            if not isinstance(key, str):
                raise BencodeError("dictionary key is not a string")
            result[key], pos = _decode(data, pos, depth + 1)
    if 0x30 <= lead <= 0x39:  # a digit: <length>:<bytes>
        colon = data.find(b":", pos)
        if colon < 0 or not data[pos:colon].isdigit():
            raise BencodeError("bad string length")
        length = int(data[pos:colon])
        start = colon + 1
        if start + length > len(data):
            raise BencodeError("truncated string")
        return data[start:start + length].decode(_ENCODING, _ERRORS), start + length
    raise BencodeError(f"unexpected byte {bytes([lead])!r} at {pos}")
