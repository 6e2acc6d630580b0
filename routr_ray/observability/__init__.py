"""Observability (DESIGN §8): the pure half of the Ray metrics bridge, call events and their sinks, structured
logs with the Call-ID in context, rate-limited per-message errors.

No Ray here (``routr_ray/actors/metrics.py`` is the Ray half of the bridge); NATS and Redis clients are imported
only when such a sink is built.
"""

from routr_ray.observability.call_events import CallEventEmitter
from routr_ray.observability.events import (
    CALL_ENDED,
    CALL_STARTED,
    ENDPOINT_REGISTERED,
    Event,
    call_ended,
    call_started,
    endpoint_registered,
    hangup_cause,
)
from routr_ray.observability.logs import JsonFormatter, call_id_context, configure_logging, log_context
from routr_ray.observability.metrics_bridge import Point, PointKind, read_registry
from routr_ray.observability.publisher import EventPublisher, EventSink
from routr_ray.observability.ratelimit import MessageErrorLog, RateLimitedLog
from routr_ray.observability.sinks import LogSink, NatsSink, RedisSink, sinks_from_env

__all__ = [
    "CALL_ENDED",
    "CALL_STARTED",
    "ENDPOINT_REGISTERED",
    "CallEventEmitter",
    "Event",
    "EventPublisher",
    "EventSink",
    "JsonFormatter",
    "LogSink",
    "MessageErrorLog",
    "NatsSink",
    "Point",
    "PointKind",
    "RateLimitedLog",
    "RedisSink",
    "call_ended",
    "call_id_context",
    "call_started",
    "configure_logging",
    "endpoint_registered",
    "hangup_cause",
    "log_context",
    "read_registry",
    "sinks_from_env",
]
