"""An in-process EdgePort + Connect on real loopback sockets, for the Connect attacks of issue 14 (no Ray: the
EdgePort's dispatcher is Connect's `process`, as the dispatcher would call it). SIP users are plain sockets that
write what an attacker writes.

Resources: Domain sip.local (ACL: loopback only) with agents 1001, 1002, 1003 (password secret<user>); trunk-01
whose outbound URI is a UDP socket of the test (the "carrier"), with outbound credentials, reached for numbers
matching `^\\+?1[0-9]{10}$`; no other way out.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from routr_ray.config import Resources
from routr_ray.config.resources import (
    AccessControlList,
    Agent,
    Credentials,
    Domain,
    EgressPolicy,
    Number,
    Trunk,
    TrunkInbound,
    TrunkOutbound,
    TrunkUri,
)
from routr_ray.edge.dispatcher_client import PROCESSOR_METADATA_KEY, FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions
from routr_ray.location.local_client import LocalLocationClient
from routr_ray.location.service import LocationService
from routr_ray.processors.connect import ConnectProcessor
from routr_ray.processors.connect.connect_token import ConnectTokenVerifier
from routr_ray.proto.gen import location_pb2, processor_pb2
from routr_ray.sip import Request, Response, StreamFramer, parse
from routr_ray.sip.digest import answer_challenge
from tests.integration.test_edgeport import FAST, UdpPeer, config

DOMAIN = "sip.local"
PASSWORDS = {"1001": "secret1001", "1002": "secret1002", "1003": "secret1003"}
PREMIUM = "+19005550100"
_seq = itertools.count(1)


def resources(carrier_port: int) -> Resources:
    loopback = (ipaddress.ip_network("127.0.0.0/8"),)
    return Resources(
        domains=(Domain("domain-1", "Local", DOMAIN, "acl-loopback", (EgressPolicy(r"^\+?1[0-9]{10}$", "number-1"),)),),
        agents=tuple(Agent(f"agent-{u}", u, u, "domain-1", f"cred-{u}") for u in PASSWORDS),
        credentials=(*(Credentials(f"cred-{u}", u, u, p) for u, p in PASSWORDS.items()),
                     Credentials("cred-trunk", "trunk", "pbx-1", "trunk-password")),
        numbers=(Number("number-1", "DID", "tel:+17066041487", "trunk-1", f"sip:1001@{DOMAIN}"),),
        trunks=(Trunk("trunk-1", "Carrier", TrunkInbound("trunk01.sip.local", "acl-carrier"),
                      TrunkOutbound((TrunkUri("127.0.0.1", carrier_port, "udp"),), credentials_ref="cred-trunk")),),
        access_control_lists=(
            AccessControlList("acl-loopback", "loopback", allow=loopback, deny=(ipaddress.ip_network("0.0.0.0/0"),)),
            AccessControlList("acl-carrier", "carrier", allow=(ipaddress.ip_network("127.0.0.9/32"),),
                              deny=(ipaddress.ip_network("0.0.0.0/0"),)),
        ),
    )


@dataclass
class Clock:
    offset: float = 0.0

    def __call__(self) -> float:
        import time

        return time.time() + self.offset


@dataclass
class Stack:
    edge: EdgePort
    connect: ConnectProcessor
    location: LocalLocationClient
    clock: Clock
    carrier: UdpPeer  # the trunk's outbound address: nothing may reach it unless an authorised INVITE chose it
    received: list[processor_pb2.MessageRequest] = field(default_factory=list)

    @property
    def udp(self) -> tuple[str, int]:
        return self.edge.address("udp")

    async def contacts(self, user: str) -> list[str]:
        found = await self.location.find_routes(location_pb2.FindRoutesRequest(aor=f"sip:{user}@{DOMAIN}"))
        return [r.contact_uri for r in found.routes]


@asynccontextmanager
async def connect_stack(connect_tokens: ConnectTokenVerifier | None = None) -> AsyncIterator[Stack]:
    """``connect_tokens``: web agents with X-Connect-Token on (tests/attack/test_connect_token_attacks.py)."""
    carrier = await UdpPeer.open()
    clock = Clock()
    location = LocalLocationClient([LocationService(sweep_interval=0)])
    connect = ConnectProcessor(resources(carrier.port), location, nonce_key=b"attack-suite-key" * 2, clock=clock,
                               connect_tokens=connect_tokens)
    received: list[processor_pb2.MessageRequest] = []

    async def dispatch(mreq: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
        received.append(mreq)
        resp = await connect.process(mreq)
        resp.metadata[PROCESSOR_METADATA_KEY] = "connect"
        return resp

    edge = EdgePort(config(), FakeDispatcher(dispatch), options=EdgePortOptions(timers=FAST, cancel_wait=0.4))
    await edge.start()
    try:
        yield Stack(edge, connect, location, clock, carrier, received)
    finally:
        await edge.stop()
        carrier.close()


# ---- a UA that writes what it likes -------------------------------------------------------------------


def message(method: str, ruri: str, *, via: str, from_: str, to: str, call_id: str, cseq: int,
            contact: str | None = None, routes: list[str] = (), extra: list[str] = (),  # type: ignore[assignment]
            branch: str | None = None) -> bytes:
    branch = branch or f"z9hG4bK{next(_seq)}atk"
    lines = [f"{method} {ruri} SIP/2.0", f"Via: {via};rport;branch={branch}", "Max-Forwards: 70",
             f"From: {from_}", f"To: {to}", f"Call-ID: {call_id}", f"CSeq: {cseq} {method}"]
    if contact:
        lines.append(f"Contact: {contact}")
    lines += [f"Route: {r}" for r in routes]
    lines += list(extra)
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def reply(request: Request, status: int, reason: str, *, to_tag: str | None = None,
          contact: str | None = None) -> bytes:
    """A UAS's answer (RFC 3261 §8.2.6): Via, From, To (+tag), Call-ID, CSeq copied."""
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in request.headers.get_all("Via")]
    lines += [f"Record-Route: {v}" for v in request.headers.get_all("Record-Route")]
    to = request.headers.get("To") or ""
    lines += [f"From: {request.headers.get('From')}", f"To: {to}" + (f";tag={to_tag}" if to_tag else ""),
              f"Call-ID: {request.call_id}", f"CSeq: {request.headers.get('CSeq')}"]
    if contact:
        lines.append(f"Contact: {contact}")
    lines += ["Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


class Phone:
    """A UDP phone for `user` on its own socket (source address `host`)."""

    def __init__(self, user: str, peer: UdpPeer, stack: Stack, host: str = "127.0.0.1") -> None:
        self.user, self.peer, self.stack, self.host = user, peer, stack, host
        self.cseq = 0

    @classmethod
    async def open(cls, user: str, stack: Stack, host: str = "127.0.0.1") -> Phone:
        return cls(user, await UdpPeer.open(host), stack, host)

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@{DOMAIN}"

    @property
    def contact(self) -> str:
        return f"<sip:{self.user}@{self.host}:{self.peer.port}>"

    @property
    def via(self) -> str:
        return f"SIP/2.0/UDP {self.host}:{self.peer.port}"

    def send(self, data: bytes) -> None:
        self.peer.send(data, self.stack.udp)

    async def final(self, timeout: float = 3.0) -> Response:  # noqa: ASYNC109
        return await self.peer.recv_final(timeout)

    async def request(self, method: str, ruri: str, *, to: str, call_id: str, from_tag: str = "ft",
                      to_tag: str | None = None, routes: list[str] = (), extra: list[str] = (),  # type: ignore[assignment]
                      contact: str | None = None, authorization: str | None = None) -> Response:
        """Send a request and return its final answer (no challenge answered; a failed INVITE is ACKed, RFC 3261
        §17.1.1.3, so that the EdgePort stops retransmitting the answer)."""
        self.cseq += 1
        headers = list(extra) + ([authorization] if authorization else [])
        branch = f"z9hG4bK{next(_seq)}ua"
        sender_from = f"<{self.uri}>;tag={from_tag}"
        self.send(message(method, ruri, via=self.via, from_=sender_from,
                          to=f"<{to}>" + (f";tag={to_tag}" if to_tag else ""), call_id=call_id, cseq=self.cseq,
                          contact=contact or self.contact, routes=routes, extra=headers, branch=branch))
        answer = await self.final()
        if method == "INVITE" and answer.status >= 300:
            self.send(message("ACK", ruri, via=self.via, from_=sender_from, to=answer.headers.get("To") or "",
                              call_id=call_id, cseq=self.cseq, routes=routes, branch=branch))
        return answer

    async def authenticated(self, method: str, ruri: str, *, to: str, call_id: str, from_tag: str = "ft",
                            extra: list[str] = (), contact: str | None = None) -> Response:  # type: ignore[assignment]
        """Send, answer the challenge with the user's password, return the final answer to the second try."""
        first = await self.request(method, ruri, to=to, call_id=call_id, from_tag=from_tag, extra=extra,
                                   contact=contact)
        assert first.status in (401, 407), f"expected a challenge, got {first.status} {first.reason}"
        return await self.request(method, ruri, to=to, call_id=call_id, from_tag=from_tag, extra=extra,
                                  contact=contact, authorization=self.answer(first, method, ruri))

    def answer(self, challenge: Response, method: str, ruri: str) -> str:
        name = "WWW-Authenticate" if challenge.status == 401 else "Proxy-Authenticate"
        value = challenge.headers.get(name)
        assert value is not None
        credentials = answer_challenge(value, method=method, uri=ruri, username=self.user,
                                       password=PASSWORDS[self.user])
        assert credentials is not None
        return f"{'Authorization' if challenge.status == 401 else 'Proxy-Authorization'}: {credentials}"

    async def register(self) -> str:
        """REGISTER with digest; returns the Authorization header line that succeeded."""
        call_id = f"reg-{self.user}-{self.peer.port}"
        first = await self.request("REGISTER", f"sip:{DOMAIN}", to=self.uri, call_id=call_id)
        assert first.status == 401, first
        authorization = self.answer(first, "REGISTER", f"sip:{DOMAIN}")
        ok = await self.request("REGISTER", f"sip:{DOMAIN}", to=self.uri, call_id=call_id,
                                authorization=authorization)
        assert ok.status == 200, f"{ok.status} {ok.reason}"
        return authorization

    def close(self) -> None:
        self.peer.close()


@dataclass
class Call:
    """An answered 1001 → 1002 call: what each side knows of the dialog."""

    call_id: str
    caller_tag: str
    callee_tag: str
    route_set: list[str]  # the caller's (reversed Record-Route, RFC 3261 §12.1.2)
    invite: Request  # as the callee received it


async def answered_call(caller: Phone, callee: Phone, *, extra: list[str] = ()) -> Call:  # type: ignore[assignment]
    """caller INVITEs callee.uri with digest; the callee answers 200 and gets the ACK."""
    call_id = f"call-{next(_seq)}@attack"
    target = callee.uri
    first = await caller.request("INVITE", target, to=target, call_id=call_id, from_tag="caller", extra=extra)
    assert first.status == 407, first
    caller.cseq += 1
    caller.send(message("INVITE", target, via=caller.via, from_=f"<{caller.uri}>;tag=caller", to=f"<{target}>",
                        call_id=call_id, cseq=caller.cseq, contact=caller.contact,
                        extra=[*extra, caller.answer(first, "INVITE", target)]))
    invite = await callee.peer.recv()
    assert isinstance(invite, Request) and invite.method == "INVITE", invite
    callee.peer.send(reply(invite, 200, "OK", to_tag="callee", contact=callee.contact), callee.stack.udp)
    ok = await caller.final()
    assert ok.status == 200, ok
    route_set = [v for v in reversed(ok.headers.get_all("Record-Route"))]
    caller.send(message("ACK", f"sip:{callee.user}@{callee.host}:{callee.peer.port}", via=caller.via,
                        from_=f"<{caller.uri}>;tag=caller", to=f"<{target}>;tag=callee", call_id=call_id,
                        cseq=caller.cseq, routes=route_set))
    ack = await callee.peer.recv()
    assert isinstance(ack, Request) and ack.method == "ACK", ack
    return Call(call_id, "caller", "callee", route_set, invite)


async def nothing_arrives(peer: UdpPeer, seconds: float = 0.5) -> None:
    """Assert that `peer` receives nothing within `seconds`."""
    try:
        got = await peer.recv(seconds)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected message reached {peer.port}: {got!r}")


class TcpPhone:
    """A phone registered over TCP: its connection is the only way to reach it (the victim of flow injection)."""

    def __init__(self, user: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.user, self.reader, self.writer = user, reader, writer
        self.framer = StreamFramer()
        self.pending: list[bytes] = []
        self.port = int(writer.get_extra_info("sockname")[1])

    @classmethod
    async def register(cls, user: str, stack: Stack) -> TcpPhone:
        phone = cls(user, *await asyncio.open_connection(*stack.edge.address("tcp")))
        call_id, ruri = f"reg-tcp-{user}", f"sip:{DOMAIN}"
        contact = f"<sip:{user}@127.0.0.1:{phone.port};transport=tcp>"
        via = f"SIP/2.0/TCP 127.0.0.1:{phone.port}"
        uri = f"sip:{user}@{DOMAIN}"
        phone.writer.write(message("REGISTER", ruri, via=via, from_=f"<{uri}>;tag=r", to=f"<{uri}>",
                                   call_id=call_id, cseq=1, contact=contact))
        first = await phone.recv()
        assert isinstance(first, Response) and first.status == 401
        value = first.headers.get("WWW-Authenticate") or ""
        credentials = answer_challenge(value, method="REGISTER", uri=ruri, username=user, password=PASSWORDS[user])
        phone.writer.write(message("REGISTER", ruri, via=via, from_=f"<{uri}>;tag=r", to=f"<{uri}>",
                                   call_id=call_id, cseq=2, contact=contact,
                                   extra=[f"Authorization: {credentials}"]))
        ok = await phone.recv()
        assert isinstance(ok, Response) and ok.status == 200, ok
        return phone

    async def recv(self, timeout: float = 2.0) -> Request | Response:  # noqa: ASYNC109
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            assert data, "connection closed"
            self.pending.extend(u for u in self.framer.feed(data) if isinstance(u, bytes))
        return parse(self.pending.pop(0))

    async def nothing_arrives(self, seconds: float = 0.5) -> None:
        try:
            data = await asyncio.wait_for(self.reader.read(65536), seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected bytes on {self.user}'s connection: {data[:200]!r}")

    def close(self) -> None:
        self.writer.close()
