"""routr_ray.observability.tracing (issue 21): settings, traceparent, sampling, and the dispatcher's and the
Location shard's spans and propagation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from test_dispatch_support import message_request, sip_request

from routr_ray.config.dispatcher import ProcessorConfig
from routr_ray.dispatch.core import DispatchCore
from routr_ray.dispatch.matching import Router
from routr_ray.dispatch.metrics import DispatchMetrics
from routr_ray.dispatch.middleware import MiddlewareChain
from routr_ray.dispatch.runtime import _stripped
from routr_ray.location.ops import apply_ops, encode_find, split_trace, traced
from routr_ray.location.service import LocationService
from routr_ray.observability import tracing
from routr_ray.observability.tracing import TracingSettings
from routr_ray.proto.gen import location_pb2, processor_pb2


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(TracingSettings(enabled=True, sample_ratio=1.0), component="test", exporter=exporter,
                      simple=True)
    try:
        yield exporter
    finally:
        tracing.reset()


# ---- settings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "enabled"), [
    ({}, False),
    ({"ROUTR_RAY_TRACING": "on"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
    ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ({"OTEL_TRACES_EXPORTER": "otlp", "ROUTR_RAY_TRACING": "off"}, False),
    ({"ROUTR_RAY_TRACING": "on", "OTEL_SDK_DISABLED": "true"}, False),
    ({"ROUTR_RAY_TRACING": "on", "OTEL_TRACES_EXPORTER": "none"}, False),
])
def test_tracing_is_off_unless_asked_for(env: dict[str, str], enabled: bool) -> None:
    assert TracingSettings.from_env(env).enabled is enabled


def test_settings_read_the_standard_otel_variables() -> None:
    settings = TracingSettings.from_env({
        "OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25",
        "OTEL_SERVICE_NAME": "sip-edge"})
    assert (settings.endpoint, settings.sample_ratio, settings.service_name) == ("http://collector:4317", 0.25,
                                                                                 "sip-edge")
    assert TracingSettings.from_env({"ROUTR_RAY_TRACING": "on"}).sample_ratio == tracing.DEFAULT_SAMPLE_RATIO
    assert TracingSettings.from_env({"ROUTR_RAY_TRACING": "on", "OTEL_TRACES_SAMPLER": "always_on"}).sample_ratio == 1
    assert TracingSettings.from_env({"ROUTR_RAY_TRACING": "on", "ROUTR_RAY_TRACING_SAMPLE_RATIO": "7"}).sample_ratio == 1
    assert TracingSettings.from_env({"ROUTR_RAY_TRACING": "on", "ROUTR_RAY_TRACING_SAMPLE_RATIO": "x"}).sample_ratio \
        == tracing.DEFAULT_SAMPLE_RATIO


def test_settings_survive_the_trip_through_the_environment() -> None:
    settings = TracingSettings(True, "http://127.0.0.1:4317", 0.5)
    assert TracingSettings.from_env(settings.to_env()) == settings
    assert TracingSettings.from_env(TracingSettings().to_env()).enabled is False


def test_setup_leaves_tracing_off_by_default() -> None:
    assert tracing.setup("test", {}) is False
    assert not tracing.ON
    assert tracing.root_span("x") is None
    with tracing.span("y") as made:
        assert made is None


# ---- traceparent ---------------------------------------------------------------------------------------------


def test_traceparent_round_trip(spans: InMemorySpanExporter) -> None:
    root = tracing.root_span("root")
    value = tracing.format_traceparent(root)
    assert value.startswith("00-") and len(value) == 55
    assert int(value[-2:], 16) & 1  # sampled (level 2 adds the "random" flag, 0x02)
    parsed = tracing.parse_traceparent(value)
    assert (parsed.trace_id, parsed.span_id) == (root.get_span_context().trace_id, root.get_span_context().span_id)
    child = tracing.child_span("child", value)
    child.end()
    root.end()
    assert spans.get_finished_spans()[0].parent.span_id == root.get_span_context().span_id


@pytest.mark.parametrize("value", [None, "", "garbage", "00-" + "0" * 32 + "-" + "1" * 16 + "-01",
                                   "00-" + "1" * 32 + "-" + "0" * 16 + "-01", "ff-" + "1" * 32 + "-" + "1" * 16 + "-01",
                                   "00-" + "1" * 31 + "-" + "1" * 16 + "-01"])
def test_bad_traceparents_are_ignored(value: str | None, spans: InMemorySpanExporter) -> None:
    assert tracing.parse_traceparent(value) is None
    assert tracing.child_span("x", value) is None


def test_an_unsampled_parent_makes_no_span(spans: InMemorySpanExporter) -> None:
    assert tracing.child_span("x", "00-" + "1" * 32 + "-" + "1" * 16 + "-00") is None


def test_the_head_ratio_decides_at_the_root() -> None:
    exporter = InMemorySpanExporter()
    tracing.configure(TracingSettings(enabled=True, sample_ratio=0.0), exporter=exporter, simple=True)
    try:
        assert tracing.root_span("dropped") is None
        tracing.configure(TracingSettings(enabled=True, sample_ratio=0.25), exporter=exporter, simple=True)
        made = [tracing.root_span("maybe") for _ in range(4000)]
        kept = [s for s in made if s is not None]
        assert 800 < len(kept) < 1200  # 1000 expected; the bounds are ~7 standard deviations
        for root in kept:  # and a kept root's children are all sampled: a trace is whole
            child = tracing.child_span("child", tracing.format_traceparent(root))
            assert child is not None and child.is_recording()
            child.end()
            root.end()
    finally:
        tracing.reset()


# ---- the dispatcher ------------------------------------------------------------------------------------------


def _req(method: str) -> processor_pb2.MessageRequest:
    return message_request(sip_request(method))


def _core(result: processor_pb2.MessageResponse | Exception, metrics: DispatchMetrics) -> DispatchCore:
    router = Router([ProcessorConfig("connect", "c:1", ("INVITE",))])

    async def call(route: object, request: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        call.seen.append(request)  # type: ignore[attr-defined]
        if isinstance(result, Exception):
            raise result
        return result

    call.seen = []  # type: ignore[attr-defined]
    core = DispatchCore(router, MiddlewareChain([]), call, metrics=metrics)
    core.seen = call.seen  # type: ignore[attr-defined]
    return core


async def test_the_dispatcher_makes_a_child_span_and_passes_its_context_on(spans: InMemorySpanExporter) -> None:
    metrics = DispatchMetrics()
    root = tracing.root_span("SIP INVITE")
    request = _req("INVITE")
    tracing.inject(root, request.metadata)
    forwarded = processor_pb2.MessageResponse()
    forwarded.message.CopyFrom(request.message)
    core = _core(forwarded, metrics)
    assert await core.handle(request) is not None
    root.end()
    (dispatch,) = [s for s in spans.get_finished_spans() if s.name == "routr.dispatch"]
    assert dispatch.parent.span_id == root.get_span_context().span_id
    assert dispatch.attributes["routr.processor"] == "connect"
    assert dispatch.attributes["routr.outcome"] == "processed"
    (given,) = core.seen  # type: ignore[attr-defined]
    assert tracing.parse_traceparent(given.metadata[tracing.TRACEPARENT_KEY]).span_id == dispatch.context.span_id
    assert metrics.counts == {("connect", "processed"): 1}


async def test_dispatcher_outcomes_are_counted() -> None:
    metrics = DispatchMetrics()
    core = _core(RuntimeError("down"), metrics)
    await core.handle(_req("INVITE"))
    await core.handle(_req("MESSAGE"))
    assert metrics.counts == {("connect", "unavailable"): 1, ("none", "no_match"): 1}
    text = b"".join(_exposition(metrics)).decode()
    assert 'routr_dispatcher_messages_total{outcome="unavailable",processor="connect"} 1.0' in text


def _exposition(metrics: DispatchMetrics) -> list[bytes]:
    from prometheus_client import generate_latest

    return [generate_latest(metrics.registry)]


async def test_stripped_requests_carry_the_standard_traceparent(spans: InMemorySpanExporter) -> None:
    """A middleware or host:port processor without internalMetadata gets no routr-ray.* key, but the W3C one."""
    seen: list[processor_pb2.MessageRequest] = []

    async def call(request: processor_pb2.MessageRequest, deadline: float | None) -> processor_pb2.MessageResponse:
        seen.append(request)
        return processor_pb2.MessageResponse()

    root = tracing.root_span("SIP INVITE")
    request = _req("INVITE")
    tracing.inject(root, request.metadata)
    request.metadata["routr-ray.next-hop"] = "sip:10.0.0.1"
    await _stripped(call)(request, None)
    (sent,) = seen
    assert dict(sent.metadata) == {tracing.W3C_KEY: tracing.format_traceparent(root)}
    assert tracing.TRACEPARENT_KEY in request.metadata  # the chain's own request is untouched
    root.end()


# ---- Location ------------------------------------------------------------------------------------------------


def test_an_operation_carries_its_traceparent_after_its_kind() -> None:
    op = encode_find(location_pb2.FindRoutesRequest(aor="sip:a@b"))
    assert traced(op, None) == op
    value = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    assert split_trace(traced(op, value)[0]) == ("find", value)
    assert split_trace("remove") == ("remove", None)


async def test_the_shard_span_is_a_child_of_the_callers(spans: InMemorySpanExporter) -> None:
    service = LocationService(sweep_interval=0)
    root = tracing.root_span("connect.route")
    value = tracing.format_traceparent(root)
    ops = [traced(encode_find(location_pb2.FindRoutesRequest(aor="sip:a@b")), value),
           encode_find(location_pb2.FindRoutesRequest(aor="sip:c@b"))]
    results = await apply_ops(service, ops)
    assert [code for code, _ in results] == ["OK", "OK"]
    root.end()
    (shard,) = [s for s in spans.get_finished_spans() if s.name == "location.find"]
    assert shard.parent.span_id == root.get_span_context().span_id
    assert shard.attributes["routr.location.result"] == "OK"


async def test_a_traced_operation_is_applied_by_a_shard_without_tracing() -> None:
    service = LocationService(sweep_interval=0)
    value = "00-" + "1" * 32 + "-" + "2" * 16 + "-01"
    ((code, _),) = await apply_ops(service, [traced(encode_find(location_pb2.FindRoutesRequest(aor="sip:a@b")),
                                                    value)])
    assert code == "OK"
