"""The one exception of the SIP core."""

from __future__ import annotations


class ParseError(ValueError):
    """Bad syntax in a SIP message, URI or header value.

    ``status`` is what a server should answer: 400 (Bad Request), 413 (Request Entity Too Large),
    505 (Version Not Supported), or ``None`` meaning "drop silently" (e.g. a malformed response,
    RFC 3261 §18.1.2 / §16.7: responses are never answered).
    """

    def __init__(self, reason: str, status: int | None = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status

    def __repr__(self) -> str:
        return f"ParseError({self.reason!r}, status={self.status!r})"
