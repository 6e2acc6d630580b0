"""Prometheus metrics of one Location shard (DESIGN §8, issue 5 follow-up, issue 21).

Labels come from closed sets only, never AORs or Call-IDs: ``shard`` (the shard index), ``operation``
(``add``/``find``/``remove``/``other``), ``result`` (``OK`` or a :class:`LocationErrorCode` name: ``UNAVAILABLE``
is a store (Redis) that failed or a shard still loading) and ``domain`` (the domain of the AORs, at most
:data:`MAX_DOMAINS` per shard, the rest ``other``). Each shard has its own registry, mirrored into Ray's metrics by
the shard actor (``routr_ray/actors/location.py``) and readable as text (``metrics_text``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from routr_ray.location.errors import LocationErrorCode

OPERATIONS = ("add", "find", "remove")
RESULTS = ("OK", *(code.name for code in LocationErrorCode))
# Memory operations take microseconds, Redis writes about 0.1-1 ms, a dead Redis up to the 2 s cap.
LATENCY_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MAX_DOMAINS = 64


class _ByDomain(Collector):
    def __init__(self, shard: str, read: Callable[[int], dict[str, int]]) -> None:
        self.shard = shard
        self.read = read

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily("routr_location_domain_bindings", "Bindings held by the shard, by the domain of "
                                   "their AOR", labels=["shard", "domain"])
        for domain, count in sorted(self.read(MAX_DOMAINS).items()):
            family.add_metric([self.shard, domain], count)
        yield family


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
        self.ready = Gauge(
            "routr_location_shard_ready", "1 once the shard has loaded its slice from the store, 0 while it loads",
            ["shard"], registry=self.registry,
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

    def watch(self, bindings: object, aors: object, *, ready: Callable[[], bool] | None = None,
              by_domain: Callable[[int], dict[str, int]] | None = None) -> None:
        """Read the gauges from callables (e.g. ``lambda: service.binding_count``) at scrape time."""
        self.bindings.labels(self.shard).set_function(bindings)  # type: ignore[arg-type]
        self.aors.labels(self.shard).set_function(aors)  # type: ignore[arg-type]
        if ready is not None:
            self.ready.labels(self.shard).set_function(lambda: 1.0 if ready() else 0.0)
        if by_domain is not None:
            self.registry.register(_ByDomain(self.shard, by_domain))

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
