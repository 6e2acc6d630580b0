"""In-process media relay for integration tests: the shipped EdgePort and Connect (tests/support/phones.py) with
the dispatcher's routing (``DispatchRuntime``) running the RTPEngine middleware as a post-processor, and small SIP
and RTP helpers (SDP bodies, a UDP socket that sends and counts RTP).
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from routr_ray.config.dispatcher import DispatcherConfig, MiddlewareConfig, ProcessorConfig
from routr_ray.config.media import MediaRelayConfig, RtpEngineInstance
from routr_ray.config.resources import Forking
from routr_ray.dispatch.runtime import Batching, DispatchRuntime
from routr_ray.edge.edgeport import EdgePort
from routr_ray.media.middleware import RtpEngineMiddleware
from routr_ray.processors.connect import ConnectProcessor
from routr_ray.processors.sdk import Processor, drop
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request, Response, parse
from routr_ray.sip.transaction_messages import build_ack
from tests.support.phones import Phone, shipped_edge
from tests.support.rtpengine import RtpEngineServer

CONNECT_METHODS = ("REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "PRACK", "UPDATE", "INFO")


def media_config(engines: Sequence[RtpEngineServer], *, timeout: float = 0.5, retries: int = 1,
                 ping_interval: float = 0.5) -> MediaRelayConfig:
    return MediaRelayConfig(
        rtpengines=tuple(RtpEngineInstance(f"rtpengine-{i + 1}", e.addr) for i, e in enumerate(engines)),
        timeout_seconds=timeout, retries=retries, ping_interval_seconds=ping_interval, retry_after_seconds=7)


def dispatcher_config(*, internal: bool = True, responses: str = "requested") -> DispatcherConfig:
    return DispatcherConfig(
        processors=(ProcessorConfig("connect-processor", "serve://connect", CONNECT_METHODS),),
        middlewares=(MiddlewareConfig("media-relay", "serve://rtpengine", post_processor=True,
                                      internal_metadata=internal, responses=responses),),
    )


@dataclass
class MediaStack:
    edge: EdgePort
    relay: RtpEngineMiddleware
    runtime: DispatchRuntime
    exchanges: list[tuple[processor_pb2.MessageRequest, processor_pb2.MessageResponse]]  # what went through

    @property
    def server(self) -> tuple[str, int]:
        return ("127.0.0.1", self.edge.address("udp")[1])


@asynccontextmanager
async def media_edge(config: MediaRelayConfig, *, forking: Forking | None = None,
                     dispatcher: DispatcherConfig | None = None) -> AsyncIterator[MediaStack]:
    relay = RtpEngineMiddleware(config)
    await relay.start()
    holder: dict[str, DispatchRuntime] = {}
    exchanges: list[tuple[processor_pb2.MessageRequest, processor_pb2.MessageResponse]] = []

    def dispatch(connect: ConnectProcessor):  # type: ignore[no-untyped-def]
        processors: dict[str, Processor] = {"connect": connect, "rtpengine": relay}

        def deployment_send(name: str):  # type: ignore[no-untyped-def]
            processor = processors[name]

            async def send(requests: list[processor_pb2.MessageRequest]) -> list[processor_pb2.MessageResponse]:
                return await processor.process_batch(requests)

            return send

        runtime = DispatchRuntime(deployment_send, batching=Batching(max_batch=1))
        runtime.apply(dispatcher or dispatcher_config())
        holder["runtime"] = runtime

        async def handle(request: processor_pb2.MessageRequest) -> processor_pb2.MessageResponse:
            (result,) = await runtime.handle_batch([request])
            out = result if result is not None else drop()
            exchanges.append((request, out))
            return out

        return handle

    try:
        async with shipped_edge(forking=forking, dispatch=dispatch) as edge:
            yield MediaStack(edge, relay, holder["runtime"], exchanges)
    finally:
        await relay.close()


# ---- SIP ------------------------------------------------------------------------------------------------------


def sdp(address: str, port: int, *, session: str = "1") -> str:
    return ("v=0\r\n"
            f"o=- {session} 1 IN IP4 {address}\r\n"
            "s=-\r\n"
            f"c=IN IP4 {address}\r\n"
            "t=0 0\r\n"
            f"m=audio {port} RTP/AVP 0 101\r\n"
            "a=rtpmap:0 PCMU/8000\r\n"
            "a=rtpmap:101 telephone-event/8000\r\n"
            "a=sendrecv\r\n")


def with_sdp(message: Request | Response, body: str) -> Request | Response:
    out = message.copy()
    out.headers.set("Content-Type", "application/sdp")
    out.set_body(body.encode())
    return out


def media_of(message: Request | Response) -> tuple[str, int, str]:
    """(c= address, m=audio port, protocol) of a message's SDP."""
    address, port, proto = "", 0, ""
    for line in message.body.decode().splitlines():
        if line.startswith("c=") and not address:
            address = line.split()[2]
        elif line.startswith("m=audio"):
            parts = line.split()
            port, proto = int(parts[1]), parts[2]
    return address, port, proto


