"""The embedded store: plain dicts in this process.

It survives a new LocationService on the same store object (tests, hot reload) but not a process
restart: with the memory provider a restarted shard starts empty.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

from routr_ray.location.routes import Route
from routr_ray.location.stores.base import (
    DEFAULT_MAX_AFFINITIES,
    AffinityEntry,
    AffinityKind,
    LocationStore,
    SliceSnapshot,
    StoredBinding,
)


class MemoryStore(LocationStore):
    durable = False

    def __init__(self, shard_id: str = "0", *, max_affinities: int = DEFAULT_MAX_AFFINITIES) -> None:
        self.shard_id = str(shard_id)
        self.max_affinities = max_affinities  # bounded like the service's table (oldest written first out)
        self._bindings: dict[tuple[str, str], Route] = {}
        self._counters: dict[str, int] = {}
        self._affinities: OrderedDict[tuple[str, AffinityKind, str], AffinityEntry] = OrderedDict()

    async def load_slice(self, *, all_shards: bool = False) -> SliceSnapshot:
        return SliceSnapshot(
            bindings=[
                StoredBinding(aor, rid, route, self.shard_id) for (aor, rid), route in self._bindings.items()
            ],
            counters=dict(self._counters),
            affinities=list(self._affinities.values()),
        )

    async def put_binding(self, aor: str, route_id: str, route: Route, ttl_ms: int) -> None:
        self._bindings[(aor, route_id)] = route

    async def delete_binding(self, aor: str, route_id: str) -> None:
        self._bindings.pop((aor, route_id), None)

    async def delete_aor(
        self, aor: str, route_ids: Iterable[str], affinities: Iterable[tuple[AffinityKind, str]]
    ) -> None:
        for rid in route_ids:
            self._bindings.pop((aor, rid), None)
        for kind, value in affinities:
            self._affinities.pop((aor, kind, value), None)
        self._counters.pop(aor, None)

    async def put_counter(self, aor: str, value: int) -> None:
        self._counters[aor] = value

    async def put_affinities(
        self, entries: Sequence[AffinityEntry], ttl_ms: int, *, counter: tuple[str, int] | None = None
    ) -> None:
        if counter is not None:
            self._counters[counter[0]] = counter[1]
        for entry in entries:
            key = (entry.aor, entry.kind, entry.value)
            self._affinities[key] = entry
            self._affinities.move_to_end(key)
        while len(self._affinities) > self.max_affinities:
            self._affinities.popitem(last=False)

    async def delete_affinities(self, aor: str, keys: Iterable[tuple[AffinityKind, str]]) -> None:
        for kind, value in keys:
            self._affinities.pop((aor, kind, value), None)

    async def adopt_binding(self, binding: StoredBinding, ttl_ms: int) -> None:
        self._bindings[(binding.aor, binding.route_id)] = binding.route

    def __len__(self) -> int:
        return len(self._bindings)
