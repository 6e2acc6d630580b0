"""Ordered raw SIP headers (RFC 3261 §7.3) with compact-form-aware, case-insensitive lookup."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from .syntax import split_list

# RFC 3261 §7.3.3 compact forms (i m f t v l c k s e) plus the registered ones of later RFCs
# (o: RFC 6665 Event, r/b: RFC 3515/3892, u: RFC 6665 Allow-Events, a/j/d: RFC 3841, x: RFC 4028,
# y/n: RFC 4474).
COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "f": "from",
    "t": "to",
    "v": "via",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "x": "session-expires",
    "y": "identity",
    "n": "identity-info",
}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1, §20), so several values may share
# one header line and get_all() splits them.
LIST_HEADERS: frozenset[str] = frozenset({
    "via", "contact", "route", "record-route", "path", "service-route", "allow", "supported",
    "require", "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
    "allow-events", "content-encoding", "content-language", "in-reply-to", "alert-info", "call-info",
    "error-info", "warning", "p-asserted-identity", "p-preferred-identity", "history-info",
    "accept-contact", "reject-contact", "request-disposition", "security-client", "security-server",
    "security-verify", "reason", "p-associated-uri", "privacy",
})

_key_cache: dict[str, str] = {}


def header_key(name: str) -> str:
    """Canonical lookup key of a header name: lower-case long form (``"v"`` -> ``"via"``)."""
    key = _key_cache.get(name)
    if key is None:
        lower = name.lower()
        key = COMPACT_FORMS.get(lower, lower)
        if len(_key_cache) < 4096:
            _key_cache[name] = key
    return key


# One header line: (key, name as received, unfolded value, raw text of the line(s) or None when built).
Entry = tuple[str, str, str, "str | None"]


class Headers:
    """Ordered list of raw headers. Names are kept as received; lookups are case-insensitive and know
    the compact forms. Each mutation bumps ``generation`` so messages can drop cached typed views."""

    __slots__ = ("_entries", "generation")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._entries: list[Entry] = [(header_key(n), n, v, None) for n, v in items]
        self.generation = 0

    @classmethod
    def from_keyed(cls, items: Iterable[tuple[str, str, str]]) -> Headers:
        """Headers from ``(key, name, value)`` triples whose key is already known: it MUST equal
        ``header_key(name)`` (as ``keyed_items()`` gives it). Same result as ``Headers((name, value), ...)``
        without recomputing the keys."""
        headers = cls.__new__(cls)
        headers._entries = [(key, name, value, None) for key, name, value in items]
        headers.generation = 0
        return headers

    @classmethod
    def _from_entries(cls, entries: list[Entry]) -> Headers:
        headers = cls.__new__(cls)
        headers._entries = entries
        headers.generation = 0
        return headers

    # reading -------------------------------------------------------------------------------------
    def get(self, name: str) -> str | None:
        """Value of the first header with that name (not split), or None."""
        key = header_key(name)
        for entry in self._entries:
            if entry[0] == key:
                return entry[2]
        return None

    def get_all(self, name: str) -> list[str]:
        """Every value across the headers of that name; list headers are split on commas (outside
        quotes and <>) and empty elements dropped."""
        key = header_key(name)
        values = [entry[2] for entry in self._entries if entry[0] == key]
        if key not in LIST_HEADERS:
            return values
        out: list[str] = []
        for value in values:
            out.extend(part for part in split_list(value) if part)
        return out

    def get_lines(self, name: str) -> list[str]:
        """Unsplit values, one per header line with that name."""
        key = header_key(name)
        return [entry[2] for entry in self._entries if entry[0] == key]

    def count(self, name: str) -> int:
        key = header_key(name)
        return sum(1 for entry in self._entries if entry[0] == key)

    def items(self) -> list[tuple[str, str]]:
        """(name as received, unfolded value) per header line, in order."""
        return [(entry[1], entry[2]) for entry in self._entries]

    def keyed_items(self) -> list[tuple[str, str, str]]:
        """(lookup key, name as received, unfolded value) per header line, in order (see ``header_key``)."""
        return [(entry[0], entry[1], entry[2]) for entry in self._entries]

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = header_key(name)
        return any(entry[0] == key for entry in self._entries)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self.items() == other.items()

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"

    def copy(self) -> Headers:
        return Headers._from_entries(list(self._entries))

    # writing -------------------------------------------------------------------------------------
    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        self._entries.append((header_key(name), name, value, None))
        self.generation += 1

    def prepend(self, name: str, value: str) -> None:
        """Insert before the first header of that name, or at the top if there is none."""
        key = header_key(name)
        index = next((i for i, e in enumerate(self._entries) if e[0] == key), 0)
        self._entries.insert(index, (key, name, value, None))
        self.generation += 1

    def set(self, name: str, value: str) -> None:
        """Replace all headers of that name by one, at the place of the first (or appended)."""
        key = header_key(name)
        index = next((i for i, e in enumerate(self._entries) if e[0] == key), None)
        if index is None:
            self._entries.append((key, name, value, None))
        else:
            self._entries[index] = (key, self._entries[index][1], value, None)
            self._entries[index + 1 :] = [e for e in self._entries[index + 1 :] if e[0] != key]
        self.generation += 1

    def remove(self, name: str) -> int:
        """Remove every header of that name; return how many lines were removed."""
        key = header_key(name)
        before = len(self._entries)
        self._entries = [e for e in self._entries if e[0] != key]
        removed = before - len(self._entries)
        if removed:
            self.generation += 1
        return removed

    def remove_first_value(self, name: str) -> str | None:
        """Pop the first value of a (list) header: the top Via or Route. The rest of that header line
        is kept; the line goes when it was its only value."""
        key = header_key(name)
        for index, entry in enumerate(self._entries):
            if entry[0] != key:
                continue
            parts = [p for p in split_list(entry[2]) if p] if key in LIST_HEADERS else [entry[2]]
            if len(parts) <= 1:
                del self._entries[index]
            else:
                self._entries[index] = (key, entry[1], ", ".join(parts[1:]), None)
            self.generation += 1
            return parts[0] if parts else ""
        return None

    def replace_first_value(self, name: str, value: str) -> bool:
        """Replace the first value of a (list) header, e.g. the top Via after adding received/rport
        (RFC 3261 §18.2.1, RFC 3581). Returns False when there is no such header."""
        key = header_key(name)
        for index, entry in enumerate(self._entries):
            if entry[0] != key:
                continue
            parts = [p for p in split_list(entry[2]) if p] if key in LIST_HEADERS else [entry[2]]
            parts[:1] = [value]
            self._entries[index] = (key, entry[1], ", ".join(parts), None)
            self.generation += 1
            return True
        return False

    # serialization -------------------------------------------------------------------------------
    def render(self) -> str:
        """Header lines with CRLFs (no final empty line). Unchanged lines are emitted exactly as
        received (including line folding); changed or new ones as ``Name: value``."""
        return "".join(
            (entry[3] if entry[3] is not None else f"{entry[1]}: {entry[2]}") + "\r\n"
            for entry in self._entries
        )
