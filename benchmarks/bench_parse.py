"""Parse-only benchmark of routr_ray.sip: messages/s on one core (process CPU time, best of N).

    python benchmarks/bench_parse.py [--seconds 1.0] [--repeat 5]

Prints msgs/s for a REGISTER and for an INVITE with SDP, for ``parse`` (which already validates and
caches Via/From/To/CSeq/Call-ID), ``parse`` + reading those views, and ``parse`` + ``bytes()`` (both an
unmodified message and one with a header changed, which forces a rebuild).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from routr_ray.sip import parse

REGISTER = (
    b"REGISTER sip:sip.local SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-524287-1---a1b2c3d4e5f6;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'Contact: <sip:1001@192.168.1.10:5060;transport=udp>;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"\r\n'
    b'To: "1001" <sip:1001@sip.local>\r\n'
    b'From: "1001" <sip:1001@sip.local>;tag=3f1a9c2e\r\n'
    b"Call-ID: Zjk3MTNhZDQ4ZWYxNzE3NjA1YzE2ZTI0ZDAzNzk0YTE.\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Expires: 600\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n"
    b"Supported: replaces, outbound, gruu\r\n"
    b"User-Agent: Z 5.6.1 v2.10.20.1\r\n"
    b"Allow-Events: presence, kpml, talk\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)

_SDP = (
    b"v=0\r\no=- 3911 3911 IN IP4 192.168.1.10\r\ns=-\r\nc=IN IP4 192.168.1.10\r\nt=0 0\r\n"
    b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
INVITE = (
    b"INVITE sip:1002@sip.local SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-proxy-88a7f;rport\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-524287-1---9f8e7d6c;received=192.168.1.10;rport=5060\r\n"
    b"Record-Route: <sip:10.0.0.1;lr>\r\n"
    b"Max-Forwards: 69\r\n"
    b"Contact: <sip:1001@192.168.1.10:5060;transport=udp>\r\n"
    b'To: <sip:1002@sip.local>\r\n'
    b'From: "1001" <sip:1001@sip.local>;tag=9a8b7c6d\r\n'
    b"Call-ID: NzA3YjU0ZDVjMmE5ZDIyMTk0YmFlYmE2NjQ1YjI1ZjM.\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: Z 5.6.1 v2.10.20.1\r\n"
    b"Content-Length: " + str(len(_SDP)).encode() + b"\r\n"
    b"\r\n" + _SDP
)


def _parse_only(data: bytes) -> None:
    parse(data)


def _parse_and_read(data: bytes) -> tuple[object, ...]:
    m = parse(data)
    return (m.via[0].branch, m.from_.tag, m.to.tag, m.cseq.seq, m.call_id)  # type: ignore[union-attr]


def _parse_and_bytes(data: bytes) -> None:
    bytes(parse(data))


def _parse_modify_bytes(data: bytes) -> None:
    m = parse(data)
    m.headers.prepend("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK-bench")
    bytes(m)


def rate(fn: Callable[[bytes], object], data: bytes, seconds: float, repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        n = 0
        start = time.process_time()
        deadline = start + seconds
        while True:
            for _ in range(200):
                fn(data)
            n += 200
            now = time.process_time()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cases = [("parse", _parse_only), ("parse+views", _parse_and_read), ("parse+bytes()", _parse_and_bytes),
             ("parse+prepend Via+bytes()", _parse_modify_bytes)]
    for name, data in (("REGISTER", REGISTER), ("INVITE+SDP", INVITE)):
        for label, fn in cases:
            r = rate(fn, data, args.seconds, args.repeat)
            print(f"{name:11} {len(data):5d} B  {label:26} {r:10,.0f} msgs/s  {1e6 / r:6.1f} us/msg")


if __name__ == "__main__":
    main()
