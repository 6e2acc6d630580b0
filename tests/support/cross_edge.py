"""Two EdgePorts of one cluster in one process (issue 17), the real Connect on config/ as shipped, real sockets.

`two_edges()` starts ``edgeport-01`` (UDP and TCP) and ``edgeport-02`` (TCP and WS), as the issue's "Done when"
has them, on free ports, both bound as shipped (``0.0.0.0``) unless told otherwise, in front of one Connect and
one in-memory Location, wired to each other by :class:`DirectPeers` (the actors wire them over the data plane,
``routr_ray/actors/edgeport.py``). `StreamPhone` is a phone over TCP or WebSocket with `Phone`'s interface, and
`dialog_request` builds the in-dialog requests of either side from what it saw.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from routr_ray.config import load_config_dir
from routr_ray.config.edgeport import EdgePortConfig, HealthConfig, RateLimit, Transport, TransportProtocol
from routr_ray.config.resources import Forking
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions
from routr_ray.edge.transports import Flow, TransportName
from routr_ray.location.local_client import LocalLocationClient
from routr_ray.location.service import LocationService
from routr_ray.processors.connect import ConnectProcessor
from routr_ray.sip import Request, Response, parse
from routr_ray.sip.framing import StreamFramer
from routr_ray.sip.timers import TimerConfig
from routr_ray.sip.transaction_messages import build_ack
from tests.support.phones import FAST, SHIPPED, Phone
from tests.unit.test_connect_support import authorize


class DirectPeers:
    """`routr_ray.edge.peers.Peers` between the EdgePorts of this process, by tag; counts what crossed."""

    def __init__(self) -> None:
        self.edges: dict[str, EdgePort] = {}
        self.sent = 0
        self.handed_back = 0

    def add(self, edge: EdgePort) -> None:
        self.edges[edge.tag] = edge

    async def send(self, tag: str, transport: TransportName, host: str, port: int, data: bytes, *, flow: bool,
                   server_name: str | None = None) -> bool:
        edge = self.edges.get(tag)
        if edge is None:
            return False
        self.sent += 1
        return await edge.send_for_peer(transport, host, port, data, flow=flow, server_name=server_name)

    async def hand_back(self, tag: str, worker: int, flow: Flow, data: bytes) -> bool:
        edge = self.edges.get(tag)
        if edge is None:
            return False
        self.handed_back += 1
        edge.receive_from_peer(flow, data)
        return True


def edge_config(base: EdgePortConfig, ref: str, protocols: tuple[TransportProtocol, ...], bind: str) -> EdgePortConfig:
    return dataclasses.replace(
        base, ref=ref, bind_addr=bind,
        transports=tuple(Transport(p, 0, bind) for p in protocols),
        rate_limit=RateLimit(trusted=(ipaddress.ip_network("0.0.0.0/0"),)),  # one test, many requests
        health=HealthConfig(enabled=False),
    )


@dataclasses.dataclass
class TwoEdges:
    one: EdgePort  # edgeport-01: UDP, TCP
    two: EdgePort  # edgeport-02: TCP, WS
    peers: DirectPeers
    connect: ConnectProcessor

    def udp(self, edge: EdgePort) -> tuple[str, int]:
        return "127.0.0.1", edge.address("udp")[1]

    def server(self, edge: EdgePort, transport: str) -> tuple[str, int]:
        return "127.0.0.1", edge.address(transport)[1]


@asynccontextmanager
async def two_edges(*, bind: str = "0.0.0.0", timers: TimerConfig = FAST, cancel_wait: float = 4.0,
                    forking: Forking | None = None, wired: bool = True) -> AsyncIterator[TwoEdges]:
    """``wired=False``: no peers (each EdgePort alone, as outside a cluster)."""
    shipped = load_config_dir(SHIPPED)
    (base,) = shipped.edgeports
    one = edge_config(base, "edgeport-01", (TransportProtocol.UDP, TransportProtocol.TCP), bind)
    two = edge_config(base, "edgeport-02", (TransportProtocol.TCP, TransportProtocol.WS), bind)
    resources = shipped.resources
    acl = resources.access_control_lists[0]
    widened = dataclasses.replace(acl, allow=(*acl.allow, ipaddress.ip_network("192.0.2.0/24")))
    resources = dataclasses.replace(resources, access_control_lists=(widened, *resources.access_control_lists[1:]))
    if forking is not None:
        resources = dataclasses.replace(
            resources, agents=tuple(dataclasses.replace(a, forking=forking) for a in resources.agents))
    location = LocalLocationClient([LocationService(sweep_interval=0)])
    connect = ConnectProcessor(resources, location, nonce_key=b"k" * 32)
    peers = DirectPeers()
    edges = []
    for config in (one, two):
        options = EdgePortOptions(timers=timers, cancel_wait=cancel_wait, peers=peers if wired else None)
        edge = EdgePort(config, FakeDispatcher(connect.process), options=options)
        await edge.start()
        peers.add(edge)
        edges.append(edge)
    try:
        yield TwoEdges(edges[0], edges[1], peers, connect)
    finally:
        for edge in edges:
            await edge.stop()


class StreamPhone:
    """A phone over TCP or WebSocket (RFC 7118: its Via and Contact name a ``.invalid`` host) with `Phone`'s
    interface; it keeps its one connection, so a request for it can only come back over that connection."""

    def __init__(self, transport: str, server: tuple[str, int]) -> None:
        self.transport = transport.upper()
        self.server = server
        self.queue: asyncio.Queue[tuple[Request | Response, tuple[str, int]]] = asyncio.Queue()
        self.cseq = 0
        self.host = "127.0.0.1"
        self.port = 0
        self._writer: asyncio.StreamWriter | None = None
        self._ws: Any = None
        self._reader_task: asyncio.Task[None] | None = None
        self.invalid_host = f"{secrets.token_hex(4)}.invalid"

    @classmethod
    async def open(cls, transport: str, server: tuple[str, int]) -> StreamPhone:
        phone = cls(transport, server)
        loop = asyncio.get_running_loop()
        if phone.transport == "WS":
            from websockets.asyncio.client import connect

            phone._ws = await connect(f"ws://{server[0]}:{server[1]}", subprotocols=["sip"])  # type: ignore[list-item]
            phone.host, phone.port = phone._ws.local_address[:2]
            phone._reader_task = loop.create_task(phone._read_ws())
        else:
            reader, phone._writer = await asyncio.open_connection(*server)
            phone.host, phone.port = phone._writer.get_extra_info("sockname")[:2]
            phone._reader_task = loop.create_task(phone._read_tcp(reader))
        return phone

    async def _read_tcp(self, reader: asyncio.StreamReader) -> None:
        framer = StreamFramer()
        while data := await reader.read(65536):
            for unit in framer.feed(data):
                if isinstance(unit, bytes):
                    self.queue.put_nowait((parse(unit), self.server))

    async def _read_ws(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for frame in self._ws:
                data = frame.encode() if isinstance(frame, str) else frame
                self.queue.put_nowait((parse(data), self.server))
        except ConnectionClosed:
            return

    @property
    def sent_by(self) -> str:
        return self.invalid_host if self.transport == "WS" else f"{self.host}:{self.port}"

    def contact(self, user: str) -> str:
        return f"<sip:{user}@{self.sent_by};transport={self.transport.lower()}>"

    def send(self, message: Request | Response | bytes, server: tuple[str, int] | None = None) -> None:
        data = bytes(message)
        if self._ws is not None:
            asyncio.get_running_loop().create_task(self._ws.send(data.decode()))
        else:
            assert self._writer is not None
            self._writer.write(data)

    async def recv(self, timeout: float = 3.0) -> tuple[Request | Response, tuple[str, int]]:  # noqa: ASYNC109
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def final(self, timeout: float = 3.0) -> tuple[Response, tuple[str, int]]:  # noqa: ASYNC109
        while True:
            msg, addr = await self.recv(timeout)
            if isinstance(msg, Response) and msg.status >= 200:
                return msg, addr

    async def request_of(self, method: str, timeout: float = 3.0) -> tuple[Request, tuple[str, int]]:  # noqa: ASYNC109
        while True:
            msg, addr = await self.recv(timeout)
            if isinstance(msg, Request) and msg.method == method:
                return msg, addr

    def request(self, method: str, ruri: str, user: str, to: str, *, call_id: str, contact: bool = True) -> Request:
        self.cseq += 1
        lines = [
            f"{method} {ruri} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} {self.sent_by};rport;branch=z9hG4bK{call_id}{self.cseq}",
            "Max-Forwards: 70",
            f"From: <sip:{user}@sip.local>;tag=t{user}",
            f"To: <{to}>",
            f"Call-ID: {call_id}",
            f"CSeq: {self.cseq} {method}",
        ]
        if contact:
            lines.append(f"Contact: {self.contact(user)}")
        message = parse(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode())
        assert isinstance(message, Request)
        return message

    def answer_challenge(self, request: Request, challenge: Response, user: str) -> Request:
        self.cseq += 1
        out = authorize(request, challenge, user, "1234")
        via = out.top_via
        assert via is not None
        via.params["branch"] = f"{via.params['branch']}a"
        out.replace_top_via(via)
        return out

    async def register(self, user: str, server: tuple[str, int] | None = None) -> Response:
        req = self.request("REGISTER", "sip:sip.local", user, f"sip:{user}@sip.local", call_id=f"reg-{user}-{self.port}")
        self.send(req)
        challenge, _ = await self.final()
        assert challenge.status == 401, challenge
        self.send(self.answer_challenge(req, challenge, user))
        answer, _ = await self.final()
        return answer

    async def unregister(self, user: str) -> Response:
        """Remove this phone's binding (expires 0, RFC 3261 §10.2.2), with digest."""
        req = self.request("REGISTER", "sip:sip.local", user, f"sip:{user}@sip.local", call_id=f"reg-{user}-{self.port}")
        req.headers.set("Contact", f"{self.contact(user)};expires=0")
        self.send(req)
        challenge, _ = await self.final()
        if challenge.status != 401:
            return challenge
        self.send(self.answer_challenge(req, challenge, user))
        answer, _ = await self.final()
        return answer

    async def close(self) -> None:
        if self._reader_task is not None:
            self._reader_task.cancel()
        if self._ws is not None:
            await self._ws.close()
        if self._writer is not None:
            self._writer.close()


