"""Fakes and builders shared by the Connect tests: a resource set, SIP requests as MessageRequests (through
routr_ray.proto.convert, as the EdgePort builds them), a digest client, and a processor on a real in-memory
Location. No tests here."""

from __future__ import annotations

import ipaddress
import itertools
import re
from dataclasses import dataclass, field

from routr_ray.config import Resources
from routr_ray.config.resources import (
    AccessControlList,
    Agent,
    BalancingAlgorithm,
    Credentials,
    Domain,
    EgressPolicy,
    ExtraHeader,
    LoadBalancing,
    Number,
    Peer,
    Privacy,
    Trunk,
    TrunkInbound,
    TrunkOutbound,
    TrunkUri,
)
from routr_ray.location.local_client import LocalLocationClient
from routr_ray.location.service import LocationService
from routr_ray.processors.connect import ConnectProcessor, FailureTracker
from routr_ray.proto.convert import make_message_request, read_message_response
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import parse
from routr_ray.sip.digest import DigestAlgorithm, compute_ha1, compute_response, parse_auth_params
from routr_ray.sip.message import Request, Response

KEY = b"k" * 32
EDGE = "edge-01"
LISTENING = [("0.0.0.0", 5060, "UDP"), ("0.0.0.0", 5060, "TCP"), ("0.0.0.0", 5062, "WS")]
LOCALNETS = ["127.0.0.1/8", "10.0.0.1/8", "192.168.1.1/16"]
EXTERNAL = ["203.0.113.10"]


def net(*texts: str) -> tuple[ipaddress.IPv4Network, ...]:
    return tuple(ipaddress.ip_network(t, strict=False) for t in texts)  # type: ignore[misc]


def resources() -> Resources:
    acl_local = AccessControlList("acl-local", "local", allow=net("127.0.0.0/8", "10.0.0.0/8", "192.168.0.0/16"),
                                  deny=net("0.0.0.0/0"))
    acl_trunk = AccessControlList("acl-trunk", "trunk", allow=net("198.51.100.0/24"), deny=net("0.0.0.0/0"))
    acl_peer = AccessControlList("acl-peer", "peer", allow=net("10.0.0.50/32"))
    return Resources(
        domains=(
            Domain("domain-01", "Local", "sip.local", "acl-local", (
                EgressPolicy(r"^\+?1\d{10}$", "number-01"),
            )),
            Domain("domain-02", "Other", "other.local"),
        ),
        agents=(
            Agent("agent-01", "John", "1001", "domain-01", "cred-01", privacy=Privacy.PRIVATE),
            Agent("agent-02", "Jane", "1002", "domain-01", "cred-02"),
            Agent("agent-03", "Max", "1003", "domain-01", "cred-03", max_contacts=1, expires=120),
            Agent("agent-04", "Otto", "2001", "domain-02", "cred-04"),
        ),
        credentials=(
            Credentials("cred-01", "c1", "1001", "1234"),
            Credentials("cred-02", "c2", "1002", "1234"),
            Credentials("cred-03", "c3", "1003", "1234"),
            Credentials("cred-04", "c4", "2001", "1234"),
            Credentials("cred-ast", "ca", "asterisk", "secret"),
            Credentials("cred-trunk-in", "ct", "provider", "pw"),
            Credentials("cred-trunk-out", "co", "pbx-1", "trunkpw"),
        ),
        peers=(
            Peer("peer-01", "Asterisk", "asterisk", "sip:conference@sip.local", credentials_ref="cred-ast",
                 load_balancing=LoadBalancing(BalancingAlgorithm.LEAST_SESSIONS, True)),
            Peer("peer-02", "Media", "media", "sip:media@sip.local", access_control_list_ref="acl-peer",
                 trust_asserted_identity=True),
        ),
        numbers=(
            Number("number-01", "DID 1", "tel:+17066041487", "trunk-01", "sip:1001@sip.local",
                   extra_headers=(ExtraHeader("X-Extra", "yes"),)),
            Number("number-02", "DID 2", "tel:+17066041488", "trunk-01", "sip:conference@sip.local",
                   session_affinity_header="X-Room-Id"),
            Number("number-03", "DID 3", "tel:+17066041489", "trunk-02", "sip:1002@sip.local"),
        ),
        trunks=(
            Trunk("trunk-01", "Provider", TrunkInbound("trunk01.provider.net", "acl-trunk"), TrunkOutbound((
                TrunkUri("sip.provider.net", 5070, "udp", priority=20, weight=10),
                TrunkUri("backup.provider.net", 5060, "udp", priority=10, weight=1, enabled=False),
                TrunkUri("primary.provider.net", 5060, "tcp", priority=10, weight=5),
            ), credentials_ref="cred-trunk-out"), trust_asserted_identity=True),
            Trunk("trunk-02", "Authenticated", TrunkInbound("trunk02.provider.net", None, "cred-trunk-in"),
                  TrunkOutbound((TrunkUri("out2.provider.net", 5060, "udp"),))),
        ),
        access_control_lists=(acl_local, acl_trunk, acl_peer),
    )


