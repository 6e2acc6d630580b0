"""Prometheus metrics of the media relay (DESIGN §8): ng commands and health per RTPEngine instance, relay
outcomes per call.

Labels come from closed sets: ``instance`` (the refs of the MediaRelay config), ``command`` (ng commands),
``result`` (``ok``, ``error``: RTPEngine said no, ``unreachable``: no answer or refused) and ``outcome``.
The middleware's deployment mirrors this registry into Ray's metrics pipeline (``ray_`` prefix on Ray's metrics
export port, as the EdgePorts' series); ``metrics_text()`` gives the exposition text.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["MediaMetrics", "OUTCOMES"]

COMMANDS = ("ping", "offer", "answer", "delete", "query", "list", "other")
OUTCOMES = (
    "relayed",  # an offer or answer rewritten by RTPEngine
    "deleted",  # a call or branch deleted (BYE, a failed branch)
    "refused_503",  # no instance could take the call: 503 to the caller
    "refused_488",  # RTPEngine refused the SDP: 488 to the caller
    "answer_failed",  # the answer could not be relayed (1xx without SDP, 2xx turned into 503)
    "not_found",  # a later command found the call on no live instance
    "misconfigured",  # the entry lacks internalMetadata: true; a call with SDP got 500
)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class MediaMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.commands = Counter(
            "routr_media_commands", "ng commands sent to RTPEngine, by instance, command and result",
            ["instance", "command", "result"], registry=self.registry,
        )
        self.latency = Histogram(
            "routr_media_command_seconds", "Time RTPEngine took to answer an ng command (retransmissions included)",
            ["instance", "command"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.up = Gauge(
            "routr_media_instance_up", "1 while the RTPEngine instance answers its pings, else 0",
            ["instance"], registry=self.registry,
        )
        self.outcomes = Counter(
            "routr_media_calls", "What the media relay did with an SDP or a call, by outcome",
            ["outcome"], registry=self.registry,
        )

    def command(self, instance: str, command: str, result: str, seconds: float) -> None:
        name = command if command in COMMANDS else "other"
        self.commands.labels(instance, name, result).inc()
        if result != "unreachable":
            self.latency.labels(instance, name).observe(seconds)

    def instance_up(self, instance: str, up: bool) -> None:
        self.up.labels(instance).set(1 if up else 0)

    def outcome(self, outcome: str) -> None:
        self.outcomes.labels(outcome).inc()

    def text(self) -> bytes:
        return generate_latest(self.registry)
