"""The metrics bridge: a prometheus_client registry read as points, mirrored into Ray as gauges of exact values."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from routr_ray.actors.metrics import RayMetricsBridge
from routr_ray.edge.metrics import EdgeMetrics
from routr_ray.observability.metrics_bridge import Point, PointKind, read_registry


def by_name(points: list[Point]) -> dict[tuple[str, tuple[tuple[str, str], ...]], Point]:
    return {(p.name, p.labels): p for p in points}


def test_edge_metrics_read_as_counter_and_gauge_points() -> None:
    metrics = EdgeMetrics()
    metrics.message("OPTIONS", "in", "udp", None)
    metrics.message("OPTIONS", "in", "udp", None)
    metrics.message("OPTIONS", "out", "udp", 200)
    metrics.reject("malformed")
    metrics.track_transactions(lambda: 3, lambda: 1)
    metrics.track_connections(lambda: 7)
    metrics.dispatcher_latency.observe(0.003)

    points = by_name(read_registry(metrics.registry))
    request_in = points[("routr_sip_messages", (("method", "OPTIONS"), ("direction", "in"), ("transport", "udp"),
                                                ("status_class", "request")))]
    assert request_in.kind is PointKind.COUNTER and request_in.value == 2
    assert points[("routr_sip_rejected_messages", (("reason", "malformed"),))].value == 1
    assert points[("routr_edge_active_transactions", (("side", "server"),))].value == 3
    assert points[("routr_edge_active_transactions", (("side", "server"),))].kind is PointKind.GAUGE
    assert points[("routr_edge_active_connections", ())].value == 7
    # the histogram comes as exact cumulative bucket/sum/count gauges
    assert points[("routr_edge_dispatcher_latency_seconds_bucket", (("le", "0.0025"),))].value == 0
    assert points[("routr_edge_dispatcher_latency_seconds_bucket", (("le", "0.005"),))].value == 1
    assert points[("routr_edge_dispatcher_latency_seconds_bucket", (("le", "+Inf"),))].value == 1
    assert points[("routr_edge_dispatcher_latency_seconds_count", ())].value == 1
    assert abs(points[("routr_edge_dispatcher_latency_seconds_sum", ())].value - 0.003) < 1e-9
    assert not any(name.endswith("_created") for name, _ in points)


class Recorder:
    def __init__(self, kind: PointKind, name: str, tag_keys: tuple[str, ...]) -> None:
        self.kind, self.name, self.tag_keys = kind, name, tag_keys
        self.calls: list[tuple[str, float, dict[str, str]]] = []

    def inc(self, value: float, tags: dict[str, str]) -> None:
        assert set(tags) == set(self.tag_keys)
        self.calls.append(("inc", value, tags))

    def set(self, value: float, tags: dict[str, str]) -> None:
        assert set(tags) == set(self.tag_keys)
        self.calls.append(("set", value, tags))


def test_ray_bridge_sets_exact_values_with_default_tags() -> None:
    made: dict[str, Recorder] = {}

    def factory(kind: PointKind, name: str, description: str, tag_keys: tuple[str, ...]) -> Any:
        made[name] = Recorder(kind, name, tag_keys)
        return made[name]

    registry = CollectorRegistry()
    counter = Counter("routr_x", "x", ["method"], registry=registry)
    latency = Histogram("routr_lat_seconds", "l", buckets=(0.1, 1.0), registry=registry)
    bridge = RayMetricsBridge(registry, default_tags={"edgeport": "ep1"}, factory=factory)
    counter.labels("INVITE").inc(3)
    latency.observe(0.5)
    bridge.flush()
    counter.labels("INVITE").inc()
    bridge.flush()

    # a counter is a gauge named <name>_total holding the exact cumulative value
    assert made["routr_x_total"].kind is PointKind.GAUGE
    assert made["routr_x_total"].tag_keys == ("edgeport", "method")
    assert made["routr_x_total"].calls == [("set", 3.0, {"edgeport": "ep1", "method": "INVITE"}),
                                           ("set", 4.0, {"edgeport": "ep1", "method": "INVITE"})]
    buckets = made["routr_lat_seconds_bucket"]
    assert buckets.kind is PointKind.GAUGE and buckets.tag_keys == ("edgeport", "le")
    assert ("set", 1.0, {"edgeport": "ep1", "le": "1.0"}) in buckets.calls
    assert ("set", 0.0, {"edgeport": "ep1", "le": "0.1"}) in buckets.calls
    assert made["routr_lat_seconds_count"].calls[-1] == ("set", 1.0, {"edgeport": "ep1"})


def test_ray_bridge_survives_a_metric_that_rejects_a_value() -> None:
    class Broken(Recorder):
        def set(self, value: float, tags: dict[str, str]) -> None:
            raise ValueError("nope")

    registry = CollectorRegistry()
    Counter("routr_y", "y", registry=registry).inc()
    bridge = RayMetricsBridge(registry, factory=lambda k, n, d, t: Broken(k, n, t))
    assert bridge.flush() == 0
    assert bridge.flushes == 1


async def test_ray_bridge_task_flushes_periodically_and_on_stop() -> None:
    import asyncio

    made: dict[str, Recorder] = {}

    def factory(kind: PointKind, name: str, description: str, tag_keys: tuple[str, ...]) -> Any:
        return made.setdefault(name, Recorder(kind, name, tag_keys))

    registry = CollectorRegistry()
    counter = Counter("routr_z", "z", registry=registry)
    bridge = RayMetricsBridge(registry, interval=0.01, factory=factory)
    bridge.start()
    counter.inc(2)
    for _ in range(100):
        await asyncio.sleep(0.01)
        if made.get("routr_z_total") and made["routr_z_total"].calls:
            break
    counter.inc(5)
    await bridge.stop()
    assert made["routr_z_total"].calls[-1][1] == 7.0  # the last flush (at stop) has everything


def test_a_counter_still_at_zero_is_exported() -> None:
    """Ray's Counter cannot record 0; the gauge mirror can: an error counter that never moved has a series."""
    made: dict[str, Recorder] = {}
    registry = CollectorRegistry()
    Counter("routr_errors", "e", ["kind"], registry=registry).labels("timeout")
    RayMetricsBridge(registry, factory=lambda k, n, d, t: made.setdefault(n, Recorder(k, n, t))).flush()
    assert made["routr_errors_total"].calls == [("set", 0.0, {"kind": "timeout"})]
