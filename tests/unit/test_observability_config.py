"""``kind: Observability`` (issue 21): the shipped file, its checks, and how the launcher applies it."""

from __future__ import annotations

from pathlib import Path

from routr_ray.actors.launcher import local_ports, tracing_environment
from routr_ray.config import load_config_dir
from routr_ray.config.loader import validate_paths
from routr_ray.config.location import LocationConfig
from routr_ray.config.observability import ObservabilityConfig
from routr_ray.observability.tracing import TracingSettings

REPO = Path(__file__).resolve().parents[2]

DOC = """apiVersion: v2beta1
kind: Observability
ref: obs
spec:
{spec}
"""


def test_the_shipped_file_exports_metrics_on_9464_and_traces_nothing() -> None:
    observability = load_config_dir(REPO / "config").observability
    assert observability is not None
    assert observability.metrics_port == 9464
    assert observability.tracing_configured and not observability.tracing.enabled


def test_bad_values_are_named(tmp_path: Path) -> None:
    (tmp_path / "o.yaml").write_text(DOC.format(spec="  metrics: {port: 70000}\n"
                                                    "  tracing: {enabled: yes, endpoint: 'collector:4317', "
                                                    "sampleRatio: 2}"))
    errors = {(e.pointer, e.reason.split(";")[0][:40]) for e in validate_paths([str(tmp_path)])}
    pointers = {pointer for pointer, _ in errors}
    assert {"/spec/metrics/port", "/spec/tracing/endpoint", "/spec/tracing/sampleRatio"} <= pointers, errors


def test_the_metrics_port_is_checked_before_ray_starts(tmp_path: Path) -> None:
    config = load_config_dir(REPO / "config")
    ports = [(what, port) for what, _, _, port in local_ports(config, config.dispatcher, LocationConfig())]
    assert ("metrics export port", 9464) in ports


def test_the_environment_wins_over_the_file() -> None:
    on = ObservabilityConfig(tracing=TracingSettings(True, "http://collector:4317", 0.5), tracing_configured=True)
    assert tracing_environment(on, {}) == {"ROUTR_RAY_TRACING": "on", "ROUTR_RAY_TRACING_SAMPLE_RATIO": "0.5",
                                           "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}
    assert tracing_environment(on, {"ROUTR_RAY_TRACING": "off"}) == {}
    assert tracing_environment(on, {"OTEL_SDK_DISABLED": "true"}) == {}
    assert "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" not in tracing_environment(
        on, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://mine:4317"})
    assert tracing_environment(ObservabilityConfig(), {}) == {}
    off = ObservabilityConfig(tracing=TracingSettings(False), tracing_configured=True)
    assert tracing_environment(off, {}) == {}
