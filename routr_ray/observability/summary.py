"""What ``routr-ray status`` reads from the metrics (issue 21): registered users, calls in progress, trunks.

:func:`summarize` takes the Prometheus text of every node's Ray metrics export port (``ray_routr_*`` series, see
docs/observability.md) and adds them up; ``routr_ray/actors/status.py`` fetches the texts. Pure: no Ray, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["MetricsSummary", "summarize"]

PREFIX = "ray_"
AORS = PREFIX + "routr_location_aors"
BINDINGS = PREFIX + "routr_location_bindings"
CALLS = PREFIX + "routr_calls_active"
TRUNK_STATE = PREFIX + "routr_trunk_registration_state"  # 1 registered, 0 not (outbound registration)


@dataclass(frozen=True)
class MetricsSummary:
    nodes_read: int = 0
    registered_aors: int | None = None  # None: no Location shard reported
    bindings: int | None = None
    calls_in_progress: int | None = None  # None: no EdgePort reported
    trunks: dict[str, bool] = field(default_factory=dict)  # trunk ref -> registered
    errors: tuple[str, ...] = ()


def summarize(texts: Iterable[str], errors: Iterable[str] = ()) -> MetricsSummary:
    """Sum the series of ``texts`` (one per node); ``errors``: the nodes that could not be read."""
    totals: dict[str, float] = {}
    trunks: dict[str, float] = {}
    nodes = 0
    for text in texts:
        nodes += 1
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in (AORS, BINDINGS, CALLS):
                    totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
                elif sample.name == TRUNK_STATE and "trunk" in sample.labels:
                    ref = sample.labels["trunk"]
                    trunks[ref] = max(trunks.get(ref, 0.0), sample.value)

    def total(name: str) -> int | None:
        return int(totals[name]) if name in totals else None

    return MetricsSummary(nodes, total(AORS), total(BINDINGS), total(CALLS),
                          {ref: value >= 1 for ref, value in sorted(trunks.items())}, tuple(errors))
