"""Distributed traces of SIP messages across EdgePort -> dispatcher -> processor -> Location shard (issue 21).

OpenTelemetry (``opentelemetry-api``/``-sdk``, OTLP over gRPC), **off by default**. Every process turns it on
for itself with :func:`setup` (each actor calls it as it starts), from :class:`TracingSettings` read from the
environment (:meth:`TracingSettings.from_env`): ``routr-ray run`` puts the settings of ``observability.yaml``
there before Ray starts its processes, and ``OTEL_*`` variables work as for any OpenTelemetry SDK.

Cost when off: every hook on the SIP path is guarded by the module global :data:`ON` (``if tracing.ON:``), one
global and one attribute lookup, a few tens of nanoseconds (``benchmarks/tracing_overhead.py``).

Propagation: the W3C ``traceparent`` of the caller's span travels in the message metadata under
:data:`TRACEPARENT_KEY` (``routr-ray.traceparent``). Being internal metadata (``routr-ray.*``), it is removed for
outside callers of the dispatcher's gRPC port (a caller cannot join, or force sampling of, our traces) and for
middlewares and ``host:port`` processors without ``internalMetadata: true``; those get the standard
``traceparent`` gRPC header instead (``routr_ray/dispatch/remote.py``). Location operations carry it after their
kind (``find|<traceparent>``, ``routr_ray/location/ops.py``).

Sampling is decided once, at the EdgePort, with a head ratio (:func:`root_span`: a random draw before any span
object is made); the SDK follows the parent (``ParentBased``) and the other components make spans only for a
message whose traceparent says *sampled*, so a message that is not sampled costs them nothing but the flag check. Span attributes are SIP facts (method, Call-ID, status, direction,
trunk); metrics never get those labels (DESIGN §8), traces may.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import re
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

__all__ = [
    "ON", "TRACEPARENT_KEY", "TracingSettings", "child_span", "configure", "current_traceparent", "end_span",
    "format_traceparent", "inject", "parse_traceparent", "reset", "root_span", "setup", "span", "use_span",
]

ON = False
"""True once :func:`configure` installed a tracer in this process: the SIP path's only check."""

TRACEPARENT_KEY = "routr-ray.traceparent"
W3C_KEY = "traceparent"
"""The standard key: metadata sent to middlewares and external processors that do not get internal metadata, and
the gRPC header of calls to ``host:port`` processors."""
INSTRUMENTATION = "routr_ray"
DEFAULT_SAMPLE_RATIO = 0.1

ENABLE_ENV = "ROUTR_RAY_TRACING"
RATIO_ENV = "ROUTR_RAY_TRACING_SAMPLE_RATIO"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

_tracer: Any = None
_provider: Any = None
_component = ""
_ratio = 1.0


@dataclass(frozen=True)
class TracingSettings:
    """What one process needs to trace: on or off, where to send spans, the head sampling ratio."""

    enabled: bool = False
    endpoint: str | None = None
    """OTLP gRPC endpoint (``http://host:4317``); None: ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` /
    ``OTEL_EXPORTER_OTLP_ENDPOINT``, else the SDK's default ``localhost:4317``."""
    sample_ratio: float = DEFAULT_SAMPLE_RATIO
    exporter: str = "otlp"
    """``otlp`` or ``console`` (spans printed as JSON on stdout, for a quick look)."""
    service_name: str = "routr-ray"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TracingSettings:
        """On with ``ROUTR_RAY_TRACING=on`` or ``OTEL_TRACES_EXPORTER=otlp|console``; off with
        ``ROUTR_RAY_TRACING=off``, ``OTEL_TRACES_EXPORTER=none`` or ``OTEL_SDK_DISABLED=true`` (whatever else is
        set). Ratio: ``ROUTR_RAY_TRACING_SAMPLE_RATIO``, else ``OTEL_TRACES_SAMPLER_ARG`` with a ``*traceidratio``
        sampler (``always_on``: 1, ``always_off``: 0), else 0.1."""
        env = os.environ if env is None else env
        switch = env.get(ENABLE_ENV, "").strip().lower()
        exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
        disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE
        enabled = (switch in _TRUE or exporter in ("otlp", "console")) and switch not in _FALSE \
            and exporter != "none" and not disabled
        endpoint = (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                    or "").strip() or None
        return cls(enabled, endpoint, _ratio_from_env(env), exporter if exporter == "console" else "otlp",
                   env.get("OTEL_SERVICE_NAME", "").strip() or "routr-ray")

    def to_env(self) -> dict[str, str]:
        """The environment that makes :meth:`from_env` return these settings (what ``routr-ray run`` hands
        Ray's processes)."""
        if not self.enabled:
            return {ENABLE_ENV: "off"}
        env = {ENABLE_ENV: "on", RATIO_ENV: repr(float(self.sample_ratio))}
        if self.endpoint:
            env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = self.endpoint
        return env