_counter = itertools.count(1)


def sip(method: str, ruri: str, *, from_: str, to: str, via: str = "SIP/2.0/UDP 10.0.0.5:5060",
        contact: str | None = None, call_id: str | None = None, cseq: int = 1, to_tag: str | None = None,
        extra: tuple[str, ...] = ()) -> Request:
    n = next(_counter)
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: {via};branch=z9hG4bK{n}x;rport",
        "Max-Forwards: 70",
        f"From: <{from_}>;tag=f{n}",
        f"To: <{to}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: {call_id or f'call-{n}'}",
        f"CSeq: {cseq} {method}",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    lines.extend(extra)
    lines += ["Content-Length: 0", "", ""]
    msg = parse("\r\n".join(lines).encode())
    assert isinstance(msg, Request)
    return msg


def to_message_request(msg: Request | Response, sender: tuple[str, int, str] = ("10.0.0.5", 5060, "UDP")
                       ) -> processor_pb2.MessageRequest:
    return make_message_request(msg, edge_port_ref=EDGE, sender=sender, listening_points=LISTENING,
                                external_addrs=EXTERNAL, localnets=LOCALNETS)


def authorize(request: Request, challenge: Response, username: str, password: str) -> Request:
    """A copy of `request` answering the challenge (qop=auth, MD5) as a client would, CSeq + 1."""
    header = "WWW-Authenticate" if challenge.status == 401 else "Proxy-Authenticate"
    answer = "Authorization" if challenge.status == 401 else "Proxy-Authorization"
    value = challenge.headers.get(header)
    assert value is not None, f"{challenge.status} without {header}"
    params = parse_auth_params(value.split(" ", 1)[1])
    realm, nonce = params["realm"], params["nonce"]
    uri = request.uri
    ha1 = compute_ha1(DigestAlgorithm.MD5, username, realm, password)
    response = compute_response(DigestAlgorithm.MD5, ha1=ha1, method=request.method, uri=uri, nonce=nonce,
                                qop="auth", nc="00000001", cnonce="abc")
    out = request.copy()
    assert isinstance(out, Request)
    out.headers.set(answer, f'Digest username="{username}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
                            f'response="{response}", algorithm=MD5, qop=auth, nc=00000001, cnonce="abc"')
    assert request.cseq is not None
    out.headers.set("CSeq", f"{request.cseq.seq + 1} {request.method}")
    return out


def record_route_texts(msg: Request) -> list[str]:
    """The Record-Route URIs of a forwarded request without their dialog token (asserted present)."""
    texts = []
    for na in msg.record_routes:
        assert na.uri.params.get("rrk"), f"Record-Route without a dialog token: {na.uri}"
        texts.append(re.sub(r";rrk=[^;>]*", "", str(na.uri)))
    return texts


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    clock: Clock = field(default_factory=Clock)
    always_401: bool = False
    failures: FailureTracker | None = None
    resources: Resources | None = None

    def __post_init__(self) -> None:
        self.service = LocationService(clock=self.clock, sweep_interval=0)
        self.location = LocalLocationClient([self.service])
        self.processor = ConnectProcessor(self.resources or resources(), self.location, nonce_key=KEY,
                                          always_401=self.always_401, failures=self.failures, clock=self.clock)

    async def send(self, msg: Request | Response, sender: tuple[str, int, str] = ("10.0.0.5", 5060, "UDP")
                   ) -> tuple[Request | Response, processor_pb2.MessageResponse]:
        resp = await self.processor.process(to_message_request(msg, sender))
        return read_message_response(resp), resp

    async def answer(self, msg: Request, sender: tuple[str, int, str] = ("10.0.0.5", 5060, "UDP")) -> Response:
        out, _ = await self.send(msg, sender)
        assert isinstance(out, Response), f"expected an answer, got a forwarded {out!r}"
        return out

    async def authed(self, msg: Request, username: str, password: str,
                     sender: tuple[str, int, str] = ("10.0.0.5", 5060, "UDP")
                     ) -> tuple[Request | Response, processor_pb2.MessageResponse]:
        """Send, expect a challenge, answer it and send again."""
        first = await self.answer(msg, sender)
        assert first.status in (401, 407), f"expected a challenge, got {first.status} {first.reason}"
        return await self.send(authorize(msg, first, username, password), sender)

    async def register(self, user: str, contact: str, *, password: str = "1234", domain: str = "sip.local",
                       sender: tuple[str, int, str] = ("10.0.0.5", 5060, "UDP"), extra: tuple[str, ...] = (),
                       via: str | None = None) -> Response:
        req = sip("REGISTER", f"sip:{domain}", from_=f"sip:{user}@{domain}", to=f"sip:{user}@{domain}",
                  contact=contact, extra=extra,
                  via=via or f"SIP/2.0/{sender[2]} {sender[0]}:{sender[1]}")
        out, _ = await self.authed(req, user, password, sender)
        assert isinstance(out, Response)
        return out
