"""Micro-benchmark: SIP <-> Routr protobuf conversion on one core (issue 2 item 7).

    python benchmarks/bench_proto.py [--seconds 1.0] [--repeat 5]

For a REGISTER and an INVITE with SDP it prints msgs/s (best of ``--repeat`` runs, on process CPU time) for:
  parse                 bytes -> routr_ray.sip message
  to_proto              message -> SIPMessage (fresh message each time, typed views not yet parsed)
  proto wire            SerializeToString + FromString
  from_proto+bytes      SIPMessage -> message -> bytes
  round trip            bytes -> parse -> to_proto -> bytes -> proto -> from_proto -> bytes   (the target),
                        for the same message again and again (converted values all come from the value
                        cache) and for a fresh transaction each time (new branches, tags, Call-ID, Contact:
                        only R-URI, To and Record-Route recur); "make fresh tx only" is the cost of making
                        the fresh message, included in the fresh figure. ".. with to_sip_bytes" ends with
                        to_sip_bytes(pm) (bytes without building a Message) instead of bytes(from_proto(pm)).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routr_ray.proto.convert import from_proto, to_proto, to_sip_bytes  # noqa: E402
from routr_ray.proto.gen.sipmessage_pb2 import SIPMessage  # noqa: E402
from routr_ray.sip.parser import parse  # noqa: E402

REGISTER = (
    b"REGISTER sip:sip.local SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-524287-1---b8c5f2ff5bf4b1c2;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:1001@192.0.2.10:5060;transport=udp;ob>;+sip.instance=\"<urn:uuid:0b6b5d3c-1>\";reg-id=1\r\n"
    b"To: <sip:1001@sip.local>\r\n"
    b"From: <sip:1001@sip.local>;tag=3f2a9b1c\r\n"
    b"Call-ID: 7dIrXsJhAUO_KxA2C8ZbmQ..\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Expires: 600\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n"
    b"Supported: replaces, outbound, gruu\r\n"
    b"User-Agent: Zoiper rv2.10.19.5\r\n"
    b"Authorization: Digest username=\"1001\",realm=\"sip.local\",nonce=\"1716912345.abcdef0123456789\","
    b"uri=\"sip:sip.local\",response=\"5c6f1a2b3c4d5e6f708192a3b4c5d6e7\",cnonce=\"a1b2c3\",nc=00000001,"
    b"qop=auth,algorithm=MD5\r\n"
    b"Content-Length: 0\r\n\r\n"
)
SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
INVITE = (
    b"INVITE sip:1002@sip.local SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport=5060;received=203.0.113.7\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;rport\r\n"
    b"Record-Route: <sip:10.0.0.1;r2=on;lr>\r\n"
    b"Max-Forwards: 69\r\n"
    b"To: <sip:1002@sip.local>\r\n"
    b"From: \"Alice\" <sip:1001@sip.local>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:1001@192.0.2.10:5060;ob>\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: Linphone/5.2\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)


def rate(fn: Callable[[], object], seconds: float, repeat: int) -> float:
    best = 0.0
    for _ in range(repeat):
        n = 0
        start = time.process_time()
        deadline = start + seconds
        while True:
            for _ in range(200):
                fn()
            n += 200
            now = time.process_time()
            if now >= deadline:
                break
        best = max(best, n / (now - start))
    return best


def fresh_variants(data: bytes) -> Callable[[], bytes]:
    """Each call returns the message with new Via branches, From tag, Call-ID and Contact user (a new
    transaction from a new caller), so only the values that really recur (R-URI, To, Record-Route) repeat."""
    template = (data.replace(b"z9hG4bK", b"z9hG4bK%(n)d-").replace(b";tag=", b";tag=%(n)d-")
                .replace(b"Call-ID: ", b"Call-ID: %(n)d-").replace(b"Contact: <sip:1001@", b"Contact: <sip:c%(n)d@"))
    counter = iter(range(10**12))
    return lambda: template % {b"n": next(counter)}


def cases(data: bytes) -> dict[str, Callable[[], object]]:
    pm = to_proto(parse(data))
    wire = pm.SerializeToString()
    fresh = fresh_variants(data)

    def round_trip(data: bytes) -> bytes:
        return bytes(from_proto(SIPMessage.FromString(to_proto(parse(data)).SerializeToString())))

    def round_trip_direct(data: bytes) -> bytes:
        return to_sip_bytes(SIPMessage.FromString(to_proto(parse(data)).SerializeToString()))

    assert parse(round_trip(data)).body == parse(data).body
    assert round_trip(sample := fresh()) == sample
    return {
        "parse": lambda: parse(data),
        "to_proto": lambda: to_proto(parse(data)),
        "proto wire": lambda: SIPMessage.FromString(pm.SerializeToString()),
        "from_proto+bytes": lambda: bytes(from_proto(SIPMessage.FromString(wire))),
        "round trip (same msg)": lambda: round_trip(data),
        "round trip (fresh tx)": lambda: round_trip(fresh()),
        "  .. with to_sip_bytes": lambda: round_trip_direct(fresh()),
        "make fresh tx only": fresh,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=5)
    ns = ap.parse_args()
    print(f"{'message':<10} {'operation':<22} {'msgs/s':>10} {'us/msg':>8}")
    for label, data in (("REGISTER", REGISTER), ("INVITE", INVITE)):
        for op, fn in cases(data).items():
            r = rate(fn, ns.seconds, ns.repeat)
            note = ""
            if op == "to_proto":
                note = "  (includes parse)"
            print(f"{label:<10} {op:<22} {r:>10,.0f} {1e6 / r:>8.1f}{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
