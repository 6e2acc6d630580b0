"""The trunks' registration state on the EdgePort's ``/metrics`` (and, through its bridge, Ray's metrics).

The registrar actor (``actors/trunk_registrar.py``) sends every change of a trunk's registration to the EdgePort
that sends its REGISTERs; these gauges hold the latest (docs/trunks.md "Metrics"). The ``trunk`` label is a
Trunk ref from the config: a small, closed set.

| metric | meaning |
|---|---|
| ``routr_trunk_registration_state{trunk}`` | 1 while the provider holds our binding, 0 otherwise |
| ``routr_trunk_registration_expires_seconds{trunk}`` | seconds until the binding lapses (0 when not registered) |
| ``routr_trunk_registration_failures{trunk}`` | failed rounds in a row (0 after a success) |
| ``routr_edge_servers_held_down`` | servers this EdgePort skips first: held down after a failed branch (here or on \
another EdgePort) or down by keepalive (``hold_down.py``) |
| ``routr_trunk_target_up{trunk,target}`` | 1 while the trunk URI answers its OPTIONS keepalive, 0 while it is down |
| ``routr_peer_keepalive_targets{peer,state}`` | the Peer's pinged bindings that are ``up`` / ``down`` |

The keepalive's labels: ``target`` is ``<transport>:<host>:<port>`` of a trunk URI as configured (a closed set, like
the refs); a Peer's bindings come and go, so they are counted per Peer, never named.
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
        self.target_up = Gauge("routr_trunk_target_up",
                               "1 while the trunk URI answers its OPTIONS keepalive, 0 while it is down",
                               ["trunk", "target"], registry=registry)
        self.peer_targets = Gauge("routr_peer_keepalive_targets", "The Peer's pinged bindings, by keepalive state",
                                  ["peer", "state"], registry=registry)
        self._targets: set[tuple[str, str]] = set()
        self._peers: set[str] = set()

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

    def update_keepalive(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """``rows``: every keepalive target (``kind``: trunk or peer, ``ref``, ``target``, ``state``: up or down);
        targets and peers absent from them lose their series."""
        targets: set[tuple[str, str]] = set()
        peers: dict[str, dict[str, int]] = {}
        for row in rows:
            ref, up = str(row["ref"]), row["state"] == "up"
            if row["kind"] == "trunk":
                key = (ref, str(row["target"]))
                targets.add(key)
                self.target_up.labels(*key).set(1 if up else 0)
            else:
                counts = peers.setdefault(ref, {"up": 0, "down": 0})
                counts["up" if up else "down"] += 1
        for ref, counts in peers.items():
            for state, count in counts.items():
                self.peer_targets.labels(ref, state).set(count)
        for gone in self._targets - targets:
            self.target_up.remove(*gone)
        for gone_peer in self._peers - set(peers):
            for state in ("up", "down"):
                self.peer_targets.remove(gone_peer, state)
        self._targets, self._peers = targets, set(peers)
