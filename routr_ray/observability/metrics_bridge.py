"""The pure half of the metrics bridge: read a prometheus_client registry as points.

The EdgePort keeps its own prometheus_client registry (``routr_ray.edge.metrics``) and serves it on ``/metrics``.
To show the same series beside Ray's own (Ray dashboard, Prometheus scraping Ray's metrics export port), the
actor side (``routr_ray.actors.metrics``) reads the registry every few seconds and replays it into
``ray.util.metrics``. This module does the part that needs no Ray:

* :func:`read_registry` flattens a registry into :class:`Point` s. A counter family ``x`` (samples ``x_total``)
  becomes a COUNTER point named ``x`` (mirrored as ``x_total``, see below). Everything
  else becomes GAUGE points named after the sample: a histogram ``h`` gives ``h_bucket{le=...}``, ``h_sum`` and
  ``h_count``, so ``histogram_quantile`` works on the mirrored series exactly as on the original (exact
  cumulative counts: no re-observation of bucket midpoints). ``*_created`` samples are skipped.

The actor side sets a Ray gauge to every point's value at each read (``<name>_total`` for a counter: its exact
cumulative value), every read: Ray forgets gauges not refreshed for two export intervals.

Labels are passed through unchanged: they come from the small closed sets of ``EdgeMetrics`` (DESIGN §8).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

__all__ = ["Collectable", "Point", "PointKind", "read_registry"]


class Collectable(Protocol):
    """What :func:`read_registry` needs of a registry (``prometheus_client.CollectorRegistry`` has it)."""

    def collect(self) -> Iterable[object]: ...


class PointKind(Enum):
    COUNTER = "counter"
    GAUGE = "gauge"


@dataclass(frozen=True, slots=True)
class Point:
    """One series at one read: ``labels`` are (name, value) pairs in the registry's order."""

    name: str
    kind: PointKind
    labels: tuple[tuple[str, str], ...]
    value: float
    description: str = ""

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.labels)

    @property
    def tags(self) -> dict[str, str]:
        return dict(self.labels)


def read_registry(registry: Collectable) -> list[Point]:
    """Every series of ``registry`` as a :class:`Point` (see the module docstring for the mapping)."""
    points: list[Point] = []
    for family in registry.collect():
        ftype = getattr(family, "type", "unknown")
        fname: str = getattr(family, "name", "")
        doc: str = getattr(family, "documentation", "")
        for sample in getattr(family, "samples", ()):
            name: str = sample.name
            if name.endswith("_created"):
                continue
            labels = tuple((str(k), str(v)) for k, v in sample.labels.items())
            if ftype == "counter":
                if name != fname + "_total":
                    continue
                points.append(Point(fname, PointKind.COUNTER, labels, float(sample.value), doc))
            else:
                points.append(Point(name, PointKind.GAUGE, labels, float(sample.value), doc))
    return points
