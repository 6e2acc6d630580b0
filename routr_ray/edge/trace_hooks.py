"""The EdgePort's spans (issue 21): one per server transaction (the root of a message's trace) and one per
client transaction it opens downstream (a child of the server transaction that forwarded it).

Called by ``edgeport.py`` only when :data:`routr_ray.observability.tracing.ON` (server spans) or when the
transaction has a span (everything else): with tracing off, the EdgePort pays one flag check per new transaction
and one ``is not None`` per hook. Spans end when the transaction's final response is sent (server) or received
(client), or when the transaction ends without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from routr_ray.edge.transports import Flow
from routr_ray.observability import tracing
from routr_ray.sip import ParseError, Request

__all__ = ["client_span", "decided", "server_span"]

DIRECTION_KEY = "routr-ray.call-direction"  # set by Connect (processors/connect/processor.py)
TRUNK_REF_KEY = "routr-ray.trunk-ref"


def _call_id(request: Request) -> str | None:
    try:
        return request.call_id
    except ParseError:
        return None


def server_span(request: Request, flow: Flow, edge_ref: str) -> Any:
    """The root span of a new server transaction; None when the head sampler dropped it (decided before anything
    is built)."""
    if not tracing.head_sample():
        return None
    return tracing.root_span(f"SIP {request.method}", sampled=True, attributes={
        "sip.method": request.method,
        "sip.call_id": _call_id(request),
        "sip.direction": "in",
        "network.transport": flow.transport.value,
        "network.peer.address": flow.remote_host,
        "network.peer.port": flow.remote_port,
        "routr.edgeport": edge_ref,
    })


def decided(span: Any, metadata: Mapping[str, str]) -> None:
    """What the processor decided, on the server span: the call direction and trunk it named."""
    if not metadata:
        return
    direction = metadata.get(DIRECTION_KEY)
    if direction:
        span.set_attribute("sip.call_direction", direction)
    trunk = metadata.get(TRUNK_REF_KEY)
    if trunk:
        span.set_attribute("routr.trunk", trunk)


def client_span(parent: Any, request: Request, host: str, port: int, transport: str, trunk: str | None) -> Any:
    """The span of a client transaction forwarding ``request`` (a child of the server transaction's span)."""
    return tracing.child_span(f"SIP {request.method}", parent=parent, kind="CLIENT", attributes={
        "sip.method": request.method,
        "sip.call_id": _call_id(request),
        "sip.direction": "out",
        "sip.request_uri": str(request.uri),
        "network.transport": transport,
        "server.address": host,
        "server.port": port,
        "routr.trunk": trunk or None,
    })
