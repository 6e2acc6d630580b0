"""The Ray side of the cluster's server health (``routr_ray/util/server_health.py``, issue 15).

The table lives in the trunk registrar actor (``trunk-registrar``: one per cluster, started whenever Connect runs;
its keepalive results go straight in). :class:`RegistrarHealth` is how EdgePorts and Connect replicas reach it:
``fetch`` long-polls its newest snapshot, ``publish`` sends an EdgePort's hold-down marks. The actor is looked up
by name on first use and again after a failure (it may have been restarted, or not be started yet: then the
callers keep their own tables and retry).
"""

from __future__ import annotations

from typing import Any

import ray

from routr_ray.actors import NAMESPACE
from routr_ray.util.server_health import HealthSnapshot

__all__ = ["HOLDER", "RegistrarHealth"]

HOLDER = "trunk-registrar"  # routr_ray/actors/trunk_registrar.py NAME (not imported: that module imports EdgePorts)


class RegistrarHealth:
    def __init__(self, name: str = HOLDER) -> None:
        self.name = name
        self._handle: Any = None

    def _get(self) -> Any:
        if self._handle is None:
            self._handle = ray.get_actor(self.name, namespace=NAMESPACE)
        return self._handle

    async def fetch(self, epoch: str, version: int, wait: float) -> HealthSnapshot | None:
        try:
            found = await self._get().health_newer_than.remote(epoch, version, wait)
        except Exception:
            self._handle = None
            raise
        return HealthSnapshot.from_plain(found) if found is not None else None

    async def publish(self, marks: list[tuple[str, str, int, float]]) -> None:
        try:
            await self._get().health_mark.remote([list(m) for m in marks])
        except Exception:
            self._handle = None
            raise
