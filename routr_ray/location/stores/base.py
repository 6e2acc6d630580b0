"""The persistence interface every Location store implements.

The LocationService keeps the working set of its shard in memory and writes every change through
one of these stores before the call returns; `pager()` (or `load_slice`) gives the state back after a restart.
A store never decides anything (expiry, ownership, balancing): it only keeps what it is told.
Failures to reach the backend raise LocationError(UNAVAILABLE); nothing falls back to memory.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from routr_ray.location.routes import Route

# Affinity entries one shard keeps (in its table, and in the memory store): see location/affinity.py
DEFAULT_MAX_AFFINITIES = 100_000


class AffinityKind(enum.Enum):
    CALL = "c"  # keyed by Call-ID
    REF = "r"  # keyed by the session affinity header value (e.g. X-Room-Id)


@dataclass(frozen=True, slots=True)
class AffinityEntry:
    """`aor` + (`kind`, `value`) is pinned to the route `route_id` until `expires_at` (seconds)."""

    aor: str
    kind: AffinityKind
    value: str
    route_id: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class StoredBinding:
    aor: str
    route_id: str
    route: Route
    shard_id: str  # the shard whose keys hold it (differs from ours only in a rebalance load)
    source_key: str = ""  # the store's key holding this copy ("" for a store without keys)
    needs_rewrite: bool = False  # its key does not follow the current binding identity (an older layout)


@dataclass(slots=True)
class SliceSnapshot:
    bindings: list[StoredBinding] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    affinities: list[AffinityEntry] = field(default_factory=list)


class SlicePager(abc.ABC):
    """One load of a shard's slice, a page at a time (issue 14: a slice of a million bindings is not read in one
    call under one timeout). :meth:`next_page` returns the next part, None when the slice is done. When it raises
    ``LocationError(UNAVAILABLE)`` nothing was consumed: calling it again resumes where the load stopped (so the
    caller may retry with a backoff for as long as the store is down)."""

    @abc.abstractmethod
    async def next_page(self) -> SliceSnapshot | None: ...


class _WholeSlice(SlicePager):
    """The default pager: ``load_slice`` as one page."""

    def __init__(self, store: LocationStore, all_shards: bool) -> None:
        self.store = store
        self.all_shards = all_shards
        self.done = False

    async def next_page(self) -> SliceSnapshot | None:
        if self.done:
            return None
        snapshot = await self.store.load_slice(all_shards=self.all_shards)
        self.done = True
        return snapshot


class LocationStore(abc.ABC):
    """Write-through persistence for one shard's slice of the location table."""

    shard_id: str
    durable: bool  # False: state is lost when the process ends (the memory provider)

    @abc.abstractmethod
    async def load_slice(self, *, all_shards: bool = False) -> SliceSnapshot:
        """Everything stored for this shard (or for every shard when `all_shards`, to rebalance)."""

    def pager(self, *, all_shards: bool = False) -> SlicePager:
        """The slice a page at a time (see :class:`SlicePager`); the default is one page of ``load_slice``."""
        return _WholeSlice(self, all_shards)

    @abc.abstractmethod
    async def put_binding(self, aor: str, route_id: str, route: Route, ttl_ms: int) -> None:
        """Create or replace one binding; the backend may forget it after `ttl_ms`."""

    @abc.abstractmethod
    async def delete_binding(self, aor: str, route_id: str) -> None: ...

    @abc.abstractmethod
    async def delete_aor(
        self, aor: str, route_ids: Iterable[str], affinities: Iterable[tuple[AffinityKind, str]]
    ) -> None:
        """Delete the named bindings, affinity entries and the round-robin counter of `aor`."""

    @abc.abstractmethod
    async def put_counter(self, aor: str, value: int) -> None: ...

    @abc.abstractmethod
    async def put_affinities(
        self, entries: Sequence[AffinityEntry], ttl_ms: int, *, counter: tuple[str, int] | None = None
    ) -> None:
        """Store affinity entries (and, in the same write, an AOR's round-robin `counter`)."""

    @abc.abstractmethod
    async def delete_affinities(self, aor: str, keys: Iterable[tuple[AffinityKind, str]]) -> None: ...

    @abc.abstractmethod
    async def adopt_binding(self, binding: StoredBinding, ttl_ms: int) -> None:
        """Store `binding` under this shard and its current identity, and delete the copy it was loaded from
        (rebalance: another shard's key; migration: a key of an older identity rule)."""

    async def discard_copy(self, binding: StoredBinding) -> None:  # noqa: B027 - optional hook
        """Delete the stored copy `binding` was loaded from (a newer copy of the same binding won)."""

    async def get_shard_count(self) -> int | None:
        """The shard count this shard last loaded with (None: never recorded, or not durable)."""
        return None

    async def put_shard_count(self, count: int) -> None:  # noqa: B027 - optional hook
        """Record the shard count this shard loaded with (durable stores only)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default has nothing to release."""
