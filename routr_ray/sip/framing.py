"""Message framing on stream transports (TCP/TLS) by Content-Length (RFC 3261 §18.3), and RFC 5626
CRLF keepalives (§3.5.1 double-CRLF "ping" on streams, §4.4.1 CRLF-only datagrams)."""

from __future__ import annotations

from typing import Final

from .errors import ParseError
from .parser import MAX_MESSAGE_SIZE


class KeepalivePing:
    """Type of the KEEPALIVE_PING sentinel: an RFC 5626 double-CRLF ping; answer with a single CRLF."""

    _instance: KeepalivePing | None = None

    def __new__(cls) -> KeepalivePing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "KEEPALIVE_PING"


KEEPALIVE_PING: Final = KeepalivePing()
KEEPALIVE_PONG: Final = b"\r\n"


def is_keepalive_datagram(data: bytes) -> bool:
    """A datagram of only CR/LF bytes: an RFC 5626-style keepalive to ignore, not an error."""
    return bool(data) and not data.strip(b"\r\n")


def _content_length(head: bytes, is_response: bool) -> int:
    """The Content-Length of a header section (bytes, CRLF lines, folding allowed)."""
    status = None if is_response else 400
    values: list[list[bytes]] = []
    current: list[bytes] | None = None
    for line in head.split(b"\r\n")[1:]:
        if line[:1] in (b" ", b"\t"):
            if current is not None:
                current.append(line)
            continue
        name, colon, value = line.partition(b":")
        if colon and name.rstrip(b" \t").lower() in (b"content-length", b"l"):
            current = [value]
            values.append(current)
        else:
            current = None
    if not values:
        raise ParseError("missing Content-Length on a stream transport (RFC 3261 §18.3)", status)
    if len(values) > 1:
        raise ParseError("more than one Content-Length", status)
    value = b" ".join(part.strip(b" \t") for part in values[0]).strip(b" \t")
    if not value.isdigit():
        raise ParseError(f"malformed Content-Length {value[:20]!r}", status)
    return int(value)


class StreamFramer:
    """Cut a byte stream into whole SIP messages.

    ``feed`` returns complete messages (raw bytes, for :func:`parse`) and KEEPALIVE_PING for each
    double-CRLF at a message boundary; single CRLFs between messages are skipped (RFC 3261 §7.5).
    A ParseError is unrecoverable (missing or bad Content-Length, message over ``max_message_size``):
    the edge should answer its status (if any) and close the connection; later feeds raise it again.
    """

    def __init__(self, max_message_size: int = MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already searched for the end of the header section
        self._need: int | None = None  # total size of the current message once its headers are known
        self._error: ParseError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | KeepalivePing]:
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[bytes | KeepalivePing] = []
        try:
            while self._next(out):
                pass
        except ParseError as error:
            self._error = error
            raise
        return out

    def _next(self, out: list[bytes | KeepalivePing]) -> bool:
        buf = self._buf
        if self._need is None:
            # at a message boundary: pings and stray CRLFs
            while buf[:1] == b"\r" or buf[:1] == b"\n":
                if buf[:4] == b"\r\n\r\n":
                    del buf[:4]
                    out.append(KEEPALIVE_PING)
                    continue
                if len(buf) < 4 and b"\r\n\r\n".startswith(bytes(buf)):
                    return False  # could still become a ping
                if buf[:2] == b"\r\n":
                    del buf[:2]
                else:
                    del buf[:1]  # a bare CR or LF between messages
            if not buf:
                return False
            end = buf.find(b"\r\n\r\n", max(0, self._scanned - 3))
            if end < 0:
                self._scanned = len(buf)
                if len(buf) > self.max_message_size:
                    raise ParseError("header section too large", self._status())
                return False
            head = bytes(buf[:end])
            length = _content_length(head, head[:4] == b"SIP/")
            self._need = end + 4 + length
            if self._need > self.max_message_size:
                raise ParseError("message too large", 413 if head[:4] != b"SIP/" else None)
        if len(buf) < self._need:
            return False
        out.append(bytes(buf[: self._need]))
        del buf[: self._need]
        self._need = None
        self._scanned = 0
        return True

    def _status(self) -> int | None:
        return None if self._buf[:4] == b"SIP/" else 413
