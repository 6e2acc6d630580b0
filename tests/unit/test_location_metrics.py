"""Location shard metrics: bindings gauge per shard, operation counters by result, latency and batch size."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from routr_ray.location import LocationService
from routr_ray.location.metrics import LocationMetrics
from routr_ray.location.ops import apply_ops, encode_add, encode_find
from routr_ray.proto.gen import location_pb2


def samples(metrics: LocationMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def add(aor: str, host: str) -> tuple[str, bytes]:
    return encode_add(location_pb2.AddRouteRequest(aor=aor, route=location_pb2.Route(host=host, expires=60)))


async def test_operations_are_counted_by_result_and_timed() -> None:
    service = LocationService(sweep_interval=0)
    metrics = LocationMetrics(3)
    metrics.watch(lambda: service.binding_count, lambda: service.aor_count)
    ops = [
        add("sip:a@x", "10.0.0.1"),
        add("sip:a@x", "10.0.0.2"),
        add("sip:b@x", "10.0.0.3"),
        add("tel:+1555", "10.0.0.4"),  # INVALID_ARGUMENT
        encode_find(location_pb2.FindRoutesRequest(aor="sip:a@x")),
        ("bogus", b""),
    ]
    results = await apply_ops(service, ops, metrics)
    assert [code for code, _ in results] == ["OK", "OK", "OK", "INVALID_ARGUMENT", "OK", "INVALID_ARGUMENT"]
    got = samples(metrics)
    shard = ("shard", "3")
    assert got[("routr_location_bindings", (shard,))] == 3
    assert got[("routr_location_aors", (shard,))] == 2
    ok_adds = ("routr_location_operations_total", (("operation", "add"), ("result", "OK"), shard))
    bad_adds = ("routr_location_operations_total", (("operation", "add"), ("result", "INVALID_ARGUMENT"), shard))
    assert got[ok_adds] == 3 and got[bad_adds] == 1
    assert got[("routr_location_operations_total", (("operation", "other"), ("result", "INVALID_ARGUMENT"), shard))] == 1
    assert got[("routr_location_operation_seconds_count", (("operation", "add"), shard))] == 4
    assert got[("routr_location_operation_seconds_count", (("operation", "find"), shard))] == 1
    assert got[("routr_location_batch_size_count", (shard,))] == 1
    assert got[("routr_location_batch_size_sum", (shard,))] == 6


async def test_bindings_gauge_follows_the_service() -> None:
    service = LocationService(sweep_interval=0)
    metrics = LocationMetrics("0")
    metrics.watch(lambda: service.binding_count, lambda: service.aor_count)
    await apply_ops(service, [add("sip:a@x", "10.0.0.1")], metrics)
    assert samples(metrics)[("routr_location_bindings", (("shard", "0"),))] == 1
    await service.remove_routes("sip:a@x")
    assert samples(metrics)[("routr_location_bindings", (("shard", "0"),))] == 0


async def test_without_metrics_apply_ops_is_unchanged() -> None:
    service = LocationService(sweep_interval=0)
    assert await apply_ops(service, [add("sip:a@x", "10.0.0.1")]) == [("OK", b"")]