def _ratio_from_env(env: Mapping[str, str]) -> float:
    text = env.get(RATIO_ENV, "").strip()
    sampler = env.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    if not text:
        if sampler in ("always_on", "parentbased_always_on"):
            return 1.0
        if sampler in ("always_off", "parentbased_always_off"):
            return 0.0
        if sampler.endswith("traceidratio"):
            text = env.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        ratio = float(text) if text else DEFAULT_SAMPLE_RATIO
    except ValueError:
        log.warning("tracing: sample ratio %r is not a number; using %s", text, DEFAULT_SAMPLE_RATIO)
        return DEFAULT_SAMPLE_RATIO
    return min(1.0, max(0.0, ratio))


# ---- set-up --------------------------------------------------------------------------------------------------


def setup(component: str, env: Mapping[str, str] | None = None) -> bool:
    """Turn tracing on in this process when the environment says so (idempotent; an actor calls it as it starts).
    ``component`` names the process in the spans' resource (``routr.component``). Never raises: a tracer that
    cannot be built leaves tracing off and says why once."""
    if ON:
        return True
    settings = TracingSettings.from_env(env)
    if not settings.enabled:
        return False
    try:
        configure(settings, component=component)
    except Exception as exc:  # noqa: BLE001 - tracing must never keep a component from starting
        log.warning("tracing stays off in %s: %r", component, exc)
        return False
    return True


def configure(settings: TracingSettings, *, component: str = "", exporter: Any = None,
              simple: bool = False) -> None:
    """Install a tracer for ``settings`` (tests pass their own ``exporter``, e.g. the SDK's in-memory one, and
    ``simple=True`` to export each span as it ends instead of in batches)."""
    global ON, _tracer, _provider, _component, _ratio
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

    if exporter is None:
        exporter = _exporter(settings)
    resource = Resource.create({"service.name": settings.service_name, "routr.component": component or "routr-ray",
                                "process.pid": os.getpid()})
    # the head decision is root_span's (a random draw before any span is made: an unsampled message costs no span
    # object); the SDK then follows the parent, so a trace is whole or absent
    provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(SimpleSpanProcessor(exporter) if simple else BatchSpanProcessor(exporter))
    old = _provider
    _provider, _component, _ratio = provider, component, settings.sample_ratio
    _tracer = provider.get_tracer(INSTRUMENTATION)
    ON = True
    if old is not None:
        old.shutdown()
    log.info("tracing on in %s: %s exporter%s, sample ratio %g", component or "this process", settings.exporter,
             f" to {settings.endpoint}" if settings.endpoint else "", settings.sample_ratio)


def _exporter(settings: TracingSettings) -> Any:
    if settings.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    if settings.endpoint is None:
        return OTLPSpanExporter()
    return OTLPSpanExporter(endpoint=settings.endpoint, insecure=settings.endpoint.startswith("http://"))


def flush(timeout_ms: int = 5000) -> bool:
    """Export what is buffered now (before a process stops)."""
    return bool(_provider.force_flush(timeout_ms)) if _provider is not None else True


def reset() -> None:
    """Tracing off again in this process (tests); buffered spans are exported first."""
    global ON, _tracer, _provider
    provider, _provider, _tracer, ON = _provider, None, None, False
    if provider is not None:
        provider.shutdown()


# ---- traceparent ---------------------------------------------------------------------------------------------


def format_traceparent(span: Any) -> str:
    """W3C Trace Context ``traceparent`` of ``span`` (version 00)."""
    ctx = span.get_span_context()
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def parse_traceparent(value: str | None) -> Any:
    """The remote SpanContext of a ``traceparent`` value; None when absent, malformed or all zeros (W3C Trace
    Context §3.2.2: such a value is ignored)."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) == "ff":
        return None
    trace_id, span_id = int(match.group(2), 16), int(match.group(3), 16)
    if not trace_id or not span_id:
        return None
    from opentelemetry.trace import SpanContext, TraceFlags

    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(match.group(4), 16)))


def _parent_context(value: str | None) -> Any:
    """The OpenTelemetry context with ``value``'s span as the parent; None unless it is valid and sampled."""
    span_context = parse_traceparent(value)
    if span_context is None or not span_context.trace_flags.sampled:
        return None
    from opentelemetry import trace

    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


