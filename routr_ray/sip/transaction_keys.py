"""Transaction matching keys (RFC 3261 §17.1.3, §17.2.3, §9.2) and a bounded transaction table.

The key functions take plain strings so they do not depend on the message classes: the edge passes
``via.branch``, ``sent_by(via.host, via.port)``, ``cseq.method`` and so on.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Generic, NamedTuple, TypeVar

__all__ = [
    "MAGIC_COOKIE",
    "ClientKey",
    "LegacyServerKey",
    "ServerKey",
    "TransactionTable",
    "cancel_target_key",
    "client_key",
    "is_rfc3261_branch",
    "legacy_server_key",
    "make_branch",
    "sent_by",
    "server_key",
]

# RFC 3261 §8.1.1.7: branches of RFC 3261 elements start with this cookie.
MAGIC_COOKIE = "z9hG4bK"


def is_rfc3261_branch(branch: str | None) -> bool:
    """True when the branch starts with the magic cookie (and has something after it)."""
    return branch is not None and len(branch) > len(MAGIC_COOKIE) and branch.startswith(MAGIC_COOKIE)


def make_branch(token: str | None = None) -> str:
    """A new branch: the magic cookie followed by ``token`` or 80 random bits (unique in space and time,
    §8.1.1.7)."""
    return MAGIC_COOKIE + (token if token is not None else secrets.token_hex(10))


def sent_by(host: str, port: int | None = None) -> str:
    """Normalised ``sent-by`` (host lower-cased, IPv6 without brackets, port only when present)."""
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host if port is None else f"{host}:{port}"


def _key_method(method: str) -> str:
    method = method.upper()
    # §17.2.3: "the method of the request matches the one that created the transaction, except for ACK,
    # where the method of the request that created the transaction is INVITE."
    return "INVITE" if method == "ACK" else method


class ServerKey(NamedTuple):
    """§17.2.3 key for requests whose top Via branch has the magic cookie. (Keys are named tuples: hashing and
    comparing them is C code, and each message looks its transaction up several times.)"""

    branch: str
    sent_by: str
    method: str


class LegacyServerKey(NamedTuple):
    """§17.2.3 fallback for RFC 2543 requests (no magic cookie): Request-URI, From tag, Call-ID, CSeq
    number and the whole top Via, with the method folded like :class:`ServerKey`.

    Simplification: the To tag is not part of the key. RFC 2543 matching compares it with the INVITE's
    (for retransmissions) or with the tag of our response (for ACK); with the other fields equal a
    mismatch only arises from a broken peer, and the edge can compare tags itself if it cares.
    """

    request_uri: str
    from_tag: str
    call_id: str
    cseq_seq: int
    top_via: str
    method: str


def server_key(branch: str | None, sent_by_value: str, method: str) -> ServerKey | None:
    """Key of a server transaction for a request; ``None`` when the branch lacks the magic cookie (use
    :func:`legacy_server_key`). An ACK maps to its INVITE's key (it matches only an ACK for a non-2xx
    final: an ACK for a 2xx carries a new branch and is a transaction of its own)."""
    if not is_rfc3261_branch(branch):
        return None
    assert branch is not None
    return ServerKey(branch, sent_by_value, _key_method(method))


def legacy_server_key(
    *, request_uri: str, from_tag: str | None, call_id: str, cseq_seq: int, top_via: str, method: str
) -> LegacyServerKey:
    return LegacyServerKey(request_uri, from_tag or "", call_id, cseq_seq, top_via.strip(), _key_method(method))


def cancel_target_key(key: ServerKey | LegacyServerKey) -> ServerKey | LegacyServerKey:
    """The INVITE server transaction a CANCEL refers to (§9.2: "the same matching rules as for the
    transaction, except the method")."""
    return key._replace(method="INVITE")


class ClientKey(NamedTuple):
    """§17.1.3: a response matches a client transaction by the top Via branch and the CSeq method."""

    branch: str
    method: str


def client_key(branch: str, cseq_method: str) -> ClientKey:
    return ClientKey(branch, cseq_method.upper())


K = TypeVar("K")
V = TypeVar("V")


class TransactionTable(Generic[K, V]):
    """Dict of live transactions with a hard size bound (a flood must not grow memory without limit).

    :meth:`add` refuses a new key once ``max_size`` entries exist; the caller then answers 503 (requests)
    or drops. Terminated transactions must be removed by the caller on ``Terminated()``.
    """

    def __init__(self, max_size: int = 100_000) -> None:
        if max_size <= 0:
            raise ValueError("max_size must be positive")
        self.max_size = max_size
        self._items: dict[K, V] = {}

    def add(self, key: K, transaction: V) -> bool:
        """Insert (or replace) ``key``; False when the table is full and ``key`` is new."""
        if key not in self._items and len(self._items) >= self.max_size:
            return False
        self._items[key] = transaction
        return True

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def remove(self, key: K) -> V | None:
        return self._items.pop(key, None)

    @property
    def full(self) -> bool:
        return len(self._items) >= self.max_size

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __iter__(self) -> Iterator[K]:
        return iter(self._items)

    def values(self) -> list[V]:
        return list(self._items.values())