AnyPhone = Phone | StreamPhone


def via_of(phone: AnyPhone, branch: str) -> str:
    if isinstance(phone, StreamPhone):
        return f"SIP/2.0/{phone.transport} {phone.sent_by};rport;branch={branch}"
    return f"SIP/2.0/UDP {phone.host}:{phone.port};rport;branch={branch}"


def contact_of(phone: AnyPhone, user: str) -> str:
    if isinstance(phone, StreamPhone):
        return phone.contact(user)
    return f"<sip:{user}@{phone.host}:{phone.port}>"


@dataclasses.dataclass
class DialogSide:
    """What one party of a dialog needs to send in it (RFC 3261 §12.1): its tags, the remote target, the route
    set, and its CSeq."""

    phone: AnyPhone
    call_id: str
    local: str  # From value (with our tag)
    remote: str  # To value (with theirs)
    target: str
    routes: list[str]
    cseq: int

    @classmethod
    def caller(cls, phone: AnyPhone, invite: Request, answer: Response) -> DialogSide:
        """From the caller's INVITE and the 2xx it received: the route set is the Record-Route reversed."""
        routes = [str(na) for na in reversed(answer.record_routes)]
        contact = answer.contacts[0].uri
        assert invite.cseq is not None
        return cls(phone, invite.call_id or "", invite.headers.get("From") or "", answer.headers.get("To") or "",
                   str(contact), routes, invite.cseq.seq)

    @classmethod
    def callee(cls, phone: AnyPhone, invite: Request, answer: Response) -> DialogSide:
        """From the INVITE the callee received and its own 2xx: the route set is the Record-Route in order."""
        routes = [str(na) for na in invite.record_routes]
        return cls(phone, invite.call_id or "", answer.headers.get("To") or "", invite.headers.get("From") or "",
                   str(invite.contacts[0].uri), routes, 0)

    def request(self, method: str, *, cseq: int | None = None) -> Request:
        if cseq is None:
            self.cseq += 1
            cseq = self.cseq
        lines = [
            f"{method} {self.target} SIP/2.0",
            f"Via: {via_of(self.phone, 'z9hG4bK' + secrets.token_hex(6))}",
            "Max-Forwards: 70",
            f"From: {self.local}",
            f"To: {self.remote}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            *(f"Route: {route}" for route in self.routes),
        ]
        message = parse(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode())
        assert isinstance(message, Request)
        return message


