"""In-process SIP phones and an EdgePort with the real Connect on config/ as shipped, over real sockets (no Ray).

`Phone` is a UDP user agent bound to one address that queues what it receives with where it came from;
`shipped_edge()` is the shipped EdgePort (ports moved to free ones) with Connect on the shipped resources and an
in-memory Location, for integration tests of whole calls (issues 13 and 16).
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from routr_ray.config import Resources, load_config_dir
from routr_ray.config.edgeport import HealthConfig, RateLimit, Transport, TransportProtocol
from routr_ray.config.resources import Forking
from routr_ray.edge.dispatcher_client import FakeDispatcher, Handler
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions
from routr_ray.location.local_client import LocalLocationClient
from routr_ray.location.service import LocationService
from routr_ray.processors.connect import ConnectProcessor
from routr_ray.sip import Request, Response, parse
from routr_ray.sip.timers import TimerConfig
from routr_ray.util.server_health import HealthView
from tests.unit.test_connect_support import authorize

SHIPPED = Path(__file__).resolve().parents[2] / "config"
FAST = TimerConfig(t1=0.02, t2=0.08, t4=0.1, timer_d=0.2, timer_c=5.0)


class Phone(asyncio.DatagramProtocol):
    """A UDP phone bound to one address: what it receives is queued with the address it came from."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Request | Response, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None
        self.host = ""
        self.cseq = 0

    @classmethod
    async def open(cls, host: str) -> Phone:
        _, phone = await asyncio.get_running_loop().create_datagram_endpoint(cls, local_addr=(host, 0))
        phone.host = host
        return phone

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.queue.put_nowait((parse(data), addr))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, message: Request | Response | bytes, server: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(bytes(message), server)

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

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def request(self, method: str, ruri: str, user: str, to: str, *, call_id: str, contact: bool = True,
                q: float | None = None) -> Request:
        self.cseq += 1
        lines = [
            f"{method} {ruri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.host}:{self.port};rport;branch=z9hG4bK{call_id}{self.cseq}",
            "Max-Forwards: 70",
            f"From: <sip:{user}@sip.local>;tag=t{user}",
            f"To: <{to}>",
            f"Call-ID: {call_id}",
            f"CSeq: {self.cseq} {method}",
        ]
        if contact:
            lines.append(f"Contact: <sip:{user}@{self.host}:{self.port}>" + (f";q={q}" if q is not None else ""))
        message = parse(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode())
        assert isinstance(message, Request)
        return message

    def answer_challenge(self, request: Request, challenge: Response, user: str) -> Request:
        """The request again with digest credentials, CSeq + 1 and a new branch (a new transaction)."""
        self.cseq += 1
        out = authorize(request, challenge, user, "1234")
        via = out.top_via
        assert via is not None
        via.params["branch"] = f"{via.params['branch']}a"
        out.replace_top_via(via)
        return out

    async def register(self, user: str, server: tuple[str, int], q: float | None = None) -> Response:
        req = self.request("REGISTER", "sip:sip.local", user, f"sip:{user}@sip.local", call_id=f"reg-{user}-{self.port}",
                           q=q)
        self.send(req, server)
        challenge, _ = await self.final()
        assert challenge.status == 401, challenge
        self.send(self.answer_challenge(req, challenge, user), server)
        answer, _ = await self.final()
        return answer


@asynccontextmanager
async def shipped_edge(*, allow: tuple[str, ...] = ("192.0.2.0/24",), timers: TimerConfig = FAST,
                       cancel_wait: float = 4.0, forking: Forking | None = None,
                       dispatch: Callable[[ConnectProcessor], Handler] | None = None,
                       edit: Callable[[Resources], Resources] | None = None,
                       health: HealthView | None = None) -> AsyncIterator[EdgePort]:
    """The shipped EdgePort (wildcard UDP and TCP on free ports) and Connect on the shipped resources; `allow`
    joins the example ACL (TEST-NET-1 is no private range; the tests' phones use it); `forking` replaces the
    agents' forking setting; `dispatch(connect)` gives what the EdgePort calls instead of Connect alone (e.g. a
    dispatcher with middlewares, tests/support/media.py); `edit` changes the resources; `health`: the server health
    Connect reads (routr_ray/util/server_health.py)."""
    shipped = load_config_dir(SHIPPED)
    (config,) = shipped.edgeports
    assert config.bind_addr == "0.0.0.0"  # what ships; only the ports move
    config = dataclasses.replace(
        config,
        transports=(Transport(TransportProtocol.UDP, 0, "0.0.0.0"), Transport(TransportProtocol.TCP, 0, "0.0.0.0")),
        rate_limit=RateLimit(trusted=(ipaddress.ip_network("0.0.0.0/0"),)),  # one test, many requests
        health=HealthConfig(enabled=False),
    )
    resources = shipped.resources
    acl = resources.access_control_lists[0]
    widened = dataclasses.replace(acl, allow=(*acl.allow, *(ipaddress.ip_network(a) for a in allow)))
    resources = dataclasses.replace(resources, access_control_lists=(widened, *resources.access_control_lists[1:]))
    if forking is not None:
        resources = dataclasses.replace(
            resources, agents=tuple(dataclasses.replace(a, forking=forking) for a in resources.agents))
    if edit is not None:
        resources = edit(resources)
    location = LocalLocationClient([LocationService(sweep_interval=0)])
    connect = ConnectProcessor(resources, location, nonce_key=b"k" * 32, health=health)
    edge = EdgePort(config, FakeDispatcher(dispatch(connect) if dispatch is not None else connect.process),
                    options=EdgePortOptions(timers=timers, cancel_wait=cancel_wait))
    await edge.start()
    try:
        yield edge
    finally:
        await edge.stop()