def inject(span: Any, metadata: MutableMapping[str, str]) -> None:
    """Put ``span``'s traceparent in ``metadata`` (a dict or a protobuf map)."""
    if span is not None:
        metadata[TRACEPARENT_KEY] = format_traceparent(span)


def current_traceparent() -> str | None:
    """The traceparent of this task's current span when it is sampled (what a Location call carries)."""
    if not ON:
        return None
    from opentelemetry import trace

    current = trace.get_current_span()
    ctx = current.get_span_context()
    if not ctx.is_valid or not ctx.trace_flags.sampled:
        return None
    return format_traceparent(current)


# ---- spans ---------------------------------------------------------------------------------------------------


def _kind(name: str) -> Any:
    from opentelemetry.trace import SpanKind

    return getattr(SpanKind, name)


def head_sample() -> bool:
    """The head sampling decision for a new trace: tracing on, and a random draw under the ratio."""
    return _tracer is not None and (_ratio >= 1.0 or random.random() < _ratio)


def root_span(name: str, attributes: Mapping[str, Any] | None = None, kind: str = "SERVER", *,
              sampled: bool | None = None) -> Any:
    """A new trace (the EdgePort, for a transaction it starts); None when tracing is off or the head sampler
    dropped it (then nothing downstream traces this message either). ``sampled``: :func:`head_sample` already
    drawn by the caller (who then built ``attributes`` only for a sampled message)."""
    if sampled is None:
        sampled = head_sample()
    if not sampled or _tracer is None:
        return None
    return _tracer.start_span(name, kind=_kind(kind), attributes=_clean(attributes))


def child_span(name: str, traceparent: str | None = None, attributes: Mapping[str, Any] | None = None,
               kind: str = "SERVER", parent: Any = None) -> Any:
    """A span under ``parent`` (a span of this process) or under the remote ``traceparent``; None when tracing is
    off or there is no sampled parent."""
    if _tracer is None:
        return None
    if parent is not None:
        from opentelemetry import trace

        context = trace.set_span_in_context(parent)
    else:
        context = _parent_context(traceparent)
        if context is None:
            return None
    return _tracer.start_span(name, context=context, kind=_kind(kind), attributes=_clean(attributes))


def span_from_metadata(name: str, metadata: Mapping[str, str], attributes: Mapping[str, Any] | None = None,
                       kind: str = "SERVER") -> Any:
    """:func:`child_span` of the traceparent in a message's ``metadata``."""
    value = metadata.get(TRACEPARENT_KEY) if metadata else None
    return child_span(name, value, attributes, kind) if value else None


def end_span(span: Any, status: int | None = None, error: str | None = None, **attributes: Any) -> None:
    """Set the SIP status (and an error for >= 500, or ``error``), the ``attributes``, and end ``span``."""
    if span is None:
        return
    if status is not None:
        span.set_attribute("sip.status_code", status)
    for key, value in attributes.items():
        if value is not None:
            span.set_attribute(key.replace("__", "."), value)
    if error is not None or (status is not None and status >= 500):
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, error or f"SIP {status}"))
    span.end()


@contextlib.contextmanager
def use_span(span: Any) -> Iterator[Any]:
    """Make ``span`` the current span of this task for the block (spans made inside are its children); ends it
    on the way out (an exception is recorded on it)."""
    from opentelemetry import trace

    with trace.use_span(span, end_on_exit=True, record_exception=True, set_status_on_exception=True):
        yield span


@contextlib.contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None, kind: str = "INTERNAL") -> Iterator[Any]:
    """A child of this task's current span for the block, made current; yields None (and makes nothing) when
    tracing is off or there is no sampled current span."""
    if _tracer is None:
        yield None
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    if not current.get_span_context().trace_flags.sampled or not current.is_recording():
        yield None
        return
    with _tracer.start_as_current_span(name, kind=_kind(kind), attributes=_clean(attributes),
                                       record_exception=True, set_status_on_exception=True) as made:
        yield made


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Attributes without None values (OpenTelemetry refuses them)."""
    if not attributes:
        return None
    return {key: value for key, value in attributes.items() if value is not None}