def answer(phone: AnyPhone, request: Request, status: int, source: tuple[str, int], *, user: str = "1002",
           to_tag: str = "callee") -> Response:
    """The callee's response: Record-Route copied (RFC 3261 §12.1.1), a Contact on 2xx to INVITE."""
    response = request.make_response(status, to_tag=to_tag)
    for na in request.record_routes:
        response.headers.add("Record-Route", str(na))
    if status < 300 and request.method == "INVITE":
        response.headers.add("Contact", contact_of(phone, user))
    phone.send(response, source)
    return response


async def dial(caller: Phone, server: tuple[str, int], call_id: str = "x-call") -> Request:
    """1001 calls 1002: INVITE, 407, ACK, INVITE with credentials. Returns the authenticated INVITE."""
    invite = caller.request("INVITE", "sip:1002@sip.local", "1001", "sip:1002@sip.local", call_id=call_id)
    caller.send(invite, server)
    challenge, _ = await caller.final()
    assert challenge.status == 407
    caller.send(build_ack(invite, challenge), server)
    authorized = caller.answer_challenge(invite, challenge, "1001")
    caller.send(authorized, server)
    return authorized


async def callee_at(cluster: TwoEdges, transport: str) -> StreamPhone:
    callee = await StreamPhone.open(transport, cluster.server(cluster.two, transport))
    assert (await callee.register("1002")).status == 200
    return callee


