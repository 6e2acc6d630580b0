"""A histogram with fixed buckets for the hot path: ``observe`` is a bisect and two additions, no lock and no
prometheus_client child lookup; a collector turns it into a ``HistogramMetricFamily`` when the registry is read."""

from __future__ import annotations

from bisect import bisect_left

__all__ = ["LATENCY_BUCKETS", "LatencyHistogram"]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LatencyHistogram:
    """A histogram with fixed buckets: ``observe`` is a bisect and two additions."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value

    def cumulative(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(float(bound)), float(total)))
        return out
