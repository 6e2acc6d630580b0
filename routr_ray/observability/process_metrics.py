"""The metrics every routr-ray process has, whatever its job (issue 21): its resources and its link clients.

:func:`process_registry` is one registry per process with

* ``routr_process_*`` (prometheus_client's process collector): ``resident_memory_bytes``, ``cpu_seconds_total``,
  ``open_fds``, ``max_fds``, ``start_time_seconds``, ``virtual_memory_bytes``: what the RSS/CPU/file alerts of
  ``dashboards/alerts.yml`` watch;
* ``routr_link_calls_total{service, path}``, ``routr_link_in_flight{service}`` and ``routr_link_servers{service}``
  (``routr_ray/link/stats.py``).

Each actor mirrors it into Ray's metrics with the tags ``component`` and ``instance`` (the same two keys in every
process: ``routr_ray/actors/metrics.py`` :func:`~routr_ray.actors.metrics.start_process_bridge`).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from routr_ray.link.stats import LINK_STATS, LinkStats

__all__ = ["LinkCollector", "process_registry"]

_registry: CollectorRegistry | None = None


class LinkCollector(Collector):
    def __init__(self, stats: LinkStats = LINK_STATS) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        calls = CounterMetricFamily("routr_link_calls", "Batch calls to another routr-ray process, by service and "
                                    "path (link: the internal data plane; ray: the Ray-call fallback)",
                                    labels=["service", "path"])
        for labels, value in list(self.stats.calls.items()):
            calls.add_metric(labels, value)
        yield calls
        in_flight = GaugeMetricFamily("routr_link_in_flight", "Link calls waiting for their answer, by service",
                                      labels=["service"])
        for service, value in list(self.stats.in_flight.items()):
            in_flight.add_metric([service], value)
        yield in_flight
        servers = GaugeMetricFamily("routr_link_servers", "Link servers of each service this process knows (a "
                                    "processor deployment's: its replicas)", labels=["service"])
        for service, value in list(self.stats.servers.items()):
            servers.add_metric([service], value)
        yield servers


def process_registry() -> CollectorRegistry:
    """This process's registry (made on first use)."""
    global _registry
    if _registry is None:
        registry = CollectorRegistry()
        ProcessCollector(namespace="routr", registry=registry)
        registry.register(LinkCollector())
        _registry = registry
    return _registry
