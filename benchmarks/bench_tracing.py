"""What tracing costs per SIP message (issue 21): the hooks with tracing off, and a traced message with it on.

One process, no network; CPU time of the process (the machine may be shared), best of 5 runs. A *message* here is one request's trip through every component, with each component's
hook as the code runs it (``routr_ray/edge/edgeport.py``, ``dispatch/core.py``, ``processors/sdk.py``,
``processors/connect``, ``actors/location.py``, ``location/ops.py``):

* **off** (the default): the guards a request passes — the EdgePort's new server transaction, its dispatch, the
  processor's answer, the forward, the final response sent, the client transaction's final response and the two
  transactions' ends; the dispatcher; the processor SDK; Connect's routing and auth; the Location client; the
  shard's operation kind. Timed on the real objects (a ServerContext without a span, the module flag), minus an
  empty loop.
* **on, sampled** (ratio 1): every span of such a trip — the EdgePort's server and client spans, the dispatcher's,
  the processor's, ``connect.route``, ``connect.auth``, the Location client's and the shard's — made, attributed,
  propagated as traceparent strings and ended; each ended span is handed to an exporter that drops it
  (SimpleSpanProcessor: the hand-over is counted; in production a BatchSpanProcessor exports on its own thread).
  The CPU of all processes added up.
* **on, not sampled** (ratio 0): the EdgePort's head-sampling decision; nothing downstream.

    python benchmarks/bench_tracing.py [--messages N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from routr_ray.edge.edgeport import ClientContext, ServerContext
from routr_ray.edge.next_hop import NextHop
from routr_ray.edge.trace_hooks import client_span, decided, server_span
from routr_ray.edge.transports import Flow, TransportName
from routr_ray.location.ops import split_trace, traced
from routr_ray.observability import tracing
from routr_ray.sip import Request, parse

INVITE = (
    b"INVITE sip:1002@sip.local SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\nFrom: <sip:1001@sip.local>;tag=1928301774\r\nTo: <sip:1002@sip.local>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\nCSeq: 314159 INVITE\r\n"
    b"Contact: <sip:1001@127.0.0.1:5070>\r\nContent-Length: 0\r\n\r\n"
)


class Dropping(SpanExporter):
    def export(self, spans: Sequence[Any]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def per_call(fn: Callable[[], object], n: int) -> float:
    """CPU seconds of this process per call of ``fn``, best of 5 runs of ``n`` (CPU time, not wall time: the
    machine may be shared)."""
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - started) / n)
    return best


def hooks_off(ctx: ServerContext, client: ClientContext, metadata: dict[str, str]) -> None:
    """The guards one request passes with tracing off, as the code has them."""
    if tracing.ON:  # EdgePort: new server transaction
        pass
    if ctx.span is not None:  # EdgePort: dispatch (inject)
        pass
    if ctx.span is not None:  # EdgePort: the processor's answer (decided)
        pass
    if ctx.span is not None:  # EdgePort: forward (client span)
        pass
    if client.span is not None:  # EdgePort: the client transaction's final response
        pass
    if ctx.span is not None:  # EdgePort: the final response sent upstream
        pass
    if client.span is not None:  # EdgePort: client transaction terminated
        pass
    if ctx.span is not None:  # EdgePort: server transaction terminated
        pass
    if tracing.ON:  # dispatcher (DispatchCore)
        pass
    if tracing.ON and metadata:  # processor SDK
        pass
    if tracing.ON:  # Connect: routing
        pass
    if tracing.ON:  # Connect: auth
        pass
    if tracing.ON:  # Location client
        pass
    if len("find") > 6:  # the shard: a traced operation kind?
        pass


def empty(ctx: ServerContext, client: ClientContext, metadata: dict[str, str]) -> None:
    return None


def traced_message(request: Request, flow: Flow, hop: NextHop) -> None:
    """Every span of one sampled request's trip, as the components make them."""
    root = server_span(request, flow, "edgeport-01")  # EdgePort
    edge_metadata: dict[str, str] = {}
    tracing.inject(root, edge_metadata)
    dispatch = tracing.span_from_metadata("routr.dispatch", edge_metadata, {"routr.processor": "connect"},
                                          kind="INTERNAL")  # dispatcher
    tracing.inject(dispatch, edge_metadata)
    processor = tracing.span_from_metadata("connect INVITE", edge_metadata, {"sip.method": "INVITE",
                                                                            "sip.call_id": request.call_id})
    with tracing.use_span(processor):  # processor SDK
        with tracing.span("connect.route", {"sip.method": "INVITE"}):  # Connect
            with tracing.span("connect.auth", {"routr.realm": "sip.local"}) as auth:
                auth.set_attribute("routr.auth_result", "ok")
            with tracing.span("location.find", {"routr.location.shard": 0}, kind="CLIENT") as call:
                kind, parent = split_trace(traced(("find", b""), tracing.format_traceparent(call))[0])
                shard = tracing.child_span(f"location.{kind}", parent, {"routr.location.operation": kind})
                tracing.end_span(shard, routr__location__result="OK")  # the shard
        processor.set_attribute("routr.result", "forwarded")
    tracing.end_span(dispatch, routr__outcome="processed")
    decided(root, {"routr-ray.call-direction": "agent-to-agent"})
    downstream = client_span(root, request, hop.host, hop.port, "udp", None)  # EdgePort: the forward
    tracing.end_span(downstream, 200)
    tracing.end_span(root, 200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    request = parse(INVITE)
    assert isinstance(request, Request)
    flow = Flow(TransportName.UDP, "127.0.0.1", 5070, "127.0.0.1", 5060)
    hop = NextHop(TransportName.UDP, "127.0.0.1", 5080)
    ctx = ServerContext(flow)
    client = ClientContext(hop, None)
    metadata = {"routr-ray.next-hop": "sip:127.0.0.1:5080"}

    tracing.reset()
    off = per_call(lambda: hooks_off(ctx, client, metadata), args.messages * 10)
    base = per_call(lambda: empty(ctx, client, metadata), args.messages * 10)
    print(f"tracing off:             {max(0.0, off - base) * 1e9:7.0f} ns per message (14 guards; target <= 1000 ns)")

    tracing.configure(tracing.TracingSettings(enabled=True, sample_ratio=0.0), exporter=Dropping())
    unsampled = per_call(lambda: server_span(request, flow, "edgeport-01"), args.messages * 10)
    print(f"tracing on, not sampled: {unsampled * 1e6:7.2f} us per message (the EdgePort's head-sampling decision)")

    tracing.configure(tracing.TracingSettings(enabled=True, sample_ratio=1.0), exporter=Dropping(), simple=True)
    sampled = per_call(lambda: traced_message(request, flow, hop), args.messages // 4)
    print(f"tracing on, sampled:     {sampled * 1e6:7.2f} us per message (9 spans, all processes added up)")
    tracing.reset()


if __name__ == "__main__":
    main()
