"""Attacks with trace context (issue 21): an outside caller of the dispatcher's gRPC port (51901) cannot join our
traces or force sampling by writing a sampled ``traceparent`` into the metadata; the same request from a caller
with the token (a trusted EdgePort) is traced under its trace context. The port as it is started
(routr_ray/dispatch/front.py) in front of the real dispatcher routing and Connect, in this process, no Ray
(tests/attack/test_dispatcher_port.py), tracing on with the SDK's in-memory exporter."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from routr_ray.observability import tracing
from tests.attack.test_dispatcher_port import TOKEN, Caller, Stack, stack  # noqa: F401 - the fixture
from tests.unit.test_connect_support import sip, to_message_request

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
FORGED = f"00-{TRACE_ID}-00f067aa0ba902b7-01"  # sampled


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(tracing.TracingSettings(enabled=True, sample_ratio=0.0), exporter=exporter, simple=True)
    try:
        yield exporter
    finally:
        tracing.reset()


async def _send(caller: Caller) -> None:
    request = to_message_request(sip("MESSAGE", "sip:1001@sip.local", from_="sip:x@sip.local", to="sip:1001@sip.local"),
                                 ("127.0.0.1", 5060, "UDP"))
    request.metadata[tracing.TRACEPARENT_KEY] = FORGED
    request.metadata[tracing.W3C_KEY] = FORGED
    await caller.stub.ProcessMessage(request, metadata=caller.metadata, timeout=5)


def _in_forged_trace(spans: InMemorySpanExporter) -> list[str]:
    return [s.name for s in spans.get_finished_spans() if f"{s.context.trace_id:032x}" == TRACE_ID]


async def test_an_outside_caller_cannot_join_or_force_a_trace(stack: Stack, spans: InMemorySpanExporter) -> None:  # noqa: F811
    outsider = Caller(stack.open_port)
    try:
        await _send(outsider)
    finally:
        await outsider.close()
    assert _in_forged_trace(spans) == []
    assert spans.get_finished_spans() == ()  # and nothing sampled at ratio 0 either


async def test_control_a_caller_with_the_token_is_traced_under_its_context(stack: Stack,  # noqa: F811
                                                                          spans: InMemorySpanExporter) -> None:
    edgeport = Caller(stack.token_port, token=TOKEN)
    try:
        await _send(edgeport)
    finally:
        await edgeport.close()
    assert {"routr.dispatch", "connect MESSAGE"} <= set(_in_forged_trace(spans))
