"""Support for the dispatcher tests (no tests here): real MessageRequest protos, built as an EdgePort does."""

from __future__ import annotations

from routr_ray.proto.convert import make_message_request
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip.parser import parse


def sip_request(method: str = "INVITE", user: str = "1001", *, ruri_host: str = "sip.local",
                from_user: str = "alice", extra: str = "", to_tag: str = "") -> bytes:
    cseq_method = method
    return (
        f"{method} sip:{user}@{ruri_host} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport\r\n"
        "Via: SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bKa1\r\n"
        "Max-Forwards: 70\r\n"
        f"From: \"Alice\" <sip:{from_user}@sip.local>;tag=1928301774\r\n"
        f"To: <sip:{user}@sip.local>{';tag=' + to_tag if to_tag else ''}\r\n"
        "Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
        f"CSeq: 314159 {cseq_method}\r\n"
        "Contact: <sip:alice@192.0.2.10:5070;transport=tcp>\r\n"
        "User-Agent: Zoiper rv2.10\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def sip_response(status: int = 200, reason: str = "OK", method: str = "INVITE") -> bytes:
    return (
        f"SIP/2.0 {status} {reason}\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport=5060\r\n"
        "From: \"Alice\" <sip:alice@sip.local>;tag=1928301774\r\n"
        "To: <sip:1001@sip.local>;tag=a6c85cf\r\n"
        "Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
        f"CSeq: 314159 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def message_request(data: bytes | None = None, *, edge_port_ref: str = "ep1",
                    metadata: dict[str, str] | None = None,
                    sender: tuple[str, int, str] = ("10.0.0.1", 5060, "udp")) -> processor_pb2.MessageRequest:
    msg = parse(data if data is not None else sip_request())
    return make_message_request(
        msg, edge_port_ref=edge_port_ref, sender=sender,
        listening_points=[("192.0.2.1", 5060, "udp"), ("192.0.2.1", 5060, "tcp")],
        external_addrs=["203.0.113.1"], localnets=["10.0.0.0/8"], metadata=metadata)
