"""Messages the transaction layer makes itself, and matching keys taken from parsed messages.

``build_ack`` answers the ``SendAck`` effect (RFC 3261 §17.1.1.3), ``build_cancel`` the ``CancelBranch``
effect and hop-by-hop CANCEL (§9.1); ``server_key_for`` / ``client_key_for`` apply §17.2.3 / §17.1.3 to
parsed messages. Header values are copied as raw text, so nothing is re-rendered.
"""

from __future__ import annotations

from .headers import Headers
from .message import Request, Response
from .transaction_keys import (
    ClientKey,
    LegacyServerKey,
    ServerKey,
    client_key,
    legacy_server_key,
    sent_by,
    server_key,
)

__all__ = ["build_ack", "build_cancel", "client_key_for", "server_key_for"]


def _required(request: Request, name: str) -> str:
    value = request.headers.get(name)
    if value is None:
        raise ValueError(f"request has no {name} header")
    return value


def _hop_request(request: Request, method: str, to_value: str, reason: str | None = None) -> Request:
    vias = request.headers.get_all("Via")
    cseq = request.cseq
    if not vias or cseq is None:
        raise ValueError("request has no Via or CSeq")
    headers = Headers()
    # "The ACK MUST contain a single Via header field, and this MUST be equal to the top Via header field
    # of the original request." (§17.1.1.3; §9.1 says the same for CANCEL)
    headers.add("Via", vias[0])
    max_forwards = request.headers.get("Max-Forwards")
    headers.add("Max-Forwards", max_forwards if max_forwards is not None else "70")
    # "If the INVITE request whose response is being acknowledged had Route header fields, those header
    # fields MUST appear in the ACK." (§17.1.1.3; §9.1 for CANCEL)
    for route in request.headers.get_lines("Route"):
        headers.add("Route", route)
    headers.add("From", _required(request, "From"))
    headers.add("To", to_value)
    headers.add("Call-ID", _required(request, "Call-ID"))
    headers.add("CSeq", f"{cseq.seq} {method}")
    if reason is not None:
        headers.add("Reason", reason)  # RFC 3326
    headers.add("Content-Length", "0")
    return Request(method, request.uri, headers, version=request.version)


def build_ack(invite: Request, response: Response) -> Request:
    """The ACK a client transaction sends for a non-2xx final response (§17.1.1.3): Request-URI, Call-ID,
    From, CSeq number, top Via and Route of the INVITE; To (with its tag) from the response."""
    to_value = response.headers.get("To")
    if to_value is None:
        raise ValueError("response has no To header")
    return _hop_request(invite, "ACK", to_value)


def build_cancel(request: Request, *, reason: str | None = None) -> Request:
    """A CANCEL for ``request`` (§9.1): same Request-URI, Call-ID, To, From, CSeq number, top Via and Route;
    ``reason`` becomes a Reason header (RFC 3326), e.g. ``'SIP;cause=408;text="Timer C"'``."""
    return _hop_request(request, "CANCEL", _required(request, "To"), reason)


def server_key_for(request: Request) -> ServerKey | LegacyServerKey | None:
    """§17.2.3 key of the server transaction a request belongs to (ACK → its INVITE); the RFC 2543
    fallback when the top Via branch has no magic cookie; ``None`` without a Via.

    Raises the core's ParseError when a header it needs is malformed.
    """
    via = request.top_via
    if via is None:
        return None
    key = server_key(via.branch, sent_by(via.host, via.port), request.method)
    if key is not None:
        return key
    cseq = request.cseq
    from_ = request.from_
    return legacy_server_key(
        request_uri=request.uri,
        from_tag=from_.tag if from_ is not None else None,
        call_id=request.call_id or "",
        cseq_seq=cseq.seq if cseq is not None else 0,
        top_via=str(via),
        method=request.method,
    )


def client_key_for(response: Response) -> ClientKey | None:
    """§17.1.3 key of the client transaction a response belongs to; ``None`` without a branch or CSeq."""
    via = response.top_via
    cseq = response.cseq
    if via is None or via.branch is None or cseq is None:
        return None
    return client_key(via.branch, cseq.method)
