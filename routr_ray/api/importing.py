"""``routr-ray resources import DIR``: the documents of a resource directory, checked as ``validate-config`` checks
them (the whole set: refs, duplicates) and then one by one as an API write, passwords sealed, ready for
:meth:`~routr_ray.api.store.postgres.PostgresStore.import_documents`."""

from __future__ import annotations

import copy
from pathlib import Path

from routr_ray.api.kinds import KINDS
from routr_ray.api.secrets import Sealer, seal_document
from routr_ray.api.validate import Checked, check
from routr_ray.config import load_resources
from routr_ray.config.documents import UNREADABLE, config_files_in, read_document
from routr_ray.config.problems import Place, Problems

_KIND_BY_LOWER = {k.lower(): k for k in KINDS}


def documents_to_import(directory: str | Path, sealer: Sealer | None) -> list[tuple[str, Checked]]:
    """Raises ConfigInvalid (every error) or ApiError."""
    path = Path(directory)
    load_resources(path)  # the set as a whole, errors with file and pointer
    items: list[tuple[str, Checked]] = []
    problems = Problems()
    for file in config_files_in(path) if path.is_dir() else [path]:
        data = read_document(file, Place(problems, str(file)))
        if data is UNREADABLE or data is None:
            continue
        for document in data if isinstance(data, list) else [data]:
            kind = _KIND_BY_LOWER.get(str(document.get("kind", "")).lower()) if isinstance(document, dict) else None
            if kind is None:
                continue  # not a resource (an EdgePort config beside them, say)
            document = {**copy.deepcopy(document), "kind": kind}
            checked = check(KINDS[kind], document)
            items.append((kind, Checked(seal_document(sealer, kind, copy.deepcopy(checked.document)),
                                        checked.references, checked.uniques)))
    return items
