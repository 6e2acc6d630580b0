"""Issue 21: one trace per message across the EdgePort, Connect and Location, and the EdgePort's call metrics.

The real Connect on config/ as shipped behind the EdgePort (tests/support/phones.py), UDP phones on loopback,
tracing on with the SDK's in-memory exporter (one process: the spans that cross processes in production are
checked by tests/acceptance/observability). 1002 registers, 1001 calls it with digest, 1002 answers, 1001 hangs up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from routr_ray.observability import tracing
from routr_ray.sip import Request, Response, parse
from tests.integration.test_edgeport_forking import close, dial, setup
from tests.support.phones import shipped_edge

pytestmark = [pytest.mark.timeout(30), pytest.mark.netns,
              pytest.mark.skipif(os.environ.get("ROUTR_RAY_IN_NETNS") != "1", reason="inside scripts/in-netns")]


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure(tracing.TracingSettings(enabled=True, sample_ratio=1.0), component="test", exporter=exporter,
                      simple=True)
    try:
        yield exporter
    finally:
        tracing.reset()


def _bye(ok: Response, invite: Request, caller_port: int) -> Request:
    """The caller's BYE in the dialog of ``ok`` (RFC 3261 §12.2.1.1: the route set is the Record-Route reversed)."""
    contact = ok.contacts[0].uri
    routes = list(reversed(ok.headers.get_all("Record-Route")))
    lines = [f"BYE {contact} SIP/2.0", f"Via: SIP/2.0/UDP 127.0.0.1:{caller_port};rport;branch=z9hG4bKbye1",
             "Max-Forwards: 70", f"From: {invite.headers.get('From')}", f"To: {ok.headers.get('To')}",
             f"Call-ID: {invite.call_id}", "CSeq: 9 BYE", *(f"Route: {r}" for r in routes), "Content-Length: 0", "", ""]
    message = parse("\r\n".join(lines).encode())
    assert isinstance(message, Request)
    return message


async def test_a_call_is_one_trace_per_transaction_with_edge_connect_and_location_spans(
        spans: InMemorySpanExporter) -> None:
    async with shipped_edge() as edge:
        server = ("127.0.0.1", edge.address("udp")[1])
        caller, (callee,) = await setup(edge, 1)
        try:
            spans.clear()
            invite = await dial(edge, caller)
            await callee.ringing()
            callee.reply(200)
            ok, _ = await caller.final()
            assert ok.status == 200
            assert edge.metrics.calls.active == 1
            caller.send(_bye(ok, invite, caller.port), server)
            bye, source = await callee.phone.request_of("BYE")
            callee.phone.send(bye.make_response(200), source)
            answer, _ = await caller.final()
            assert answer.status == 200
        finally:
            close(caller, callee.phone)
    assert edge.metrics.calls.active == 0
    assert edge.metrics.call_duration.counts[0] == 1  # one call, shorter than the first bucket (1 s)
    assert edge.metrics.calls.results == {"answered": 1, "cancelled": 0, "failed": 0}

    finished = spans.get_finished_spans()
    invites = [s for s in finished if s.name == "SIP INVITE" and s.kind.name == "SERVER"
               and s.attributes.get("sip.call_id") == invite.call_id]
    authorized = [s for s in invites if s.attributes.get("sip.status_code") == 200]
    assert len(authorized) == 1, [(s.name, dict(s.attributes)) for s in invites]
    root = authorized[0]
    assert root.parent is None
    assert root.attributes["sip.call_direction"] == "agent-to-agent"
    trace = [s for s in finished if s.context.trace_id == root.context.trace_id]
    by_id = {s.context.span_id: s for s in trace}
    names = {s.name for s in trace}
    assert {"SIP INVITE", "connect INVITE", "connect.route", "connect.auth", "location.find"} <= names, names
    for child in trace:  # every span of the trace hangs from the EdgePort's, parent to child
        if child is not root:
            assert child.parent is not None and child.parent.span_id in by_id, child.name
    connect = next(s for s in trace if s.name == "connect INVITE")
    assert connect.parent.span_id == root.context.span_id
    assert connect.attributes["routr.result"] == "forwarded"
    route = next(s for s in trace if s.name == "connect.route")
    assert route.parent.span_id == connect.context.span_id
    location_spans = [s for s in trace if s.name == "location.find"]
    client = next(s for s in location_spans if s.kind.name == "CLIENT")
    shard = next(s for s in location_spans if s.kind.name == "SERVER")
    assert client.parent.span_id == route.context.span_id
    assert shard.parent.span_id == client.context.span_id
    assert shard.attributes["routr.location.result"] == "OK"
    downstream = next(s for s in trace if s.name == "SIP INVITE" and s.kind.name == "CLIENT")
    assert downstream.parent.span_id == root.context.span_id
    assert downstream.attributes["sip.status_code"] == 200
    assert downstream.attributes["server.port"] == callee.phone.port
    # the challenged INVITE is a trace of its own, answered 407 by Connect's auth step
    challenged = next(s for s in invites if s.attributes.get("sip.status_code") == 407)
    assert challenged.context.trace_id != root.context.trace_id
    auth = [s for s in finished if s.name == "connect.auth" and s.context.trace_id == challenged.context.trace_id]
    assert [s.attributes["routr.auth_result"] for s in auth] == ["challenged"]


async def test_nothing_is_traced_when_tracing_is_off() -> None:
    """Off (the default): no span anywhere and no trace context in any message the dispatcher is given."""
    assert not tracing.ON
    async with shipped_edge() as edge:
        caller, (callee,) = await setup(edge, 1)
        try:
            await dial(edge, caller)
            await callee.ringing()
            callee.reply(200)
            ok, _ = await caller.final()
            assert ok.status == 200
        finally:
            close(caller, callee.phone)
        given = edge.dispatcher.client.received
        assert len(given) >= 5  # REGISTERs, INVITEs
        assert not any(tracing.TRACEPARENT_KEY in r.metadata or tracing.W3C_KEY in r.metadata for r in given)
        assert all(txn.context.span is None for txn in edge.server_txns.values())
