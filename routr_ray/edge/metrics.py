"""Prometheus metrics of one EdgePort (DESIGN §8, issue 3 item 7).

Labels come from small closed sets only (never AORs, Call-IDs or addresses): ``method`` is one of the known
SIP methods or ``OTHER``, ``direction`` is ``in``/``out``, ``transport`` a listener name, ``status_class``
``1xx``..``6xx`` for responses and ``request`` for requests; ``reason`` of rejections is a fixed vocabulary
(see :data:`REJECT_REASONS`).

The per-message series (``routr_sip_messages``, ``routr_sip_rejected_messages``, the dispatcher latency
histogram) are plain dicts and lists updated on the EdgePort's event loop and turned into metric families only
when the registry is collected (/metrics, the Ray bridge): an increment is one dict update, with no lock and no
prometheus_client child lookup on the hot path. The registry sees ordinary counter and histogram families.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from routr_ray.edge.calls import CALL_DURATION_BUCKETS, CallTracker
from routr_ray.observability.histogram import LATENCY_BUCKETS, LatencyHistogram
from routr_ray.observability.labels import KNOWN_METHODS, method_label, status_class
from routr_ray.sip import Request

__all__ = ["KNOWN_METHODS", "LATENCY_BUCKETS", "REJECT_REASONS", "EdgeMetrics", "LatencyHistogram", "method_label",
           "status_class"]

REJECT_REASONS = frozenset({
    "banned_source", "rate_limited", "malformed", "method_not_allowed", "too_many_hops", "loop_detected",
    "no_transaction", "dispatcher_failure", "table_full", "unroutable", "send_failed", "draining", "no_via",
    "bad_extension", "overloaded", "invalid_host_taken", "unreachable", "not_ready", "malformed_ack", "malformed_response",
})  # fmt: skip

MESSAGE_LABELS = ("method", "direction", "transport", "status_class")
_MAX_RAW_KEYS = 4096  # raw (method, direction, transport, status) tuples remembered; past it, no memo


class _Families(Collector):
    def __init__(self, metrics: EdgeMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        messages = CounterMetricFamily(
            "routr_sip_messages", "SIP messages received (in) and sent (out) by the EdgePort", labels=MESSAGE_LABELS
        )
        for labels, value in list(m.message_counts.items()):
            messages.add_metric(labels, value)
        yield messages
        rejected = CounterMetricFamily(
            "routr_sip_rejected_messages", "SIP messages the EdgePort rejected or dropped, by reason", labels=["reason"]
        )
        for reason, value in list(m.reject_counts.items()):
            rejected.add_metric([reason], value)
        yield rejected
        hist = m.dispatcher_latency
        latency = HistogramMetricFamily(
            "routr_edge_dispatcher_latency_seconds",
            "Time from handing a message to the dispatcher client to its answer",
        )
        latency.add_metric([], hist.cumulative(), hist.sum)
        yield latency
        calls = CounterMetricFamily("routr_calls", "Final responses to initial INVITEs sent upstream, by result",
                                    labels=["result"])
        for result, value in list(m.calls.results.items()):
            calls.add_metric([result], value)
        yield calls
        duration = HistogramMetricFamily(
            "routr_call_duration_seconds", "Duration of the calls that ended (2xx to the INVITE to the BYE's answer)"
        )
        duration.add_metric([], m.call_duration.cumulative(), m.call_duration.sum)
        yield duration


class EdgeMetrics:
    """One registry per EdgePort (an actor exports it through /metrics)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.message_counts: dict[tuple[str, str, str, str], int] = {}
        # every reason from the start, at 0: a dashboard shows "0 rejected", not "no data"
        self.reject_counts: dict[str, int] = dict.fromkeys(sorted(REJECT_REASONS), 0)
        self.dispatcher_latency = LatencyHistogram()
        # raw arguments of message() -> normalised label tuple (method names from the wire are unbounded:
        # the memo stops growing at _MAX_RAW_KEYS and the slow path still works)
        self._labels: dict[tuple[str | None, str, str, int | None], tuple[str, str, str, str]] = {}
        self.registry.register(_Families(self))
        self.active_transactions = Gauge(
            "routr_edge_active_transactions", "Live SIP transactions", ["side"], registry=self.registry
        )
        self.active_connections = Gauge(
            "routr_edge_active_connections", "Live stream connections (TCP, TLS, WS, WSS)", registry=self.registry
        )
        self.call_duration = LatencyHistogram(CALL_DURATION_BUCKETS)
        self.calls = CallTracker(self.call_duration.observe)
        self.calls_active = Gauge(
            "routr_calls_active", "Calls in progress (answered, no BYE answered yet) through this EdgePort",
            registry=self.registry,
        )
        self.calls_active.set_function(lambda: self.calls.active)
        self.up = Gauge("routr_edge_up", "1 while every listener of the EdgePort listens", registry=self.registry)
        self.failovers = Counter(
            "routr_edge_failovers",
            "Forwarded requests retried on the next failover URI after 503/408/timeout",
            registry=self.registry,
        )

    def message(self, method: str | None, direction: str, transport: str, status: int | None) -> None:
        raw = (method, direction, transport, status)
        labels = self._labels.get(raw)
        if labels is None:
            labels = (method_label(method), direction, str(transport).lower(), status_class(status))
            if len(self._labels) < _MAX_RAW_KEYS:
                self._labels[raw] = labels
        counts = self.message_counts
        counts[labels] = counts.get(labels, 0) + 1

    def reject(self, reason: str) -> None:
        key = reason if reason in REJECT_REASONS else "other"
        self.reject_counts[key] = self.reject_counts.get(key, 0) + 1

    def call_answered(self, request: Request, status: int) -> None:
        """A final response sent upstream for an INVITE or a BYE (calls in progress, call duration)."""
        self.calls.answered(request, status)

    def track_liveness(self, alive: Callable[[], bool]) -> None:
        self.up.set_function(lambda: 1.0 if alive() else 0.0)

    def failover(self) -> None:
        self.failovers.inc()

    def track_transactions(self, server: Callable[[], int], client: Callable[[], int]) -> None:
        self.active_transactions.labels("server").set_function(server)
        self.active_transactions.labels("client").set_function(client)

    def track_connections(self, count: Callable[[], int]) -> None:
        self.active_connections.set_function(count)
