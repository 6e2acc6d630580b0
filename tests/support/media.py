"""In-process media relay for integration tests: the shipped EdgePort and Connect (tests/support/phones.py) with
the dispatcher's routing (``DispatchRuntime``) running the RTPEngine middleware as a post-processor, and small SIP
and RTP helpers (SDP bodies, a UDP socket that sends and counts RTP).
"""

from __future__ import annotations

import asyncio
import socket
import struct
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
from tests.support.phones import shipped_edge
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
