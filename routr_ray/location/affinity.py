"""Session-affinity entries: (AOR, Call-ID or affinity value) -> the route id it is pinned to.

Entries are scoped by AOR (Routr used the bare header value as a global key, so two backends
sharing a room id could steer each other's calls). An entry is honoured only while it has not
expired and the route it names is still alive, so it "expires with the route".

The table is bounded (issue 14): every distinct Call-ID sent to a backend with session affinity makes an
entry that lives for the affinity TTL (1 h by default), so a caller minting Call-IDs could otherwise grow a
shard without limit. Past ``max_entries`` the least recently used entry is dropped: its call (if it is still
going on) is balanced again at its next request, and is pinned anew.
"""

from __future__ import annotations

from collections import OrderedDict

from routr_ray.location.stores.base import DEFAULT_MAX_AFFINITIES, AffinityEntry, AffinityKind

AffinityKey = tuple[AffinityKind, str]

# ~400 bytes an entry in memory: 100,000 entries are ~40 MB per shard, and one shard keeps this many calls with
# affinity within the TTL before the oldest pins go (100,000 / 3600 s ≈ 28 new calls/s per shard).
DEFAULT_MAX_ENTRIES = DEFAULT_MAX_AFFINITIES


class AffinityTable:
    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.evictions = 0
        # (aor, kind, value) -> entry, least recently used first
        self._entries: OrderedDict[tuple[str, AffinityKind, str], AffinityEntry] = OrderedDict()
        self._by_aor: dict[str, dict[AffinityKey, None]] = {}  # the keys of each AOR (insertion-ordered)

    def get(self, aor: str, kind: AffinityKind, value: str, now: float) -> AffinityEntry | None:
        key = (aor, kind, value)
        entry = self._entries.get(key)
        if entry is None or entry.expires_at <= now:
            return None
        self._entries.move_to_end(key)
        return entry

    def peek(self, aor: str, kind: AffinityKind, value: str) -> AffinityEntry | None:
        """The entry as stored (expired or not), without counting as a use."""
        return self._entries.get((aor, kind, value))

    def put(self, entry: AffinityEntry) -> None:
        key = (entry.aor, entry.kind, entry.value)
        if key in self._entries:
            self._entries.move_to_end(key)
        else:
            self._by_aor.setdefault(entry.aor, {})[(entry.kind, entry.value)] = None
        self._entries[key] = entry
        while len(self._entries) > self.max_entries:
            (aor, kind, value), _ = self._entries.popitem(last=False)
            self._unindex(aor, (kind, value))
            self.evictions += 1

    def keys_of(self, aor: str) -> list[AffinityKey]:
        return list(self._by_aor.get(aor, ()))

    def drop_aor(self, aor: str) -> None:
        for kind, value in self._by_aor.pop(aor, ()):
            self._entries.pop((aor, kind, value), None)

    def drop(self, aor: str, keys: list[AffinityKey]) -> None:
        for kind, value in keys:
            if self._entries.pop((aor, kind, value), None) is not None:
                self._unindex(aor, (kind, value))

    def expired(self, now: float) -> dict[str, list[AffinityKey]]:
        found: dict[str, list[AffinityKey]] = {}
        for (aor, kind, value), entry in self._entries.items():
            if entry.expires_at <= now:
                found.setdefault(aor, []).append((kind, value))
        return found

    def clear(self) -> None:
        self._entries.clear()
        self._by_aor.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _unindex(self, aor: str, key: AffinityKey) -> None:
        keys = self._by_aor.get(aor)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._by_aor[aor]
