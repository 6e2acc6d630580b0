"""The API's rules between the gRPC servicers and the store: authorisation, validation, refs generated on create,
passwords sealed at rest, cursor pages. The servicers (service.py) only convert protobuf to documents and back.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable

from routr_ray.api.errors import ApiError, invalid, not_found, precondition
from routr_ray.api.kinds import API_VERSION, Kind
from routr_ray.api.rbac import Caller
from routr_ray.api.secrets import Sealer, open_document, seal_document
from routr_ray.api.store.base import ResourceStore, Stored
from routr_ray.api.validate import Checked, check

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_FIND_RESULTS = 1000


def page_token(seq: int) -> str:
    return f"p{seq}"


def parse_page_token(token: str) -> int | None:
    if not token:
        return None
    if token[0] != "p" or not token[1:].isdigit():
        raise invalid("page_token: not a token this API returned")
    return int(token[1:])


class ResourceApi:
    def __init__(self, store: ResourceStore, sealer: Sealer | None = None) -> None:
        self.store = store
        self.sealer = sealer

    def _writable(self, caller: Caller) -> None:
        caller.require_write()
        if self.store.read_only:
            raise precondition(self.store.read_only)

    def _check(self, kind: Kind, document: dict) -> Checked:
        checked = check(kind, document)
        return Checked(seal_document(self.sealer, kind.name, copy.deepcopy(checked.document)),
                       checked.references, checked.uniques)

    async def create(self, caller: Caller, kind: Kind, document: dict) -> Stored:
        """``document`` without ``ref``/``apiVersion``/``kind``: they are set here (refs are UUIDs, as Routr's)."""
        self._writable(caller)
        ref = str(uuid.uuid4())
        document = {"apiVersion": API_VERSION, "kind": kind.name, "ref": ref, **document}
        return await self.store.create(caller.workspace, kind.name, ref, self._check(kind, document))

    async def update(self, caller: Caller, kind: Kind, ref: str, change: Callable[[dict], None]) -> Stored:
        """``change`` edits the stored document (password in clear) in place; it runs inside the store's lock or
        transaction, so two concurrent updates of one resource both take effect."""
        self._writable(caller)
        if not ref:
            raise invalid("ref: required")

        def apply(document: dict) -> Checked:
            document = open_document(self.sealer, kind.name, document)
            change(document)
            document["ref"] = ref  # never changed by an update
            return self._check(kind, document)

        return await self.store.update(caller.workspace, kind.name, ref, apply)

    async def get(self, caller: Caller, kind: Kind, ref: str) -> Stored:
        found = await self.store.get(caller.workspace, kind.name, ref) if ref else None
        if found is None:
            raise not_found(kind.name, ref)
        return found

    async def delete(self, caller: Caller, kind: Kind, ref: str) -> None:
        self._writable(caller)
        if not ref:
            raise invalid("ref: required")
        await self.store.delete(caller.workspace, kind.name, ref)

    async def list(self, caller: Caller, kind: Kind, size: int, token: str) -> tuple[list[Stored], str]:
        """One page, newest first (as Routr's ``createdAt desc``), and the token of the next ("" after the last)."""
        if size < 0:
            raise invalid("page_size: must not be negative")
        size = min(size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        items = await self.store.list(caller.workspace, kind.name, size + 1, parse_page_token(token))
        more = len(items) > size
        items = items[:size]
        return items, page_token(items[-1].seq) if more and items else ""

    async def find_by(self, caller: Caller, kind: Kind, field_name: str, value: str) -> list[Stored]:
        path = kind.find_path(field_name)
        if path is None:
            names = ", ".join(name for name, _ in kind.find_by)
            raise invalid(f"field_name: {kind.topic} can be found by {names}; not by {field_name!r}")
        return (await self.store.find_by(caller.workspace, kind.name, path, value))[:MAX_FIND_RESULTS]

    async def resolve(self, caller: Caller, refs: list[str]) -> dict[str, Stored]:
        """The resources of the workspace with these refs (for the nested objects of a response)."""
        return await self.store.get_many(caller.workspace, [r for r in refs if r]) if refs else {}


__all__ = ["ApiError", "DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "ResourceApi", "page_token", "parse_page_token"]
