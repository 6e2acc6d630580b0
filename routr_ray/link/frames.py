"""Frames of the internal data plane (sans-I/O).

A frame is a 9-byte header, ``!IIB`` = payload length, call id, kind, then the payload. The first frame a client
sends is ``HELLO`` with the server's token; then ``CALL`` frames, each answered (in any order) by a ``REPLY`` or an
``ERROR`` (UTF-8 text) with the same call id. Frames larger than the reader's limit are a protocol error: the
connection is closed rather than buffering without bound.

Draining (a replica Serve stops): the server sends ``ERROR`` on call id 0 (:data:`GOAWAY_ID`, never a call's:
clients number calls from 1) with the payload :data:`GOAWAY`; a client that understands it sends no more calls on
that connection and answers ``GOAWAY_ACK``, after which the server knows every call of that connection has
arrived, answers the last of them and closes it. A client of an older version ignores the ``ERROR`` (no call has
id 0) and leaves when the registry no longer lists the server, so a server never sends ``GOAWAY_ACK`` frames to
anyone and only receives them from clients that know the frame.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

HEADER = struct.Struct("!IIB")
HELLO, CALL, REPLY, ERROR, GOAWAY_ACK = 0, 1, 2, 3, 4
KINDS = frozenset((HELLO, CALL, REPLY, ERROR, GOAWAY_ACK))
GOAWAY_ID = 0
GOAWAY = b"goaway"
MAX_FRAME = 64 * 1024 * 1024
_LEN = struct.Struct("!I")


class FrameError(ValueError):
    """A malformed frame or list: the connection that sent it is closed."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where a link server listens and the token it wants; ``member`` names the server among its service's."""

    member: str
    host: str
    port: int
    token: bytes = field(repr=False)  # never in logs


def frame(kind: int, call_id: int, payload: bytes = b"") -> bytes:
    return HEADER.pack(len(payload), call_id, kind) + payload


class FrameReader:
    """Splits a byte stream into ``(kind, call_id, payload)`` frames."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, int, bytes]]:
        buffer = self._buffer
        buffer += data
        frames: list[tuple[int, int, bytes]] = []
        start = 0
        size = HEADER.size
        end = len(buffer)
        while end - start >= size:
            length, call_id, kind = HEADER.unpack_from(buffer, start)
            if length > self.max_frame:
                raise FrameError(f"frame of {length} bytes (limit {self.max_frame})")
            if kind not in KINDS:
                raise FrameError(f"unknown frame kind {kind}")
            if end - start - size < length:
                break
            body = start + size
            frames.append((kind, call_id, bytes(buffer[body:body + length])))
            start = body + length
        if start:
            del buffer[:start]
        return frames


def pack_list(items: Sequence[bytes]) -> bytes:
    """A list of byte strings as one payload: count, then each item's length and bytes."""
    parts = [_LEN.pack(len(items))]
    for item in items:
        parts.append(_LEN.pack(len(item)))
        parts.append(item)
    return b"".join(parts)


def unpack_list(data: bytes) -> list[bytes]:
    view = memoryview(data)
    if len(view) < 4:
        raise FrameError("list payload shorter than its count")
    (count,) = _LEN.unpack_from(view, 0)
    items: list[bytes] = []
    offset = 4
    total = len(view)
    for _ in range(count):
        if total - offset < 4:
            raise FrameError("list payload cut in an item length")
        (length,) = _LEN.unpack_from(view, offset)
        offset += 4
        if total - offset < length:
            raise FrameError("list payload cut in an item")
        items.append(bytes(view[offset:offset + length]))
        offset += length
    if offset != total:
        raise FrameError("bytes after the last list item")
    return items


__all__ = ["CALL", "ERROR", "GOAWAY", "GOAWAY_ACK", "GOAWAY_ID", "HELLO", "MAX_FRAME", "REPLY", "Endpoint",
           "FrameError", "FrameReader", "frame",
           "pack_list", "unpack_list"]
