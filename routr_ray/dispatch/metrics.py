"""Prometheus metrics of the dispatcher (issue 21): messages by processor and outcome.

``routr_dispatcher_messages_total{processor, outcome}``: ``processor`` is the ref of the dispatcher.yaml entry that
matched (``none`` when none did: a closed set, from the config); ``outcome`` one of :data:`OUTCOMES`:

* ``processed``: the processor's result goes on; ``dropped``: the processor chose to send nothing (ACK, responses);
* ``no_match``: no processor matched (405 with Allow); ``unavailable``: unreachable, failing or late (503 with
  Retry-After); ``retried``: a call to a ``serve://`` processor failed and its messages were held and sent again
  (counted per failed call; ``routr_ray/dispatch/core.py``); ``middleware_failed``: a non-optional middleware failed (500); ``middleware_answered``: a
  middleware answered the request itself.

Counts are a plain dict updated on the event loop and turned into a counter family only when the registry is
collected, as the EdgePort's (``routr_ray/edge/metrics.py``). The same counts whether the routing runs in the
dispatcher deployment or embedded in an EdgePort (``routr_ray/actors/edgeport.py``).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["NO_PROCESSOR", "OUTCOMES", "DispatchMetrics"]

OUTCOMES = frozenset({"processed", "dropped", "no_match", "unavailable", "retried", "middleware_failed",
                      "middleware_answered"})
NO_PROCESSOR = "none"


class _Family(Collector):
    def __init__(self, metrics: DispatchMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("routr_dispatcher_messages", "Messages the dispatcher routed, by processor "
                                     "and outcome", labels=["processor", "outcome"])
        for labels, value in list(self.metrics.counts.items()):
            family.add_metric(labels, value)
        yield family


class DispatchMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.counts: dict[tuple[str, str], int] = {}
        self.registry.register(_Family(self))

    def count(self, processor: str, outcome: str, amount: int = 1) -> None:
        key = (processor, outcome)
        self.counts[key] = self.counts.get(key, 0) + amount