def answer(request: Request, status: int, reason: str, *, tag: str, contact: str, body: str | None = None
           ) -> Response:
    """The UAS's response to ``request`` (Via, From, To + tag, Call-ID, CSeq, Record-Route copied)."""
    lines = [f"SIP/2.0 {status} {reason}"]
    lines += [f"Via: {v}" for v in request.headers.get_all("Via")]
    lines += [f"Record-Route: {r}" for r in request.headers.get_all("Record-Route")]
    to = request.headers.get("To") or ""
    lines += [f"From: {request.headers.get('From')}", f"To: {to};tag={tag}" if ";tag=" not in to else f"To: {to}",
              f"Call-ID: {request.call_id}", f"CSeq: {request.headers.get('CSeq')}", f"Contact: <{contact}>"]
    head = "\r\n".join(lines) + "\r\n"
    if body is None:
        data = (head + "Content-Length: 0\r\n\r\n").encode()
    else:
        data = (head + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n" + body).encode()
    response = parse(data)
    assert isinstance(response, Response)
    return response


# ---- RTP ------------------------------------------------------------------------------------------------------


@dataclass
class RtpPort(asyncio.DatagramProtocol):
    """A UDP socket on 127.0.0.1 that sends RTP (PCMU, 20 ms of silence each) and counts what it receives."""

    received: list[tuple[bytes, tuple[str, int]]] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None
    sequence: int = 0

    @classmethod
    async def open(cls) -> RtpPort:
        _, port = await asyncio.get_running_loop().create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0),
                                                                            family=socket.AF_INET)
        return port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, addr))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, to: tuple[str, int], count: int = 1) -> None:
        assert self.transport is not None
        for _ in range(count):
            self.sequence += 1
            header = struct.pack("!BBHII", 0x80, 0, self.sequence & 0xFFFF, self.sequence * 160, 0x1234ABCD)
            self.transport.sendto(header + b"\xff" * 160, to)

    async def stream(self, to: tuple[str, int], seconds: float) -> None:
        """Send a packet every 20 ms for ``seconds``."""
        for _ in range(int(seconds / 0.02)):
            self.send(to)
            await asyncio.sleep(0.02)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


# ---- calls through the stack (integration and attack tests) ------------------------------------------------


class Callee:
    """A contact of 1002 with an RTP socket: answers with SDP that names a private address (a phone behind NAT)."""

    def __init__(self, phone: Phone, rtp: RtpPort, lan: str = "192.168.1.20") -> None:
        self.phone, self.rtp, self.lan = phone, rtp, lan
        self.invite: Request | None = None
        self.source: tuple[str, int] | None = None

    @property
    def tag(self) -> str:
        return f"callee{self.phone.port}"

    async def ringing(self) -> Request:
        invite, source = await self.phone.request_of("INVITE")
        self.invite, self.source = invite, source
        self.reply(180)
        return invite

    def reply(self, status: int, request: Request | None = None, *, with_media: bool | None = None) -> Response:
        request = request or self.invite
        assert request is not None and self.source is not None
        body = sdp(self.lan, self.rtp.port, session="2") if (with_media if with_media is not None
                                                              else status == 200 and request.method == "INVITE") else None
        reason = {180: "Ringing", 200: "OK", 486: "Busy Here", 487: "Request Terminated"}.get(status, "X")
        response = answer(request, status, reason, tag=self.tag, contact=f"sip:1002@127.0.0.1:{self.phone.port}",
                          body=body)
        self.phone.send(response, self.source)
        return response

    async def expect_cancel(self) -> None:
        cancel, _ = await self.phone.request_of("CANCEL")
        self.reply(200, cancel)
        self.reply(487)
        await self.phone.request_of("ACK")


