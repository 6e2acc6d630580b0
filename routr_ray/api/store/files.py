"""The YAML resource directory as a read-only store: what the API serves without a database (issue 20 item 2).

The documents of ``<config>/resources`` (read again when a file changes, as Connect's watcher does) are one
workspace, ``default``; writes get FAILED_PRECONDITION saying where resources come from. With no database there
are no stored keys: the key in ``$ROUTR_RAY_API_KEY`` (made with ``routr-ray keys generate``) reads them.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from pathlib import Path

from routr_ray.api import rbac
from routr_ray.api.errors import precondition
from routr_ray.api.kinds import KINDS, get_path
from routr_ray.api.store.base import Stored, field_value_text
from routr_ray.api.validate import Checked
from routr_ray.config.documents import UNREADABLE, config_files_in, read_document
from routr_ray.config.problems import Place, Problems

API_KEY_ENV = "ROUTR_RAY_API_KEY"
WORKSPACE = "default"
_KIND_BY_LOWER = {k.lower(): k for k in KINDS}


def _signature(directory: Path) -> tuple[tuple[str, int, int], ...]:
    from routr_ray.processors.connect.reload import files_signature

    return files_signature(directory)


class FileStore:
    def __init__(self, directory: str | Path, *, key_text: str | None = None) -> None:
        self.directory = Path(directory)
        self.read_only = (f"resources come from the files in {self.directory} (read-only through the API): edit the "
                          "files, or configure a database (APIServer spec.database) to write through the API")
        key = rbac.parse_key(key_text if key_text is not None else os.environ.get(API_KEY_ENV, ""))
        self._key = (key[0], rbac.secret_hash(key[1])) if key else None
        self._seen: tuple[tuple[str, int, int], ...] | None = None
        self._items: list[Stored] = []

    def _current(self) -> list[Stored]:
        signature = _signature(self.directory)
        if signature != self._seen:
            self._items = self._read()
            self._seen = signature
        return self._items

    def _read(self) -> list[Stored]:
        items: list[Stored] = []
        problems = Problems()
        for path in config_files_in(self.directory) if self.directory.is_dir() else []:
            data = read_document(path, Place(problems, str(path)))
            if data is UNREADABLE or data is None:
                continue
            mtime = int(path.stat().st_mtime)
            for document in data if isinstance(data, list) else [data]:
                if not isinstance(document, dict) or not isinstance(document.get("ref"), str):
                    continue
                kind = _KIND_BY_LOWER.get(str(document.get("kind", "")).lower())
                if kind is not None:
                    items.append(Stored(WORKSPACE, kind, document["ref"], document, mtime, mtime, len(items) + 1))
        return items

    async def key_roles(self, key_id: str, secret: str) -> dict[str, str] | None:
        if self._key is None or key_id != self._key[0] or not hmac.compare_digest(self._key[1],
                                                                                  rbac.secret_hash(secret)):
            return None
        return {WORKSPACE: "owner"}

    async def get(self, workspace: str, kind: str, ref: str) -> Stored | None:
        return next((i for i in self._current() if i.workspace == workspace and i.kind == kind and i.ref == ref), None)

    async def get_many(self, workspace: str, refs: list[str]) -> dict[str, Stored]:
        wanted = set(refs)
        return {i.ref: i for i in self._current() if i.workspace == workspace and i.ref in wanted}

    async def list(self, workspace: str, kind: str, limit: int, before_seq: int | None) -> list[Stored]:
        items = [i for i in self._current() if i.workspace == workspace and i.kind == kind
                 and (before_seq is None or i.seq < before_seq)]
        return sorted(items, key=lambda i: i.seq, reverse=True)[:limit]

    async def find_by(self, workspace: str, kind: str, path: tuple[str, ...], value: str) -> list[Stored]:
        return [i for i in reversed(self._current()) if i.workspace == workspace and i.kind == kind
                and get_path(i.document, path) is not None and field_value_text(get_path(i.document, path)) == value]

    async def everything(self) -> list[Stored]:
        return list(self._current())

    async def create(self, workspace: str, kind: str, ref: str, checked: Checked) -> Stored:
        raise precondition(self.read_only)

    async def update(self, workspace: str, kind: str, ref: str, change: Callable[[dict], Checked]) -> Stored:
        raise precondition(self.read_only)

    async def delete(self, workspace: str, kind: str, ref: str) -> None:
        raise precondition(self.read_only)

    async def close(self) -> None:
        return None
