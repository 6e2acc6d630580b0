"""Session-affinity entries: (AOR, Call-ID or affinity value) -> the route id it is pinned to.

Entries are scoped by AOR (Routr used the bare header value as a global key, so two backends
sharing a room id could steer each other's calls). An entry is honoured only while it has not
expired and the route it names is still alive, so it "expires with the route".
"""

from __future__ import annotations

from routr_ray.location.stores.base import AffinityEntry, AffinityKind

AffinityKey = tuple[AffinityKind, str]


class AffinityTable:
    def __init__(self) -> None:
        self._by_aor: dict[str, dict[AffinityKey, AffinityEntry]] = {}

    def get(self, aor: str, kind: AffinityKind, value: str, now: float) -> AffinityEntry | None:
        entry = self._by_aor.get(aor, {}).get((kind, value))
        if entry is None or entry.expires_at <= now:
            return None
        return entry

    def put(self, entry: AffinityEntry) -> None:
        self._by_aor.setdefault(entry.aor, {})[(entry.kind, entry.value)] = entry

    def keys_of(self, aor: str) -> list[AffinityKey]:
        return list(self._by_aor.get(aor, {}))

    def drop_aor(self, aor: str) -> None:
        self._by_aor.pop(aor, None)

    def drop(self, aor: str, keys: list[AffinityKey]) -> None:
        entries = self._by_aor.get(aor)
        if entries is None:
            return
        for key in keys:
            entries.pop(key, None)
        if not entries:
            del self._by_aor[aor]

    def expired(self, now: float) -> dict[str, list[AffinityKey]]:
        found: dict[str, list[AffinityKey]] = {}
        for aor, entries in self._by_aor.items():
            dead = [key for key, entry in entries.items() if entry.expires_at <= now]
            if dead:
                found[aor] = dead
        return found

    def clear(self) -> None:
        self._by_aor.clear()

    def __len__(self) -> int:
        return sum(len(entries) for entries in self._by_aor.values())
