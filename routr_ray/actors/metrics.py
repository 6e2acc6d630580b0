"""The Ray half of the metrics bridge: replay a prometheus_client registry into ``ray.util.metrics``.

Runs inside the actor that owns the registry (EdgePort, Location shard, processor and dispatcher replicas): every
``interval`` seconds it reads the registry (:func:`routr_ray.observability.metrics_bridge.read_registry`) and sets
Ray ``Gauge`` objects (created on first sight, with the registry's label names as ``tag_keys`` plus the
``default_tags``, e.g. ``{"edgeport": ref}``) to the exact current values. Ray exports them on its metrics export
port with the prefix ``ray_``: ``routr_sip_messages_total`` is scraped as ``ray_routr_sip_messages_total``
(style.md §6.9: Ray's own pipeline instead of one HTTP port per actor).

A counter ``x`` is mirrored as the gauge ``x_total`` holding its cumulative value, as a histogram ``h`` is mirrored
as the gauges ``h_bucket{le}``, ``h_sum`` and ``h_count``: a counter still at 0 (an error that never happened) is
exported too, where a Ray ``Counter`` cannot record 0 and would leave the series missing; ``rate()`` and
``increase()`` work unchanged (PromQL applies its reset rule to any series).

Cost: one registry read per interval (a few hundred series: well under a millisecond) plus ~2-3 µs per changed
counter and per gauge; nothing on the SIP path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any

from routr_ray.observability.metrics_bridge import Collectable, PointKind, read_registry
from routr_ray.observability.ratelimit import RateLimitedLog

__all__ = ["DEFAULT_INTERVAL", "RayMetricsBridge", "observe_process", "ray_metric_factory"]

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 5.0


MetricFactory = Callable[[PointKind, str, str, tuple[str, ...]], Any]


def ray_metric_factory(kind: PointKind, name: str, description: str, tag_keys: tuple[str, ...]) -> Any:
    """A ``ray.util.metrics`` Counter or Gauge (imported here: only actors/ import Ray)."""
    from ray.util.metrics import Counter, Gauge

    if kind is PointKind.COUNTER:
        return Counter(name, description=description, tag_keys=tag_keys)
    return Gauge(name, description=description, tag_keys=tag_keys)


class RayMetricsBridge:
    """Mirror ``registry`` into Ray metrics: :meth:`start` on the actor's loop, :meth:`stop` before exit."""

    def __init__(
        self,
        registry: Collectable,
        *,
        interval: float = DEFAULT_INTERVAL,
        default_tags: Mapping[str, str] | None = None,
        factory: MetricFactory = ray_metric_factory,
    ) -> None:
        self.registry = registry
        self.interval = interval
        self.default_tags = dict(default_tags or {})
        self._factory = factory
        self._metrics: dict[str, tuple[Any, tuple[str, ...]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._errors = RateLimitedLog(log, interval=60.0)
        self.flushes = 0

    def flush(self) -> int:
        """Read the registry once and set every series; returns how many were set."""
        records = 0
        for point in read_registry(self.registry):
            if math.isnan(point.value):
                continue
            name = point.name + "_total" if point.kind is PointKind.COUNTER else point.name
            metric = self._metric_for(PointKind.GAUGE, name, point.description, point.label_names)
            if metric is None:
                continue
            tags = {**self.default_tags, **point.tags}
            try:
                metric.set(point.value, tags=tags)
            except (TypeError, ValueError) as exc:
                self._errors.warning(point.name, "metric %s not mirrored: %s", point.name, exc)
                continue
            records += 1
        self.flushes += 1
        return records

    def _metric_for(self, kind: PointKind, name: str, description: str, label_names: tuple[str, ...]) -> Any:
        known = self._metrics.get(name)
        tag_keys = tuple(dict.fromkeys((*self.default_tags, *label_names)))
        if known is None:
            metric = self._factory(kind, name, description, tag_keys)
            self._metrics[name] = (metric, tag_keys)
            return metric
        metric, keys = known
        if set(keys) != set(tag_keys):
            self._errors.warning(name, "metric %s changed its labels %s -> %s; not mirrored", name, keys, tag_keys)
            return None
        return metric

    def start(self) -> None:
        """Start the periodic flush on the running loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ray-metrics-bridge")

    async def stop(self) -> None:
        """Stop the loop and flush a last time (what happened since the last flush is not lost)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._safe_flush()

    async def _run(self) -> None:
        while True:
            self._safe_flush()
            await asyncio.sleep(self.interval)

    def _safe_flush(self) -> None:
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001 - metrics never take the actor down
            self._errors.error("flush", "metrics bridge flush failed: %s", exc, exc_info=exc)


_process_bridge: RayMetricsBridge | None = None


def observe_process(component: str, instance: str = "") -> RayMetricsBridge:
    """What every actor and replica does as it starts (issue 21), once per process: tracing on when the
    environment says so (:func:`routr_ray.observability.tracing.setup`), and this process's own metrics
    (:func:`~routr_ray.observability.process_metrics.process_registry`: resources, link calls) mirrored into Ray with
    the tags ``component`` and ``instance``. Call it on the actor's event loop."""
    global _process_bridge
    from routr_ray.observability import tracing
    from routr_ray.observability.process_metrics import process_registry

    tracing.setup(component)
    if _process_bridge is None:
        _process_bridge = RayMetricsBridge(process_registry(), default_tags={"component": component,
                                                                            "instance": instance})
        _process_bridge.start()
    return _process_bridge
