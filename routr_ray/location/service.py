"""LocationService: bindings, expiry, balancing and affinity for one shard (pure asyncio, no Ray).

The service keeps its shard's slice in memory and answers reads from there; every change goes
through the store *before* memory is updated and before the call returns (write-through), so a
failed write changes nothing and a restarted shard reloads exactly what callers were told.
Time comes from an injected clock (seconds), so expiry is testable without sleeping.
Rules follow Routr's location service (routr.md §7) minus its known bugs (§12).

Loading (issue 14): the slice is read a page at a time (`LocationStore.pager`), each page retried with a
backoff while the store is down (`Backoff`); :meth:`start_loading` runs the load in the background and the
shard serves meanwhile: writes go through as usual (and win over the older copies the load brings later),
a FindRoutes that finds a live route in memory is answered, one that finds none yet is UNAVAILABLE (the
processor answers 503 + Retry-After, not a false 480), and RemoveRoutes is UNAVAILABLE until the slice is in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from routr_ray.location import balancing
from routr_ray.location.affinity import DEFAULT_MAX_ENTRIES, AffinityKey, AffinityTable
from routr_ray.location.aor import aor_domain, normalize_aor
from routr_ray.location.errors import LocationError, LocationErrorCode, invalid_argument, unavailable
from routr_ray.location.hashing import shard_for_normalized_aor
from routr_ray.location.routes import (
    Route,
    canonical_contact,
    copy_route,
    expires_at_ms,
    labels_match,
    route_id,
)
from routr_ray.location.stores.base import (
    AffinityEntry,
    AffinityKind,
    LocationStore,
    SliceSnapshot,
    StoredBinding,
)
from routr_ray.location.stores.memory import MemoryStore
from routr_ray.proto.gen import location_pb2

log = logging.getLogger(__name__)

Backend = location_pb2.FindRoutesRequest.Backend
Clock = Callable[[], float]
T = TypeVar("T")

DEFAULT_AFFINITY_TTL_S = 3600.0
DEFAULT_SWEEP_INTERVAL_S = 30.0
_LOCK_STRIPES = 64


@dataclass(frozen=True, slots=True)
class Backoff:
    """Retries of a store call that failed with UNAVAILABLE: waits of ``initial`` seconds, doubled each time up to
    ``maximum`` (with ±20% jitter), for ``attempts`` calls in all (None: until it succeeds)."""

    initial: float = 0.2
    maximum: float = 5.0
    attempts: int | None = None


NO_RETRY = Backoff(attempts=1)


@dataclass(slots=True)
class _Binding:
    route: Route  # owned by the service, never handed out (callers get copies)
    expires_at_ms: int
    route_id: str  # routes.route_id(route), computed once


class LocationService:
    """One shard's location table.

    `shard_index`/`shard_count` (optional) make the service refuse AORs that jump hash places on
    another shard and skip them on reload.
    """

    def __init__(
        self,
        store: LocationStore | None = None,
        *,
        clock: Clock = time.time,
        affinity_ttl: float = DEFAULT_AFFINITY_TTL_S,
        sweep_interval: float = DEFAULT_SWEEP_INTERVAL_S,
        shard_index: int | None = None,
        shard_count: int | None = None,
        max_affinities: int = DEFAULT_MAX_ENTRIES,
    ) -> None:
        if affinity_ttl <= 0:
            raise ValueError("affinity_ttl must be > 0 seconds")
        if (shard_index is None) != (shard_count is None):
            raise ValueError("give both shard_index and shard_count, or neither")
        if shard_count is not None and shard_index is not None and not 0 <= shard_index < shard_count:
            raise ValueError(f"shard_index {shard_index} is outside 0..{shard_count - 1}")
        self.store: LocationStore = store if store is not None else MemoryStore()
        self._clock = clock
        self._affinity_ttl = affinity_ttl
        self._sweep_interval = sweep_interval
        self._shard_index = shard_index
        self._shard_count = shard_count
        self._bindings: dict[str, dict[str, _Binding]] = {}  # aor -> route id -> binding (oldest first)
        self._counters: dict[str, int] = {}
        self._affinity = AffinityTable(max_affinities)
        self._locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]
        self._last_sweep = clock()
        self._sweep_task: asyncio.Task[int] | None = None
        # while a load runs: the bindings written or deleted since it began (newer than any stored copy)
        self._loading = False
        self._touched: set[tuple[str, str]] = set()
        self._load_task: asyncio.Task[int] | None = None

    # ---- public API ---------------------------------------------------------------------------

    @property
    def loading(self) -> bool:
        """True while a load is running (see the module docstring for what is served meanwhile)."""
        return self._loading

    def start_loading(self, *, rebalance: bool | None = None, retry: Backoff = Backoff()) -> asyncio.Task[int]:
        """:meth:`load` in a background task, each page retried with ``retry`` (by default until the store
        answers); the shard serves meanwhile. Returns the task (its result: the bindings loaded)."""
        self._begin_load()  # at once: calls made before the task first runs already see a loading shard
        self._load_task = asyncio.get_running_loop().create_task(self._load(rebalance, retry))
        self._load_task.add_done_callback(_log_load_failure)
        return self._load_task

    async def loaded(self) -> int:
        """Wait for the background load; its count of bindings loaded."""
        if self._load_task is None:
            return 0
        return await asyncio.shield(self._load_task)

    async def load(self, *, rebalance: bool | None = None, retry: Backoff = NO_RETRY) -> int:
        """Replace the in-memory state with the store's slice, a page at a time; returns the live bindings loaded.

        Each page is retried with ``retry`` (by default not at all: a failure raises LocationError(UNAVAILABLE)).
        Writes made while the load runs win over the stored copies it brings later.

        With `rebalance` every shard's keys are read and the bindings this shard now owns are
        moved under its own shard id. None (the default) rebalances when this shard's recorded
        shard count differs from `shard_count` (first start, or N changed); a durable store
        records the count after the load.
        """
        self._begin_load()
        return await self._load(rebalance, retry)

    def _begin_load(self) -> None:
        self._bindings.clear()
        self._counters.clear()
        self._affinity.clear()
        self._touched.clear()
        self._loading = True

    async def _load(self, rebalance: bool | None, retry: Backoff) -> int:
        if not self.store.durable:
            log.warning("location shard %s uses the memory provider: its bindings are lost when the "
                        "process restarts", self.store.shard_id)
        started = time.monotonic()
        loaded = 0
        try:
            if rebalance is None:
                rebalance = (
                    self.store.durable
                    and self._shard_count is not None
                    and await self._retrying(self.store.get_shard_count, retry, "read its shard count")
                    != self._shard_count
                )
            pager = self.store.pager(all_shards=rebalance)
            pages = 0
            while (page := await self._retrying(pager.next_page, retry, "load its slice")) is not None:
                loaded += await self._merge(page)
                pages += 1
                if pages % 100 == 0:
                    await asyncio.sleep(0)  # a page may have needed no I/O: let calls in between
            if self._shard_count is not None and self.store.durable:
                count = self._shard_count
                await self._retrying(lambda: self.store.put_shard_count(count), retry, "record its shard count")
        finally:
            self._loading = False
            self._touched.clear()
        self._last_sweep = self._clock()
        if rebalance:
            log.info("location shard %s rebalanced for %s shards: %d bindings", self.store.shard_id,
                     self._shard_count, loaded)
        log.info("location shard %s loaded %d bindings in %.1fs", self.store.shard_id, loaded,
                 time.monotonic() - started)
        return loaded

    async def _retrying(self, call: Callable[[], Awaitable[T]], retry: Backoff, what: str) -> T:
        delay = retry.initial
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await call()
            except LocationError as exc:
                if exc.code is not LocationErrorCode.UNAVAILABLE or (
                    retry.attempts is not None and attempt >= retry.attempts
                ):
                    raise
                if attempt == 1:
                    log.warning("location shard %s cannot %s (%s); retrying with backoff, serving what it has",
                                self.store.shard_id, what, exc.message)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, retry.maximum)
                continue
            if attempt > 1:
                log.info("location shard %s: store back after %d attempts", self.store.shard_id, attempt)
            return result

    async def _merge(self, page: SliceSnapshot) -> int:
        """Take one page of the stored slice: what a live write changed since the load began stays as written,
        and of two stored copies of one binding the most recent registration wins (the loser's key is deleted
        when it is not the binding's current key)."""
        now_ms = self._now_ms()
        loaded = 0
        for stored in page.bindings:
            loaded += await self._merge_binding(stored, now_ms)
        for aor, n in page.counters.items():
            if self._owns(aor):
                self._counters[aor] = max(n, self._counters.get(aor, 0))
        now = now_ms / 1000
        for entry in page.affinities:
            if entry.expires_at > now and self._owns(entry.aor) and (
                self._affinity.peek(entry.aor, entry.kind, entry.value) is None
            ):
                self._affinity.put(entry)
        return loaded

    async def _merge_binding(self, stored: StoredBinding, now_ms: int) -> int:
        aor, rid = stored.aor, stored.route_id
        expiry = expires_at_ms(stored.route)
        if expiry <= now_ms or not self._owns(aor):
            return 0
        current_key = stored.shard_id == self.store.shard_id and not stored.needs_rewrite
        async with self._lock(aor):
            existing = self._bindings.get(aor, {}).get(rid)
            if (aor, rid) in self._touched or (
                existing is not None and existing.route.registered_on >= stored.route.registered_on
            ):
                if not current_key and stored.source_key:
                    await self.store.discard_copy(stored)
                return 0
            if not current_key:
                await self.store.adopt_binding(stored, expiry - now_ms)
            self._bindings.setdefault(aor, {})[rid] = _Binding(stored.route, expiry, rid)
        return 0 if existing is not None else 1

    async def add_route(self, aor: str, route: Route, max_contacts: int = 0) -> None:
        """Create, refresh or (expires 0) remove the binding of `route` under `aor`.

        Raises LocationError: INVALID_ARGUMENT (bad AOR, route or too many contacts),
        UNAVAILABLE (store unreachable; nothing changed).
        """
        aor = self._checked_aor(aor)
        if route is None or not route.host.strip():
            raise invalid_argument(f"route for {aor} has no host")
        if route.expires < 0:
            raise invalid_argument(f"route for {aor} has negative expires {route.expires}; use 0 to remove it")
        now_ms = self._now_ms()
        stored = copy_route(route)
        if stored.registered_on <= 0:
            stored.registered_on = now_ms
        rid = route_id(stored)
        expiry = expires_at_ms(stored)
        self._maybe_start_sweep(now_ms)
        async with self._lock(aor):
            current = self._bindings.get(aor, {})
            if self._loading:
                self._touched.add((aor, rid))  # newer than any copy the running load may still bring
            if stored.expires == 0 or expiry <= now_ms:  # RFC 3261 §10.3 step 6: expires 0 removes
                if rid in current or self._loading:  # loading: a stored copy not read yet must go too
                    await self.store.delete_binding(aor, rid)
                    self._forget(aor, [rid])
                return
            limit_applies = max_contacts > 0
            existing = current.get(rid)
            if limit_applies and (existing is None or existing.expires_at_ms <= now_ms):
                live = sum(1 for b in current.values() if b.expires_at_ms > now_ms)
                if live >= max_contacts:
                    raise invalid_argument(
                        f"{aor} exceeds maximum of {max_contacts} allowed contacts"
                    )
            await self.store.put_binding(aor, rid, stored, expiry - now_ms)
            current.pop(rid, None)  # re-insert: dict order is registration order
            current[rid] = _Binding(stored, expiry, rid)
            self._bindings[aor] = current

    async def find_routes(
        self,
        aor: str,
        call_id: str = "",
        session_affinity_ref: str = "",
        backend: Backend | None = None,
        labels: Mapping[str, str] | None = None,
        avoid_contact_uris: Iterable[str] = (),
    ) -> list[Route]:
        """Live routes of `aor` whose labels contain `labels`.

        Without `backend`: all of them, most recent first (for forking). With `backend`: one
        route chosen by its algorithm, pinned per Call-ID and per `session_affinity_ref` when
        `backend.with_session_affinity`; the bindings whose Contact is in `avoid_contact_uris` (a Peer's
        bindings that failed their OPTIONS keepalive) only when no other is left, and a pin to one of them
        moves to another. Returns [] when nothing matches (the gRPC layer answers NOT_FOUND). Returned
        messages are copies the caller may change.
        """
        aor = self._checked_aor(aor)
        now_ms = self._now_ms()
        self._maybe_start_sweep(now_ms)
        wanted = dict(labels or {})
        if backend is None:
            live = self._live(aor, now_ms, wanted)[::-1]  # dict order is registration order
            live.sort(key=lambda b: b.route.registered_on, reverse=True)  # stable: ties stay newest first
            return [copy_route(b.route) for b in live] if live else self._none_found(aor)
        avoid = frozenset(canonical_contact(uri) for uri in avoid_contact_uris)
        if backend.with_session_affinity and (call_id or session_affinity_ref):
            async with self._lock(aor):
                return await self._find_with_affinity(aor, call_id, session_affinity_ref, backend, wanted, avoid)
        live = _preferred(self._live(aor, now_ms, wanted), avoid)
        if not live:
            return self._none_found(aor)
        choice = await self._next(aor, backend.algorithm, live)
        return [copy_route(choice)]

    async def remove_routes(self, aor: str, contact_uris: Iterable[str] = ()) -> int:
        """Remove every binding of `aor` (and its counter and affinity entries), or only those whose
        `contact_uri` is listed. Returns how many bindings were removed."""
        aor = self._checked_aor(aor)
        if self._loading:  # bindings not read yet would survive (and come back): wait for the slice
            raise unavailable(f"location shard {self.store.shard_id} is loading its bindings; try again")
        only = {canonical_contact(uri) for uri in contact_uris}
        async with self._lock(aor):
            current = self._bindings.get(aor, {})
            if only:
                doomed = [
                    rid for rid, b in current.items()
                    if b.route.contact_uri and canonical_contact(b.route.contact_uri) in only
                ]
                if doomed and len(doomed) < len(current):
                    for rid in doomed:
                        await self.store.delete_binding(aor, rid)
                    self._forget(aor, doomed)
                    return len(doomed)
                if not doomed:
                    return 0
            removed = len(current)
            await self.store.delete_aor(aor, list(current), self._affinity.keys_of(aor))
            self._bindings.pop(aor, None)
            self._counters.pop(aor, None)
            self._affinity.drop_aor(aor)
            return removed

    async def sweep(self) -> int:
        """Drop expired bindings and affinity entries; returns how many bindings went.

        Memory is pruned first; deleting from the store is best effort (Redis drops the keys by
        TTL anyway and the index sets are pruned on reload), so a Redis outage never fails a sweep.
        """
        now_ms = self._now_ms()
        self._last_sweep = now_ms / 1000
        stale = [aor for aor, bs in self._bindings.items() if any(b.expires_at_ms <= now_ms for b in bs.values())]
        removed = 0
        for aor in stale:
            async with self._lock(aor):
                current = self._bindings.get(aor, {})
                dead = [rid for rid, b in current.items() if b.expires_at_ms <= now_ms]
                if not dead:
                    continue
                emptied = len(dead) == len(current)
                affinity_keys = self._affinity.keys_of(aor) if emptied else []
                self._forget(aor, dead)
                if emptied:
                    self._counters.pop(aor, None)
                    self._affinity.drop_aor(aor)
                removed += len(dead)
                try:
                    if emptied:
                        await self.store.delete_aor(aor, dead, affinity_keys)
                    else:
                        for rid in dead:
                            await self.store.delete_binding(aor, rid)
                except LocationError as exc:
                    log.warning("location sweep could not prune %s from the store: %s", aor, exc.message)
        for aor, keys in self._affinity.expired(now_ms / 1000).items():
            self._affinity.drop(aor, keys)
            try:
                await self.store.delete_affinities(aor, keys)
            except LocationError as exc:
                log.warning("location sweep could not prune affinity of %s: %s", aor, exc.message)
        return removed

    async def close(self) -> None:
        """Stop a running sweep or load and close the store's connections."""
        for task in (self._sweep_task, self._load_task):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, LocationError):
                    await task
        await self.store.close()

    # ---- protobuf request helpers (for the shard actor and the gRPC servicer) ------------------

    async def handle_add_route(self, request: location_pb2.AddRouteRequest) -> None:
        route = request.route if request.HasField("route") else None
        await self.add_route(request.aor, route, request.max_contacts)  # type: ignore[arg-type]

    async def handle_find_routes(self, request: location_pb2.FindRoutesRequest) -> location_pb2.FindRoutesResponse:
        backend = request.backend if request.HasField("backend") else None
        routes = await self.find_routes(
            request.aor, request.call_id, request.session_affinity_ref, backend, dict(request.labels),
            request.avoid_contact_uris,
        )
        return location_pb2.FindRoutesResponse(routes=routes)

    async def handle_remove_routes(self, request: location_pb2.RemoveRoutesRequest) -> int:
        return await self.remove_routes(request.aor, request.contact_uris)

    # ---- introspection (metrics, tests) --------------------------------------------------------

    @property
    def binding_count(self) -> int:
        return sum(len(bs) for bs in self._bindings.values())

    @property
    def aor_count(self) -> int:
        return len(self._bindings)

    def bindings_by_domain(self, limit: int = 64) -> dict[str, int]:
        """Bindings per domain of their AOR (``backend`` for backend AORs), for the metrics: at most ``limit``
        domains by name, the rest counted as ``other`` (a label set that AORs written through the Location API
        cannot grow without bound). Read at scrape time: one pass over the AORs, as :attr:`binding_count`."""
        counts: dict[str, int] = {}
        for aor, bindings in self._bindings.items():
            domain = aor_domain(aor)
            if domain not in counts and len(counts) >= limit:
                domain = "other"
            counts[domain] = counts.get(domain, 0) + len(bindings)
        return counts

    def counter_of(self, aor: str) -> int:
        return self._counters.get(normalize_aor(aor), 0)

    @property
    def affinity_count(self) -> int:
        return len(self._affinity)

    # ---- internals ----------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _lock(self, aor: str) -> asyncio.Lock:
        return self._locks[hash(aor) % _LOCK_STRIPES]

    def _owns(self, aor: str) -> bool:
        if self._shard_count is None:
            return True
        return shard_for_normalized_aor(aor, self._shard_count) == self._shard_index

    def _checked_aor(self, aor: str) -> str:
        canonical = normalize_aor(aor)
        if not self._owns(canonical):
            owner = shard_for_normalized_aor(canonical, self._shard_count or 1)
            raise LocationError(
                LocationErrorCode.FAILED_PRECONDITION,
                f"{canonical} belongs to location shard {owner} of {self._shard_count}, "
                f"not shard {self._shard_index}",
            )
        return canonical

    def _none_found(self, aor: str) -> list[Route]:
        """No live route in memory: [] once the slice is loaded; UNAVAILABLE while it loads (the route may be in a
        page not read yet: the caller answers 503 + Retry-After rather than "not registered")."""
        if self._loading:
            raise unavailable(f"location shard {self.store.shard_id} is loading its bindings; {aor} not read yet")
        return []

    def _live(self, aor: str, now_ms: int, wanted: Mapping[str, str]) -> list[_Binding]:
        return [
            b
            for b in self._bindings.get(aor, {}).values()
            if b.expires_at_ms > now_ms and labels_match(b.route, wanted)
        ]

    def _forget(self, aor: str, route_ids: Sequence[str]) -> None:
        current = self._bindings.get(aor)
        if current is None:
            return
        for rid in route_ids:
            current.pop(rid, None)
        if not current:
            del self._bindings[aor]

    async def _next(self, aor: str, algorithm: int, live: list[_Binding]) -> Route:
        """Pick by `algorithm` and persist the advanced counter."""
        choice, counter = self._advance(aor, algorithm, live)
        await self.store.put_counter(aor, counter)
        return choice.route

    def _advance(self, aor: str, algorithm: int, live: list[_Binding]) -> tuple[_Binding, int]:
        """Advance the AOR's counter and pick over a stable order; the caller persists the counter."""
        ordered = sorted(live, key=lambda b: b.route_id)
        by_route = {id(b.route): b for b in ordered}
        counter = self._counters.get(aor, 0)
        self._counters[aor] = counter + 1  # taken before any await: concurrent callers rotate
        choice = balancing.pick(algorithm, [b.route for b in ordered], counter)
        return by_route[id(choice)], counter + 1

    async def _find_with_affinity(
        self, aor: str, call_id: str, ref: str, backend: Backend, wanted: Mapping[str, str],
        avoid: frozenset[str] = frozenset(),
    ) -> list[Route]:
        now_ms = self._now_ms()  # re-read: the lock may have been contended
        now = now_ms / 1000
        live = _preferred(self._live(aor, now_ms, wanted), avoid)
        if not live:
            return self._none_found(aor)
        by_id = {b.route_id: b for b in live}
        keys: list[AffinityKey] = []
        if call_id:
            keys.append((AffinityKind.CALL, call_id))
        if ref:
            keys.append((AffinityKind.REF, ref))
        # The call's own pin wins (a call never moves mid-way), then the shared affinity value.
        current = {key: self._affinity.get(aor, key[0], key[1], now) for key in keys}
        target: _Binding | None = None
        for key in keys:
            entry = current[key]
            if entry is not None and entry.route_id in by_id:
                target = by_id[entry.route_id]
                break
        counter: tuple[str, int] | None = None
        if target is None:
            target, advanced = self._advance(aor, backend.algorithm, live)
            counter = (aor, advanced)
        target_id = target.route_id
        refresh_before = now + self._affinity_ttl / 2
        stale = [
            key
            for key in keys
            if current[key] is None
            or current[key].route_id != target_id  # type: ignore[union-attr]
            or current[key].expires_at < refresh_before  # type: ignore[union-attr]
        ]
        if stale:  # one store round trip for the new pins and the advanced counter
            entries = [AffinityEntry(aor, kind, value, target_id, now + self._affinity_ttl) for kind, value in stale]
            await self.store.put_affinities(entries, int(self._affinity_ttl * 1000), counter=counter)
            for entry in entries:
                self._affinity.put(entry)
        return [copy_route(target.route)]

    def _maybe_start_sweep(self, now_ms: int) -> None:
        if self._sweep_interval <= 0 or now_ms / 1000 - self._last_sweep < self._sweep_interval:
            return
        if self._sweep_task is not None and not self._sweep_task.done():
            return
        self._last_sweep = now_ms / 1000
        self._sweep_task = asyncio.get_running_loop().create_task(self.sweep())
        self._sweep_task.add_done_callback(_log_sweep_failure)


def _log_load_failure(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("location load failed", exc_info=task.exception())


def _log_sweep_failure(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("location sweep failed", exc_info=task.exception())


def _preferred(live: list[_Binding], avoid: frozenset[str]) -> list[_Binding]:
    """``live`` without the bindings whose Contact is avoided; all of them when every one is."""
    if not avoid:
        return live
    kept = [b for b in live if not b.route.contact_uri or canonical_contact(b.route.contact_uri) not in avoid]
    return kept or live
