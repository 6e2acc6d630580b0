"""Batched operations on a shard: per-AOR order, overlapping store writes for a durable store."""

from __future__ import annotations

import asyncio
import time

from routr_ray.location import LocationService
from routr_ray.location.ops import apply_ops, decode_result, encode_add, encode_find, encode_remove
from routr_ray.location.stores import MemoryStore
from routr_ray.proto.gen import location_pb2

WRITE_DELAY = 0.05


class SlowDurableStore(MemoryStore):
    """A store whose writes take WRITE_DELAY, like a Redis round trip under load."""

    durable = True

    def __init__(self) -> None:
        super().__init__("0")
        self.writes_in_flight = 0
        self.max_in_flight = 0

    async def put_binding(self, *args: object, **kwargs: object) -> None:
        self.writes_in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.writes_in_flight)
        await asyncio.sleep(WRITE_DELAY)
        self.writes_in_flight -= 1
        await super().put_binding(*args, **kwargs)  # type: ignore[arg-type]


def add(aor: str, host: str, expires: int = 60) -> tuple[str, bytes]:
    return encode_add(location_pb2.AddRouteRequest(aor=aor, route=location_pb2.Route(host=host, expires=expires)))


def find(aor: str) -> tuple[str, bytes]:
    return encode_find(location_pb2.FindRoutesRequest(aor=aor))


def hosts(result: tuple[str, bytes]) -> list[str]:
    return [r.host for r in location_pb2.FindRoutesResponse.FromString(decode_result(result)).routes]


async def test_durable_store_writes_of_different_aors_overlap() -> None:
    store = SlowDurableStore()
    service = LocationService(store, sweep_interval=0)
    ops = [add(f"sip:u{i}@x", f"10.0.0.{i}") for i in range(20)]
    started = time.perf_counter()
    results = await apply_ops(service, ops)
    elapsed = time.perf_counter() - started
    assert all(code == "OK" for code, _ in results)
    assert service.binding_count == 20
    assert store.max_in_flight >= 10  # AORs hashing to one lock stripe of the service still wait for each other
    assert elapsed < 20 * WRITE_DELAY / 2, elapsed


async def test_operations_on_one_aor_keep_batch_order() -> None:
    service = LocationService(SlowDurableStore(), sweep_interval=0)
    aor = "sip:1001@x"
    ops = [
        find(aor),
        add(aor, "10.0.0.1"),
        find("SIP:1001@X"),  # the same AOR spelled differently is still ordered after the add
        add(aor, "10.0.0.2"),
        add("sip:other@x", "10.0.0.9"),
        encode_remove(location_pb2.RemoveRoutesRequest(aor=aor)),
        find(aor),
        add("tel:+1555", "10.0.0.3"),
    ]
    results = await apply_ops(service, ops)
    assert hosts(results[0]) == []
    assert hosts(results[2]) == ["10.0.0.1"]
    assert [code for code, _ in results[3:6]] == ["OK", "OK", "OK"]
    assert hosts(results[6]) == []
    assert results[7][0] == "INVALID_ARGUMENT"
    assert await service.find_routes("sip:other@x")


async def test_memory_store_runs_the_batch_in_order() -> None:
    service = LocationService(MemoryStore(), sweep_interval=0)
    results = await apply_ops(service, [add("sip:a@x", "10.0.0.1"), find("sip:a@x"), find("sip:b@x")])
    assert hosts(results[1]) == ["10.0.0.1"] and hosts(results[2]) == []
