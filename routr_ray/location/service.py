"""LocationService: bindings, expiry, balancing and affinity for one shard (pure asyncio, no Ray).

The service keeps its shard's slice in memory and answers reads from there; every change goes
through the store *before* memory is updated and before the call returns (write-through), so a
failed write changes nothing and a restarted shard reloads exactly what callers were told.
Time comes from an injected clock (seconds), so expiry is testable without sleeping.
Rules follow Routr's location service (routr.md §7) minus its known bugs (§12).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from routr_ray.location import balancing
from routr_ray.location.affinity import AffinityKey, AffinityTable
from routr_ray.location.aor import normalize_aor
from routr_ray.location.errors import LocationError, LocationErrorCode, invalid_argument
from routr_ray.location.hashing import shard_for_normalized_aor
from routr_ray.location.routes import (
    Route,
    canonical_contact,
    copy_route,
    expires_at_ms,
    labels_match,
    route_id,
)
from routr_ray.location.stores.base import AffinityEntry, AffinityKind, LocationStore, StoredBinding
from routr_ray.location.stores.memory import MemoryStore
from routr_ray.proto.gen import location_pb2

log = logging.getLogger(__name__)

Backend = location_pb2.FindRoutesRequest.Backend
Clock = Callable[[], float]

DEFAULT_AFFINITY_TTL_S = 3600.0
DEFAULT_SWEEP_INTERVAL_S = 30.0
_LOCK_STRIPES = 64


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
        self._affinity = AffinityTable()
        self._locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]
        self._last_sweep = clock()
        self._sweep_task: asyncio.Task[int] | None = None

    # ---- public API ---------------------------------------------------------------------------

    async def load(self, *, rebalance: bool | None = None) -> int:
        """Replace the in-memory state with the store's slice; returns the live bindings loaded.

        With `rebalance` every shard's keys are read and the bindings this shard now owns are
        moved under its own shard id. None (the default) rebalances when this shard's recorded
        shard count differs from `shard_count` (first start, or N changed); a durable store
        records the count after the load.
        """
        if not self.store.durable:
            log.warning("location shard %s uses the memory provider: its bindings are lost when the "
                        "process restarts", self.store.shard_id)
        if rebalance is None:
            rebalance = (
                self.store.durable
                and self._shard_count is not None
                and await self.store.get_shard_count() != self._shard_count
            )
        snapshot = await self.store.load_slice(all_shards=rebalance)
        now_ms = self._now_ms()
        self._bindings.clear()
        self._counters.clear()
        self._affinity.clear()
        # Newest registration wins when two stored copies share an identity (keys written under an older
        # identity rule, or a rebalance meeting a copy this shard already had); the losers are deleted.
        winners: dict[tuple[str, str], StoredBinding] = {}
        for stored in sorted(snapshot.bindings, key=lambda b: b.route.registered_on):
            if expires_at_ms(stored.route) <= now_ms or not self._owns(stored.aor):
                continue
            loser = winners.pop((stored.aor, stored.route_id), None)
            if loser is not None and loser.source_key != stored.source_key:
                await self.store.discard_copy(loser)
            winners[(stored.aor, stored.route_id)] = stored
        for stored in winners.values():
            expiry = expires_at_ms(stored.route)
            if stored.shard_id != self.store.shard_id or stored.needs_rewrite:
                await self.store.adopt_binding(stored, expiry - now_ms)
            self._bindings.setdefault(stored.aor, {})[stored.route_id] = _Binding(stored.route, expiry, stored.route_id)
        loaded = len(winners)
        self._counters.update((aor, n) for aor, n in snapshot.counters.items() if self._owns(aor))
        now = now_ms / 1000
        for entry in snapshot.affinities:
            if entry.expires_at > now and self._owns(entry.aor):
                self._affinity.put(entry)
        self._last_sweep = now
        if self._shard_count is not None and self.store.durable:
            await self.store.put_shard_count(self._shard_count)
        if rebalance:
            log.info("location shard %s rebalanced for %s shards: %d bindings", self.store.shard_id,
                     self._shard_count, loaded)
        return loaded

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
            if stored.expires == 0 or expiry <= now_ms:  # RFC 3261 §10.3 step 6: expires 0 removes
                if rid in current:
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
    ) -> list[Route]:
        """Live routes of `aor` whose labels contain `labels`.

        Without `backend`: all of them, most recent first (for forking). With `backend`: one
        route chosen by its algorithm, pinned per Call-ID and per `session_affinity_ref` when
        `backend.with_session_affinity`. Returns [] when nothing matches (the gRPC layer answers
        NOT_FOUND). Returned messages are copies the caller may change.
        """
        aor = self._checked_aor(aor)
        now_ms = self._now_ms()
        self._maybe_start_sweep(now_ms)
        wanted = dict(labels or {})
        if backend is None:
            live = self._live(aor, now_ms, wanted)[::-1]  # dict order is registration order
            live.sort(key=lambda b: b.route.registered_on, reverse=True)  # stable: ties stay newest first
            return [copy_route(b.route) for b in live]
        if backend.with_session_affinity and (call_id or session_affinity_ref):
            async with self._lock(aor):
                return await self._find_with_affinity(aor, call_id, session_affinity_ref, backend, wanted)
        live = self._live(aor, now_ms, wanted)
        if not live:
            return []
        choice = await self._next(aor, backend.algorithm, live)
        return [copy_route(choice)]

    async def remove_routes(self, aor: str, contact_uris: Iterable[str] = ()) -> int:
        """Remove every binding of `aor` (and its counter and affinity entries), or only those whose
        `contact_uri` is listed. Returns how many bindings were removed."""
        aor = self._checked_aor(aor)
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
        """Stop a running sweep and close the store's connections."""
        task = self._sweep_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.store.close()

    # ---- protobuf request helpers (for the shard actor and the gRPC servicer) ------------------

    async def handle_add_route(self, request: location_pb2.AddRouteRequest) -> None:
        route = request.route if request.HasField("route") else None
        await self.add_route(request.aor, route, request.max_contacts)  # type: ignore[arg-type]

    async def handle_find_routes(self, request: location_pb2.FindRoutesRequest) -> location_pb2.FindRoutesResponse:
        backend = request.backend if request.HasField("backend") else None
        routes = await self.find_routes(
            request.aor, request.call_id, request.session_affinity_ref, backend, dict(request.labels)
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
        self, aor: str, call_id: str, ref: str, backend: Backend, wanted: Mapping[str, str]
    ) -> list[Route]:
        now_ms = self._now_ms()  # re-read: the lock may have been contended
        now = now_ms / 1000
        live = self._live(aor, now_ms, wanted)
        if not live:
            return []
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


def _log_sweep_failure(task: asyncio.Task[int]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("location sweep failed", exc_info=task.exception())
