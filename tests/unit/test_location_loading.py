"""Issue 14 (Location): the bounded affinity table, and a shard that loads its slice in pages, with retries and
backoff, while it serves (routr_ray/location/affinity.py, service.py). A fake paged store stands in for Redis
(tests/integration/test_location_redis.py and tests/attack/test_location_bounds.py run the real one)."""

from __future__ import annotations

import asyncio
import time

import pytest

from routr_ray.location import LocationError, LocationErrorCode, LocationService
from routr_ray.location.affinity import AffinityTable
from routr_ray.location.errors import unavailable
from routr_ray.location.routes import route_id
from routr_ray.location.service import Backoff
from routr_ray.location.stores import MemoryStore, SlicePager, SliceSnapshot, StoredBinding
from routr_ray.location.stores.base import AffinityEntry, AffinityKind
from routr_ray.proto.gen import location_pb2

# ---- the affinity table ------------------------------------------------------------------------------------


def entry(value: str, aor: str = "backend:a", expires_at: float = 1e12) -> AffinityEntry:
    return AffinityEntry(aor, AffinityKind.CALL, value, "rid", expires_at)


def test_the_least_recently_used_entry_goes_first() -> None:
    table = AffinityTable(max_entries=3)
    for value in "abc":
        table.put(entry(value))
    assert table.get("backend:a", AffinityKind.CALL, "a", now=0) is not None  # a is used: b is now the oldest
    table.put(entry("d"))
    assert len(table) == 3 and table.evictions == 1
    assert table.get("backend:a", AffinityKind.CALL, "b", now=0) is None
    assert sorted(v for _, v in table.keys_of("backend:a")) == ["a", "c", "d"]


def test_dropping_an_aor_and_expired_entries_keep_the_index_right() -> None:
    table = AffinityTable(max_entries=10)
    table.put(entry("x", "backend:a"))
    table.put(entry("y", "backend:b", expires_at=5))
    table.put(entry("z", "backend:b"))
    assert table.expired(now=10) == {"backend:b": [(AffinityKind.CALL, "y")]}
    table.drop("backend:b", [(AffinityKind.CALL, "y")])
    table.drop_aor("backend:a")
    assert len(table) == 1 and table.keys_of("backend:a") == [] and table.keys_of("backend:b") == [
        (AffinityKind.CALL, "z")]
    with pytest.raises(ValueError):
        AffinityTable(max_entries=0)


# ---- loading in pages --------------------------------------------------------------------------------------


def route(host: str, contact: str, registered_on: int | None = None) -> location_pb2.Route:
    return location_pb2.Route(host=host, port="5060", expires=600, contact_uri=contact,
                              registered_on=registered_on or int(time.time() * 1000))


def stored(aor: str, r: location_pb2.Route) -> StoredBinding:
    return StoredBinding(aor, route_id(r), r, "0")


class PagedStore(MemoryStore):
    """A durable-looking store whose slice comes in the given pages; ``fail`` pages fail first; ``gate`` holds
    each page until set."""

    durable = True

    def __init__(self, pages: list[SliceSnapshot], fail: int = 0) -> None:
        super().__init__("0")
        self.pages = pages
        self.fail = fail
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.deleted: list[tuple[str, str]] = []

    def pager(self, *, all_shards: bool = False) -> SlicePager:
        store = self

        class Pager(SlicePager):
            index = 0

            async def next_page(self) -> SliceSnapshot | None:
                store.calls += 1
                if store.fail:
                    store.fail -= 1
                    raise unavailable("store down")
                await store.gate.wait()
                if self.index >= len(store.pages):
                    return None
                self.index += 1
                return store.pages[self.index - 1]

        return Pager()

    async def delete_binding(self, aor: str, route_id: str) -> None:
        self.deleted.append((aor, route_id))
        await super().delete_binding(aor, route_id)


async def test_pages_are_retried_with_backoff_until_the_store_answers() -> None:
    old = route("10.0.0.1", "sip:a@10.0.0.1")
    store = PagedStore([SliceSnapshot(bindings=[stored("sip:a@x", old)]), SliceSnapshot(counters={"sip:a@x": 4})],
                       fail=3)
    service = LocationService(store, sweep_interval=0)
    with pytest.raises(LocationError):  # load() itself does not retry by default
        await service.load()
    store.fail = 3
    started = time.monotonic()
    assert await service.load(retry=Backoff(initial=0.01, maximum=0.02)) == 1
    assert store.calls >= 4 + 3 and time.monotonic() - started < 1.0
    assert service.counter_of("sip:a@x") == 4 and not service.loading
    store.fail = 5
    with pytest.raises(LocationError):  # a bounded number of attempts gives up
        await service.load(retry=Backoff(initial=0.001, attempts=3))


async def test_the_shard_serves_while_it_loads_and_live_writes_win() -> None:
    then = int(time.time() * 1000) - 60_000
    a_old = route("10.0.0.1", "sip:a@10.0.0.1", then)
    b_old = route("10.0.0.2", "sip:b@10.0.0.2", then)
    c_old = route("10.0.0.3", "sip:c@10.0.0.3", then)
    store = PagedStore([SliceSnapshot(bindings=[stored("sip:a@x", a_old), stored("sip:b@x", b_old),
                                                stored("sip:c@x", c_old)])])
    store.gate.clear()  # the first page is slow to come
    service = LocationService(store, sweep_interval=0)
    task = service.start_loading(retry=Backoff(initial=0.01))
    assert service.loading
    # nothing read yet: a FindRoutes is UNAVAILABLE (503 + retry), not "not registered"
    with pytest.raises(LocationError) as info:
        await service.find_routes("sip:a@x")
    assert info.value.code is LocationErrorCode.UNAVAILABLE
    with pytest.raises(LocationError) as info:
        await service.remove_routes("sip:a@x")
    assert info.value.code is LocationErrorCode.UNAVAILABLE
    # writes go through and are served at once
    await service.add_route("sip:a@x", route("10.9.9.9", "sip:a@10.0.0.1"))  # a re-register, newer
    await service.add_route("sip:b@x", location_pb2.Route(  # an unregister of a binding not read yet
        host="10.0.0.2", port="5060", expires=0, contact_uri="sip:b@10.0.0.2"))
    assert [r.host for r in await service.find_routes("sip:a@x")] == ["10.9.9.9"]
    store.gate.set()
    assert await asyncio.wait_for(task, 5) == 1  # only c came from the store
    assert [r.host for r in await service.find_routes("sip:a@x")] == ["10.9.9.9"]  # the older copy lost
    assert await service.find_routes("sip:b@x") == []  # not resurrected by the load
    assert ("sip:b@x", route_id(b_old)) in store.deleted  # and deleted in the store though it was not read yet
    assert [r.host for r in await service.find_routes("sip:c@x")] == ["10.0.0.3"]
    assert await service.find_routes("sip:nobody@x") == []  # loaded: nothing found is "not found" again


async def test_the_newest_of_two_stored_copies_wins_across_pages() -> None:
    now = int(time.time() * 1000)
    newer = route("10.0.0.2", "sip:a@pc:5060", now)
    older = route("10.0.0.1", "sip:a@pc:5060", now - 5000)
    store = PagedStore([SliceSnapshot(bindings=[stored("sip:a@x", newer)]),
                        SliceSnapshot(bindings=[stored("sip:a@x", older)])])
    service = LocationService(store, sweep_interval=0)
    assert await service.load() == 1
    assert [r.host for r in await service.find_routes("sip:a@x")] == ["10.0.0.2"]
