"""The Grafana dashboard queries series that exist, with labels they have (dashboards/grafana-sip.json): every
component's registry is read here; tests/acceptance/observability checks that each one has samples in Ray's
export after a SIPp run."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from routr_ray.dispatch.metrics import DispatchMetrics
from routr_ray.edge.metrics import EdgeMetrics
from routr_ray.edge.trunk_metrics import TrunkMetrics
from routr_ray.location.metrics import LocationMetrics
from routr_ray.observability.process_metrics import process_registry
from routr_ray.observability.publisher import EventPublisher
from routr_ray.processors.connect.metrics import ConnectMetrics

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "dashboards" / "grafana-sip.json"
# Tags the Ray bridges add (routr_ray/actors): not labels of the registries themselves.
BRIDGE_TAGS = {"edgeport", "worker", "component", "instance", "shard"}
SERIES = re.compile(r"\$\{prefix\}([a-z_]+)(?:\{([^}]*)\})?")
LABEL = re.compile(r"([a-z_]+)\s*(?:=~|!=|=)")
BY = re.compile(r"by \(([^)]*)\)")


def defined_in_source(name: str) -> bool:
    """Some module of routr_ray makes a metric ``name`` (prometheus_client's Gauge/Counter/... or a metric
    family), not just reads it."""
    made = re.compile(r"(?:Gauge|Counter|Histogram|MetricFamily)\(\s*[\"']" + re.escape(name) + r"[\"']")
    return any(made.search(path.read_text()) for path in (REPO / "routr_ray").rglob("*.py"))


def known_series() -> dict[str, set[str]]:
    registry = CollectorRegistry()
    metrics = EdgeMetrics(registry)
    metrics.message("INVITE", "in", "udp", None)
    metrics.reject("malformed")
    metrics.dispatcher_latency.observe(0.01)
    metrics.track_transactions(lambda: 0, lambda: 0)
    metrics.calls.results["answered"] = 1
    EventPublisher([], registry=registry)._counters.dropped("log")  # type: ignore[union-attr]
    DispatchMetrics(registry).count("connect", "processed")
    connect = ConnectMetrics(registry)
    connect.decided("INVITE", "agent-to-agent", None, 0.001)
    connect.access("ok")
    location = LocationMetrics(0, registry)
    location.watch(lambda: 1, lambda: 1, ready=lambda: True, by_domain=lambda limit: {"sip.local": 1})
    location.observe("find", "OK", 0.001)
    trunks = TrunkMetrics(registry, lambda: 0)
    trunks.update([{"trunk": "trunk-01", "state": "registered", "expires_at": None, "failures": 0}])
    trunks.update_keepalive([{"kind": "trunk", "ref": "trunk-01", "target": "udp:192.0.2.7:5060", "state": "up"},
                             {"kind": "peer", "ref": "asterisk", "target": "udp:192.0.2.8:5060", "state": "down"}])
    found: dict[str, set[str]] = {}
    for source in (registry, process_registry()):
        for family in source.collect():
            for sample in family.samples:
                found.setdefault(sample.name, set()).update(sample.labels)
    found.setdefault("routr_events_published_total", {"sink", "event"})
    found.setdefault("routr_events_failed_total", {"sink"})
    found.setdefault("routr_link_calls_total", {"service", "path"})
    found.setdefault("routr_link_in_flight", {"service"})
    found.setdefault("routr_link_servers", {"service"})
    return found


def dashboard_series(dashboard: dict) -> set[str]:  # type: ignore[type-arg]
    return {name for p in dashboard["panels"] for t in p["targets"] for name, _ in SERIES.findall(t["expr"])}


def test_every_query_uses_existing_series_and_labels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    series = known_series()
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert len(exprs) >= 25
    for expr in exprs:
        for name, selector in SERIES.findall(expr):
            assert name in series, f"{name} is not exported: {expr}"
            labels = set(LABEL.findall(selector or "")) - BRIDGE_TAGS
            assert labels <= series[name], f"{name} has no {labels - series[name]}: {expr}"
            for group in BY.findall(expr):
                grouped = {g.strip() for g in group.split(",")} - {"le"} - BRIDGE_TAGS
                assert grouped <= series[name] | {"le"}, f"{name} cannot be grouped by {grouped}: {expr}"
    used = dashboard_series(dashboard)
    assert {"routr_sip_messages_total", "routr_location_bindings", "routr_location_domain_bindings",
            "routr_location_operations_total", "routr_connect_requests_total", "routr_connect_auth_total",
            "routr_dispatcher_messages_total", "routr_link_calls_total", "routr_calls_active",
            "routr_call_duration_seconds_bucket", "routr_trunk_registration_state", "routr_trunk_target_up",
            "routr_peer_keepalive_targets", "routr_edge_servers_held_down",
            "routr_process_resident_memory_bytes", "routr_process_cpu_seconds_total"} <= used


def test_pending_series_are_told_apart_from_series_we_only_read() -> None:
    assert defined_in_source("routr_calls_active")
    assert defined_in_source("routr_location_domain_bindings")
    assert not defined_in_source("routr_no_such_series")


def test_dashboard_variables_and_layout() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["prefix"]["query"] == "ray_"
    assert variables["edgeport"]["allValue"] == ".*"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(p["datasource"]["uid"] == "${datasource}" for p in dashboard["panels"])
    places = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in dashboard["panels"]]
    assert len(places) == len(set(places)), "two panels in one place"
