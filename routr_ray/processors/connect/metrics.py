"""Prometheus metrics of the Connect processor (issue 21). Labels from closed sets only (DESIGN §8):

* ``routr_connect_requests_total{method, direction, outcome}``: requests Connect decided on. ``direction`` is
  the routing direction of a forwarded request (``agent-to-agent``, ``from-pstn``, ... ``in-dialog``) or ``none``
  for one answered here; ``outcome`` is ``forwarded`` or the class of the answer (``2xx`` ... ``6xx``).
* ``routr_connect_auth_total{result}``: access decisions: ``ok`` (digest accepted), ``acl`` (admitted by its ACL
  alone), ``challenged`` (no or stale credentials: 401/407), ``failed`` (wrong credentials), ``banned`` (refused:
  the source is banned), ``acl_denied`` (refused by an ACL), ``token`` (an ``X-Connect-Token`` accepted),
  ``token_rejected`` (one refused: 403).
* ``routr_connect_bans_total``: sources banned after repeated failures.
* ``routr_connect_routing_seconds``: time to decide one request (Location calls included).

Counts are plain dicts read when the registry is collected, as the EdgePort's.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from routr_ray.observability.histogram import LatencyHistogram
from routr_ray.observability.labels import bounded, method_label, status_class
from routr_ray.processors.connect.decisions import Direction

__all__ = ["AUTH_RESULTS", "DIRECTIONS", "ConnectMetrics"]

DIRECTIONS = frozenset(value for name, value in vars(Direction).items() if name.isupper())
AUTH_RESULTS = frozenset({"ok", "acl", "challenged", "failed", "banned", "acl_denied", "token", "token_rejected"})
ROUTING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 2.5)


class _Families(Collector):
    def __init__(self, metrics: ConnectMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        requests = CounterMetricFamily("routr_connect_requests", "Requests Connect decided on, by method, routing "
                                       "direction and outcome", labels=["method", "direction", "outcome"])
        for labels, value in list(m.requests.items()):
            requests.add_metric(labels, value)
        yield requests
        auth = CounterMetricFamily("routr_connect_auth", "Connect's access decisions, by result", labels=["result"])
        for result, value in list(m.auth.items()):
            auth.add_metric([result], value)
        yield auth
        bans = CounterMetricFamily("routr_connect_bans", "Sources banned after repeated failed authentications")
        bans.add_metric([], m.bans)
        yield bans
        latency = HistogramMetricFamily("routr_connect_routing_seconds",
                                        "Time Connect took to decide one request (Location calls included)")
        latency.add_metric([], m.routing.cumulative(), m.routing.sum)
        yield latency


class ConnectMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests: dict[tuple[str, str, str], int] = {}
        self.auth: dict[str, int] = {}
        self.bans = 0
        self.routing = LatencyHistogram(ROUTING_BUCKETS)
        self.registry.register(_Families(self))

    def decided(self, method: str, direction: str | None, status: int | None, seconds: float) -> None:
        """One decision: forwarded (``status`` None) in ``direction``, or answered with ``status``."""
        key = (method_label(method), bounded(direction, DIRECTIONS) if direction else "none",
               "forwarded" if status is None else status_class(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        self.routing.observe(seconds)

    def access(self, result: str) -> None:
        key = bounded(result, AUTH_RESULTS)
        self.auth[key] = self.auth.get(key, 0) + 1

    def banned(self) -> None:
        self.bans += 1