async def setup(stack: MediaStack, contacts: int = 1) -> tuple[Phone, RtpPort, list[Callee]]:
    callees = []
    for _ in range(contacts):
        phone = await Phone.open("127.0.0.1")
        assert (await phone.register("1002", stack.server)).status == 200
        callees.append(Callee(phone, await RtpPort.open()))
    caller = await Phone.open("127.0.0.1")
    assert (await caller.register("1001", stack.server)).status == 200
    return caller, await RtpPort.open(), callees


async def dial(stack: MediaStack, caller: Phone, rtp: RtpPort, call_id: str, *, offer: bool = True) -> Request:
    """1001 calls 1002 with an SDP naming 10.0.0.5 (its LAN address), or none (``offer=False``: a late offer):
    INVITE, 407, ACK, INVITE with credentials."""
    invite = caller.request("INVITE", "sip:1002@sip.local", "1001", "sip:1002@sip.local", call_id=call_id)
    if offer:
        invite = with_sdp(invite, sdp("10.0.0.5", rtp.port))  # type: ignore[assignment]
    caller.send(invite, stack.server)
    challenge, _ = await caller.final()
    assert challenge.status == 407
    caller.send(build_ack(invite, challenge), stack.server)
    authorized = caller.answer_challenge(invite, challenge, "1001")
    caller.send(authorized, stack.server)
    return authorized


async def ok_of(caller: Phone, invite: Request | None = None, server: tuple[str, int] | None = None) -> Response:
    """The next final response; a non-2xx to ``invite`` is ACKed (hop by hop, RFC 3261 §17.1.1.3)."""
    while True:
        message, _ = await caller.recv()
        if isinstance(message, Response) and message.status >= 200:
            if message.status >= 300 and invite is not None and server is not None:
                caller.send(build_ack(invite, message), server)
            return message


def ack_for(invite: Request, ok: Response, caller: Phone) -> Request:
    """The 2xx ACK (a new transaction, RFC 3261 §13.2.2.4) along the route set of the 200."""
    routes = list(reversed(ok.headers.get_all("Record-Route")))
    contact = ok.contacts[0].uri
    lines = [f"ACK {contact} SIP/2.0",
             f"Via: SIP/2.0/UDP 127.0.0.1:{caller.port};rport;branch=z9hG4bKack{int(time.time() * 1000)}",
             "Max-Forwards: 70", f"From: {invite.headers.get('From')}", f"To: {ok.headers.get('To')}",
             f"Call-ID: {invite.call_id}", f"CSeq: {invite.cseq.seq if invite.cseq else 1} ACK"]
    lines += [f"Route: {r}" for r in routes]
    ack = parse(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())
    assert isinstance(ack, Request)
    return ack


def in_dialog(method: str, invite: Request, ok: Response, caller: Phone, cseq: int, body: str | None = None
              ) -> Request:
    """A request of the caller inside the dialog of ``ok`` (route set, remote target, tags), CSeq ``cseq``."""
    routes = list(reversed(ok.headers.get_all("Record-Route")))
    lines = [f"{method} {ok.contacts[0].uri} SIP/2.0",
             f"Via: SIP/2.0/UDP 127.0.0.1:{caller.port};rport;branch=z9hG4bK{method.lower()}{cseq}"
             f"{int(time.time() * 1000)}",
             "Max-Forwards: 70", f"From: {invite.headers.get('From')}", f"To: {ok.headers.get('To')}",
             f"Call-ID: {invite.call_id}", f"CSeq: {cseq} {method}",
             f"Contact: <sip:1001@127.0.0.1:{caller.port}>"]
    lines += [f"Route: {r}" for r in routes]
    head = "\r\n".join(lines) + "\r\n"
    if body is None:
        data = head + "Content-Length: 0\r\n\r\n"
    else:
        data = head + f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n" + body
    request = parse(data.encode())
    assert isinstance(request, Request)
    return request


def bye_for(invite: Request, ok: Response, caller: Phone) -> Request:
    ack = ack_for(invite, ok, caller)
    text = bytes(ack).decode().replace("ACK ", "BYE ", 1).replace(" ACK\r\n", " BYE\r\n")
    text = text.replace(";branch=z9hG4bKack", ";branch=z9hG4bKbye")
    seq = (invite.cseq.seq if invite.cseq else 1) + 1
    text = text.replace(f"CSeq: {seq - 1} BYE", f"CSeq: {seq} BYE")
    bye = parse(text.encode())
    assert isinstance(bye, Request)
    return bye


async def wait_for(condition, within: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def close(*things) -> None:  # type: ignore[no-untyped-def]
    for thing in things:
        thing.close()