def assert_names(entry_port: int | None, edge: EdgePort, transport: str, port: int | None = None) -> None:
    assert entry_port == (port if port is not None else edge.address(transport)[1])


async def ring_and_answer(cluster: TwoEdges, caller: Phone, callee: AnyPhone, transport: str
                          ) -> tuple[DialogSide, DialogSide, Request]:
    """1001 calls, 1002 rings and answers; returns both sides of the dialog and the INVITE 1002 received."""
    one, two = cluster.one, cluster.two
    invite = await dial(caller, cluster.udp(one))
    received, source = await callee.request_of("INVITE")
    # toward the callee everything names edgeport-02, the EdgePort it reaches (its connection is there)
    via = received.top_via
    assert via is not None and via.transport == transport
    if transport != "WS":
        assert_names(via.port, two, transport.lower())
    record_routes = [na.uri for na in received.record_routes]
    assert len(record_routes) == 2
    assert record_routes[0].params.get("rre") == two.tag and record_routes[0].port == two.address(transport.lower())[1]
    assert record_routes[1].params.get("rre") == one.tag and record_routes[1].port == one.address("udp")[1]
    assert record_routes[0].params.get("rrk") == record_routes[1].params.get("rrk")
    answer(callee, received, 180, source)
    ok = answer(callee, received, 200, source)
    ringing, _ = await caller.recv()
    while isinstance(ringing, Response) and ringing.status == 100:
        ringing, _ = await caller.recv()
    assert isinstance(ringing, Response) and ringing.status == 180
    final, source_of_final = await caller.final()
    assert final.status == 200 and source_of_final == cluster.udp(one)
    assert final.contacts[0].uri.host != "" and ".invalid" not in str(final.contacts[0].uri)
    caller_side = DialogSide.caller(caller, invite, final)
    callee_side = DialogSide.callee(callee, received, ok)
    assert invite.cseq is not None
    caller.send(caller_side.request("ACK", cseq=invite.cseq.seq), cluster.udp(one))
    ack, _ = await callee.request_of("ACK")
    assert ack.cseq is not None and ack.cseq.seq == invite.cseq.seq
    return caller_side, callee_side, received
