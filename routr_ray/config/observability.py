"""Observability config (routr-ray only, issue 21): ``kind: Observability``.

spec:
  metrics:
    port: 9464                   # Ray's metrics export port (a Ray started by `routr-ray run`)
  tracing:
    enabled: false               # OpenTelemetry traces; ROUTR_RAY_TRACING / OTEL_* in the environment win
    endpoint: http://127.0.0.1:4317
    sampleRatio: 0.1

Optional: without it Ray picks a random metrics export port and tracing follows the environment alone. How the
launcher applies it: ``routr_ray/actors/launcher.py`` (docs/observability.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from routr_ray.config.problems import Place
from routr_ray.observability.tracing import DEFAULT_SAMPLE_RATIO, TracingSettings


@dataclass(frozen=True)
class ObservabilityConfig:
    ref: str = "observability"
    metrics_port: int | None = None
    tracing: TracingSettings = field(default_factory=TracingSettings)
    tracing_configured: bool = False  # the document has a `tracing` section (else only the environment decides)


def build_observability(document: dict[str, Any], place: Place) -> ObservabilityConfig:
    spec: dict[str, Any] = document["spec"]
    metrics: Mapping[str, Any] = spec.get("metrics") or {}
    tracing: Mapping[str, Any] | None = spec.get("tracing")
    settings = TracingSettings()
    if tracing is not None:
        settings = TracingSettings(
            enabled=bool(tracing.get("enabled", False)),
            endpoint=tracing.get("endpoint") or None,
            sample_ratio=float(tracing.get("sampleRatio", DEFAULT_SAMPLE_RATIO)),
        )
    port = metrics.get("port")
    return ObservabilityConfig(ref=document.get("ref", ObservabilityConfig.ref),
                               metrics_port=int(port) if port is not None else None, tracing=settings,
                               tracing_configured=tracing is not None)
