"""Helpers for the processor SDK tests: SIP texts and MessageRequests as an EdgePort would build them."""

from __future__ import annotations

from routr_ray.proto.convert import from_proto, make_message_request
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request, Response, parse

VIA_1 = "SIP/2.0/UDP 203.0.113.5:5062;branch=z9hG4bK74bf9;rport=40000;received=198.51.100.7"
VIA_2 = "SIP/2.0/TCP 10.0.0.9:5070;branch=z9hG4bKnashds8"


def sip_request(
    method: str = "OPTIONS",
    *,
    to_tag: str | None = None,
    extra: str = "",
    vias: tuple[str, ...] = (VIA_1, VIA_2),
    ruri: str = "sip:1001@sip.local",
) -> bytes:
    to = "<sip:1001@sip.local>" + (f";tag={to_tag}" if to_tag else "")
    lines = [f"{method} {ruri} SIP/2.0"]
    lines += [f"Via: {v}" for v in vias]
    lines += [
        "Max-Forwards: 70",
        f"To: {to}",
        'From: "Alice" <sip:alice@sip.local>;tag=1928301774',
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
    ]
    lines.append(f"CSeq: 314159 {method}")
    text = "\r\n".join(lines) + "\r\n" + extra + "Content-Length: 0\r\n\r\n"
    return text.encode()


def sip_response(status: int = 200, reason: str = "OK", method: str = "INVITE") -> bytes:
    return (
        f"SIP/2.0 {status} {reason}\r\n"
        f"Via: {VIA_1}\r\n"
        "To: <sip:1001@sip.local>;tag=xyz\r\n"
        'From: "Alice" <sip:alice@sip.local>;tag=1928301774\r\n'
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
        f"CSeq: 314159 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def message_request(
    raw: bytes,
    *,
    listening_points: tuple[tuple[str, int, str], ...] = (("0.0.0.0", 5060, "UDP"), ("0.0.0.0", 5062, "WS")),
    localnets: tuple[str, ...] = ("10.0.0.1/8",),
    external_addrs: tuple[str, ...] = ("203.0.113.1",),
    metadata: dict[str, str] | None = None,
) -> processor_pb2.MessageRequest:
    return make_message_request(
        parse(raw),
        edge_port_ref="ep1",
        sender=("198.51.100.7", 40000, "UDP"),
        listening_points=listening_points,
        localnets=localnets,
        external_addrs=external_addrs,
        metadata=metadata,
    )


def wire(resp: processor_pb2.MessageResponse) -> Request | Response:
    """What the EdgePort would send: converted back to SIP, serialized, and parsed again."""
    return parse(bytes(from_proto(resp.message)))


def wire_response(resp: processor_pb2.MessageResponse) -> Response:
    msg = wire(resp)
    assert isinstance(msg, Response)
    return msg
