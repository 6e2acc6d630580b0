"""A store in memory, with every rule of the PostgreSQL store (base.py): for tests and for trying the API
without a database. Nothing survives a restart."""

from __future__ import annotations

import asyncio
import copy
import hmac
import time
from collections.abc import Callable

from routr_ray.api import rbac
from routr_ray.api.errors import already_exists, invalid, not_found, precondition
from routr_ray.api.kinds import get_path
from routr_ray.api.store.base import Stored, describe_users, field_value_text
from routr_ray.api.validate import Checked


class MemoryStore:
    read_only: str | None = None

    def __init__(self) -> None:
        self._items: dict[str, Stored] = {}  # ref -> resource
        self._refs: dict[str, list[tuple[str, str, str]]] = {}  # ref -> its references
        self._uniques: dict[tuple[str, str], str] = {}  # (label, value) -> ref
        self._keys: dict[str, tuple[bytes, dict[str, str]]] = {}  # key id -> (secret hash, roles)
        self._seq = 0
        self._lock = asyncio.Lock()

    # -- keys ---------------------------------------------------------------------------------------------

    def add_key(self, roles: dict[str, str]) -> str:
        """A new key with these roles (workspace -> role); returns the key's text (shown once)."""
        key = rbac.new_key()
        self._keys[key.key_id] = (rbac.secret_hash(key.secret), dict(roles))
        return key.text

    async def key_roles(self, key_id: str, secret: str) -> dict[str, str] | None:
        found = self._keys.get(key_id)
        if found is None or not hmac.compare_digest(found[0], rbac.secret_hash(secret)):
            return None
        return dict(found[1])

    # -- reads --------------------------------------------------------------------------------------------

    async def get(self, workspace: str, kind: str, ref: str) -> Stored | None:
        item = self._items.get(ref)
        return item if item is not None and item.workspace == workspace and item.kind == kind else None

    async def get_many(self, workspace: str, refs: list[str]) -> dict[str, Stored]:
        return {r: self._items[r] for r in refs if r in self._items and self._items[r].workspace == workspace}

    async def list(self, workspace: str, kind: str, limit: int, before_seq: int | None) -> list[Stored]:
        items = [i for i in self._items.values() if i.workspace == workspace and i.kind == kind
                 and (before_seq is None or i.seq < before_seq)]
        items.sort(key=lambda i: i.seq, reverse=True)
        return items[:limit]

    async def find_by(self, workspace: str, kind: str, path: tuple[str, ...], value: str) -> list[Stored]:
        items = [i for i in self._items.values() if i.workspace == workspace and i.kind == kind
                 and get_path(i.document, path) is not None and field_value_text(get_path(i.document, path)) == value]
        return sorted(items, key=lambda i: i.seq, reverse=True)

    async def everything(self) -> list[Stored]:
        return sorted(self._items.values(), key=lambda i: i.seq)

    # -- writes -------------------------------------------------------------------------------------------

    async def create(self, workspace: str, kind: str, ref: str, checked: Checked) -> Stored:
        async with self._lock:
            if ref in self._items:
                raise already_exists(f"ref {ref!r} is already used")
            self._check(workspace, ref, checked)
            self._seq += 1
            now = int(time.time())
            item = Stored(workspace, kind, ref, copy.deepcopy(checked.document), now, now, self._seq)
            self._put(item, checked)
            return item

    async def update(self, workspace: str, kind: str, ref: str, change: Callable[[dict], Checked]) -> Stored:
        async with self._lock:
            current = await self.get(workspace, kind, ref)
            if current is None:
                raise not_found(kind, ref)
            checked = change(copy.deepcopy(current.document))
            self._check(workspace, ref, checked)
            item = Stored(workspace, kind, ref, copy.deepcopy(checked.document), current.created_at,
                          int(time.time()), current.seq)
            self._put(item, checked)
            return item

    async def delete(self, workspace: str, kind: str, ref: str) -> None:
        async with self._lock:
            if await self.get(workspace, kind, ref) is None:
                raise not_found(kind, ref)
            users = [(self._items[r].kind, r) for r, held in self._refs.items() if any(t == ref for _, t, _ in held)]
            if users:
                raise precondition(f"{kind} {ref} is in use by {describe_users(sorted(users))}: "
                                   "change or delete those first")
            del self._items[ref]
            self._refs.pop(ref, None)
            for key in [k for k, owner in self._uniques.items() if owner == ref]:
                del self._uniques[key]

    def _check(self, workspace: str, ref: str, checked: Checked) -> None:
        for field, target, target_kind in checked.references:
            item = self._items.get(target)
            if item is None or item.workspace != workspace or item.kind != target_kind:
                raise invalid(f"{field}: there is no {target_kind} with ref {target!r}")
        for label, value, field in checked.uniques:
            owner = self._uniques.get((label, value))
            if owner is not None and owner != ref:
                raise already_exists(f"{field}: this {label} is already used"
                                     + (f" by {owner}" if self._items[owner].workspace == workspace else ""))

    def _put(self, item: Stored, checked: Checked) -> None:
        self._items[item.ref] = item
        self._refs[item.ref] = list(checked.references)
        for key in [k for k, owner in self._uniques.items() if owner == item.ref]:
            del self._uniques[key]
        for label, value, _ in checked.uniques:
            self._uniques[(label, value)] = item.ref

    async def close(self) -> None:
        return None

