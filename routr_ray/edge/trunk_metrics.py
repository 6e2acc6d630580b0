"""The trunks' registration state on the EdgePort's ``/metrics`` (and, through its bridge, Ray's metrics).

The registrar actor (``actors/trunk_registrar.py``) sends every change of a trunk's registration to the EdgePort
that sends its REGISTERs; these gauges hold the latest (docs/trunks.md "Metrics"). The ``trunk`` label is a
Trunk ref from the config: a small, closed set.

| metric | meaning |
|---|---|
| ``routr_trunk_registration_state{trunk}`` | 1 while the provider holds our binding, 0 otherwise |
| ``routr_trunk_registration_expires_seconds{trunk}`` | seconds until the binding lapses (0 when not registered) |
| ``routr_trunk_registration_failures{trunk}`` | failed rounds in a row (0 after a success) |
| ``routr_edge_servers_held_down`` | servers held down after a failed branch (``hold_down.py``) |
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

__all__ = ["TrunkMetrics"]


class TrunkMetrics:
    def __init__(self, registry: CollectorRegistry, held_down: Callable[[], int] | None = None) -> None:
        self.state = Gauge("routr_trunk_registration_state", "1 while the trunk is registered with its provider",
                           ["trunk"], registry=registry)
        self.expires = Gauge("routr_trunk_registration_expires_seconds",
                             "Seconds until the trunk's registration lapses (0 when not registered)", ["trunk"],
                             registry=registry)
        self.failures = Gauge("routr_trunk_registration_failures",
                              "Failed registration rounds in a row", ["trunk"], registry=registry)
        if held_down is not None:
            Gauge("routr_edge_servers_held_down", "Servers held down after a failed branch",
                  registry=registry).set_function(held_down)
        self._trunks: set[str] = set()

    def update(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """``rows``: every registration (``trunk``, ``state``, ``expires_at``: epoch seconds or None,
        ``failures``); trunks absent from them lose their series."""
        seen = set()
        for row in rows:
            trunk = str(row["trunk"])
            seen.add(trunk)
            self.state.labels(trunk).set(1 if row["state"] == "registered" else 0)
            expires_at = float(row.get("expires_at") or 0.0)
            self.expires.labels(trunk).set_function(lambda at=expires_at: max(0.0, at - time.time()))
            self.failures.labels(trunk).set(float(row.get("failures") or 0))
        for gone in self._trunks - seen:
            for gauge in (self.state, self.expires, self.failures):
                gauge.remove(gone)
        self._trunks = seen
