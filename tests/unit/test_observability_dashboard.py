"""The Grafana dashboard queries series that exist, with labels they have (dashboards/grafana-sip.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from routr_ray.edge.metrics import EdgeMetrics
from routr_ray.observability.publisher import EventPublisher

DASHBOARD = Path(__file__).resolve().parents[2] / "dashboards" / "grafana-sip.json"
# owned by the Location component (not registered yet in this tree): name from style.md §6.9
EXPECTED_ELSEWHERE = {"routr_location_bindings": set()}
SERIES = re.compile(r"\$\{prefix\}([a-z_]+)(?:\{([^}]*)\})?")
LABEL = re.compile(r"([a-z_]+)\s*(?:=~|!=|=)")
BY = re.compile(r"by \(([^)]*)\)")


def known_series() -> dict[str, set[str]]:
    registry = CollectorRegistry()
    metrics = EdgeMetrics(registry)
    metrics.message("INVITE", "in", "udp", None)
    metrics.reject("malformed")
    metrics.dispatcher_latency.observe(0.01)
    metrics.track_transactions(lambda: 0, lambda: 0)
    EventPublisher([], registry=registry)._counters.dropped("log")  # type: ignore[union-attr]
    found: dict[str, set[str]] = dict(EXPECTED_ELSEWHERE)
    for family in registry.collect():
        for sample in family.samples:
            found.setdefault(sample.name, set()).update(sample.labels)
    # families with no sample yet still have their label names
    found.setdefault("routr_events_published_total", {"sink", "event"})
    found.setdefault("routr_events_failed_total", {"sink"})
    return found


def test_every_query_uses_existing_series_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    series = known_series()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = set()
    for expr in exprs:
        for name, selector in SERIES.findall(expr):
            assert name in series, f"{name} is not exported: {expr}"
            used.add(name)
            labels = set(LABEL.findall(selector or "")) - {"edgeport"}  # edgeport: the bridge's default tag
            assert labels <= series[name], f"{name} has no {labels - series[name]}: {expr}"
            for group in BY.findall(expr):
                grouped = {g.strip() for g in group.split(",")} - {"le"}
                assert grouped <= series[name] | {"le"}, f"{name} cannot be grouped by {grouped}: {expr}"
    assert {"routr_sip_messages_total", "routr_sip_rejected_messages_total",
            "routr_edge_dispatcher_latency_seconds_bucket", "routr_edge_active_transactions",
            "routr_edge_active_connections", "routr_location_bindings"} <= used


def test_dashboard_variables_and_layout() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["prefix"]["query"] == "ray_"
    assert variables["edgeport"]["allValue"] == ".*"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])
