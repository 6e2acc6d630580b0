"""Prometheus metrics of one Location shard (DESIGN §8, issue 5 follow-up).

Labels come from closed sets only, never AORs or Call-IDs: ``shard`` (the shard index), ``operation``
(``add``/``find``/``remove``/``other``) and ``result`` (``OK`` or a :class:`LocationErrorCode` name). Each shard has
its own registry; the shard actor exposes it as text until the metrics go through Ray's pipeline.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from routr_ray.location.errors import LocationErrorCode

OPERATIONS = ("add", "find", "remove")
RESULTS = ("OK", *(code.name for code in LocationErrorCode))
# Memory operations take microseconds, Redis writes about 0.1-1 ms, a dead Redis up to the 2 s cap.
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class LocationMetrics:
    def __init__(self, shard: str | int, registry: CollectorRegistry | None = None) -> None:
        self.shard = str(shard)
        self.registry = registry if registry is not None else CollectorRegistry()
        self.bindings = Gauge(
            "routr_location_bindings", "Bindings held by the location shard (expired ones until the sweep)",
            ["shard"], registry=self.registry,
        )
        self.aors = Gauge(
            "routr_location_aors", "Addresses of record with at least one binding in the shard",
            ["shard"], registry=self.registry,
        )
        self.operations = Counter(
            "routr_location_operations", "Location operations applied by the shard, by result",
            ["shard", "operation", "result"], registry=self.registry,
        )
        self.latency = Histogram(
            "routr_location_operation_seconds", "Time the shard spent on one operation (store writes included)",
            ["shard", "operation"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "routr_location_batch_size", "Operations carried by one call to the shard",
            ["shard"], buckets=BATCH_BUCKETS, registry=self.registry,
        )
        # children resolved once: a labels() lookup per operation would cost more than a memory find
        self._counts = {(op, result): self.operations.labels(self.shard, op, result)
                        for op in (*OPERATIONS, "other") for result in RESULTS}
        self._latency = {op: self.latency.labels(self.shard, op) for op in (*OPERATIONS, "other")}
        self._batch = self.batch_size.labels(self.shard)

    def watch(self, bindings: object, aors: object) -> None:
        """Read the gauges from callables (e.g. ``lambda: service.binding_count``) at scrape time."""
        self.bindings.labels(self.shard).set_function(bindings)  # type: ignore[arg-type]
        self.aors.labels(self.shard).set_function(aors)  # type: ignore[arg-type]

    def observe(self, operation: str, result: str, seconds: float) -> None:
        op = operation if operation in OPERATIONS else "other"
        counter = self._counts.get((op, result)) or self._counts[(op, LocationErrorCode.INVALID_ARGUMENT.name)]
        counter.inc()
        self._latency[op].observe(seconds)

    def observe_batch(self, size: int) -> None:
        self._batch.observe(size)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
