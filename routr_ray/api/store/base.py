"""The store interface of the API, and what every store must keep true.

A store holds resource documents (Routr's format, routr_ray/api/kinds.py) per workspace, and the API keys with
their role per workspace. Every write is checked in one step (a lock or a transaction), so concurrent writers
never lose a write nor break a rule:

* refs point at a resource of the right kind **in the same workspace**;
* unique values (a Domain's domainUri, a Number's telUrl, an Agent's username in its Domain, a Peer's username,
  a Trunk's inbound URI) are unique across **all** workspaces: Connect routes with one set;
* a resource that others refer to cannot be deleted (FAILED_PRECONDITION naming them).

``create`` and ``update`` take a function that builds the checked document (``update`` calls it with the stored
document, inside the lock or transaction), so a read-modify-write never races another writer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from routr_ray.api.validate import Checked

ROLES = ("viewer", "admin", "owner")  # each may do what the ones before it may


@dataclass(frozen=True)
class Stored:
    workspace: str
    kind: str
    ref: str
    document: dict
    created_at: int  # unix seconds
    updated_at: int
    seq: int  # creation order: List pages go from the newest down


class ResourceStore(Protocol):
    read_only: str | None  # None when writable, else why not (the message a writer gets)

    async def get(self, workspace: str, kind: str, ref: str) -> Stored | None: ...

    async def get_many(self, workspace: str, refs: list[str]) -> dict[str, Stored]: ...

    async def list(self, workspace: str, kind: str, limit: int, before_seq: int | None) -> list[Stored]: ...

    async def find_by(self, workspace: str, kind: str, path: tuple[str, ...], value: str) -> list[Stored]: ...

    async def create(self, workspace: str, kind: str, ref: str, checked: Checked) -> Stored: ...

    async def update(self, workspace: str, kind: str, ref: str,
                     change: Callable[[dict], Checked]) -> Stored: ...

    async def delete(self, workspace: str, kind: str, ref: str) -> None: ...

    async def everything(self) -> list[Stored]:
        """Every resource of every workspace (what Connect routes with)."""
        ...

    async def key_roles(self, key_id: str, secret: str) -> dict[str, str] | None:
        """The roles (workspace -> role) of a live key whose secret matches; None otherwise."""
        ...

    async def close(self) -> None: ...


def describe_users(users: list[tuple[str, str]]) -> str:
    """``Agent agent-01, Agent agent-02`` (at most 20 named)."""
    named = ", ".join(f"{kind} {ref}" for kind, ref in users[:20])
    return named + (f" and {len(users) - 20} more" if len(users) > 20 else "")


def field_value_text(value: object) -> str:
    """How FindBy compares a document value with the text it was given (``true`` for booleans, as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
