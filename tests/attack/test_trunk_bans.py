"""Issue 14 item 8: bans cannot be turned against trunks. 300 forged REGISTERs with wrong credentials, sent over
UDP from the trunk's address (what a spoofer can do without seeing any answer), used to get the trunk banned
twice over: by the EdgePort's rate limiter (300 requests in a burst > the 200 burst; and a trunk sending more than
100 requests/s banned itself the same way) and by Connect's ban after 20 failed authentications. Then every
inbound PSTN call from the trunk was dropped or answered 403.

Now the sources a Trunk or Peer names (routr_ray/config/trunk_sources.py) are never banned: the trunk's inbound
call right after the flood reaches the callee. The same flood from any other address is still banned (the
control half of the test).

In-process, on real UDP sockets: an EdgePort (shipped rate limit: 100/s, burst 200, 60 s ban) whose dispatcher
is Connect itself (ConnectProcessor over an in-process Location shard), with resources loaded from YAML as the
server loads them; the EdgePort gets the trunk sources derived from those resources, as the launcher gives them.
"""

from __future__ import annotations

import asyncio
import socket
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from routr_ray.config import load_resources
from routr_ray.config.edgeport import HealthConfig, RateLimit
from routr_ray.config.trunk_sources import trunk_and_peer_sources
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions
from routr_ray.edge.gateway_auth import request_with_credentials
from routr_ray.location import LocationService
from routr_ray.location.local_client import LocalLocationClient
from routr_ray.processors.connect import ConnectProcessor
from routr_ray.proto.gen import common_pb2, location_pb2
from routr_ray.sip import Request, Response, parse
from tests.integration.test_edgeport import FAST, UdpPeer, config

pytestmark = pytest.mark.timeout(60)

TRUNK = "127.0.0.9"  # trunk-01: admitted by its ACL alone
DIGEST_TRUNK = "127.0.0.10"  # trunk-02: its ACL and inbound credentials (digest), so Connect's ban applies to it
OTHER = "127.0.0.8"

RESOURCES = """
- apiVersion: v2beta1
  kind: AccessControlList
  ref: acl-trunk
  metadata: {name: The trunk's signalling address}
  spec:
    accessControlList: {deny: [0.0.0.0/0], allow: [127.0.0.9/32]}
- apiVersion: v2beta1
  kind: Trunk
  ref: trunk-01
  metadata: {name: Provider}
  spec:
    inbound: {uri: trunk01.sip.local, accessControlListRef: acl-trunk}
    outbound:
      uris:
        - uri: {user: trunk01, host: 127.0.0.9, port: 5080, transport: udp}
- apiVersion: v2beta1
  kind: AccessControlList
  ref: acl-trunk-02
  metadata: {name: The second trunk's signalling address}
  spec:
    accessControlList: {deny: [0.0.0.0/0], allow: [127.0.0.10/32]}
- apiVersion: v2beta1
  kind: Credentials
  ref: credentials-trunk-02
  metadata: {name: trunk-02 inbound}
  spec:
    credentials: {username: trunk02, password: trunk02secret}
- apiVersion: v2beta1
  kind: Trunk
  ref: trunk-02
  metadata: {name: Provider with digest}
  spec:
    inbound: {uri: trunk02.sip.local, accessControlListRef: acl-trunk-02, credentialsRef: credentials-trunk-02}
- apiVersion: v2beta1
  kind: Number
  ref: number-02
  metadata: {name: DID 2}
  spec:
    trunkRef: trunk-02
    location: {telUrl: "tel:+17066041488", aorLink: "sip:1002@sip.local"}
- apiVersion: v2beta1
  kind: Number
  ref: number-01
  metadata: {name: DID}
  spec:
    trunkRef: trunk-01
    location: {telUrl: "tel:+17066041487", aorLink: "sip:1002@sip.local"}
- apiVersion: v2beta1
  kind: Domain
  ref: domain-01
  metadata: {name: Local}
  spec:
    context: {domainUri: sip.local}
- apiVersion: v2beta1
  kind: Credentials
  ref: credentials-1002
  metadata: {name: "1002"}
  spec:
    credentials: {username: "1002", password: secret1002}
- apiVersion: v2beta1
  kind: Agent
  ref: agent-1002
  metadata: {name: Callee}
  spec: {username: "1002", domainRef: domain-01, credentialsRef: credentials-1002}
"""


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[tuple[EdgePort, LocalLocationClient]]:
    (tmp_path / "resources.yaml").write_text(textwrap.dedent(RESOURCES))
    resources = load_resources(tmp_path)
    location = LocalLocationClient([LocationService(sweep_interval=0)])
    connect = ConnectProcessor(resources, location, nonce_key=b"k" * 32)
    shipped = RateLimit(requests_per_second=100, burst=200, ban_seconds=60)  # config/edgeport.yaml, no trusted
    edge = EdgePort(config(rate_limit=shipped, health=HealthConfig(enabled=False)), FakeDispatcher(connect.process),
                    options=EdgePortOptions(timers=FAST))
    edge.protect_sources(trunk_and_peer_sources(resources).networks)  # what the launcher hands each EdgePort
    await edge.start()
    yield edge, location
    await edge.stop()


def forged_register(i: int, port: int, source: str) -> bytes:
    return (
        "REGISTER sip:sip.local SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:{port};rport;branch=z9hG4bKforged{i}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:1002@sip.local>;tag=f{i}\r\n"
        "To: <sip:1002@sip.local>\r\n"
        f"Call-ID: forged-{i}@{source}\r\n"
        "CSeq: 1 REGISTER\r\n"
        f"Contact: <sip:1002@{source}:{port}>\r\n"
        'Authorization: Digest username="1002", realm="sip.local", nonce="forged", uri="sip:sip.local", '
        'response="00000000000000000000000000000000", algorithm=MD5\r\n'
        "Expires: 3600\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


TRUNKS = {  # address -> (Request-URI the trunk calls, its inbound credentials)
    TRUNK: ("sip:+17066041487@trunk01.sip.local", None),
    DIGEST_TRUNK: ("sip:+17066041488@trunk02.sip.local", ("trunk02", "trunk02secret")),
}


def inbound_call(port: int, source: str, call: str) -> bytes:
    ruri = TRUNKS[source][0] if source in TRUNKS else TRUNKS[TRUNK][0]
    return (
        f"INVITE {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {source}:{port};rport;branch=z9hG4bK{call}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:+15551230000@{source}>;tag={call}\r\n"
        f"To: <{ruri}>\r\n"
        f"Call-ID: {call}@{source}\r\n"
        "CSeq: 1 INVITE\r\n"
        f"Contact: <sip:+15551230000@{source}:{port}>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


async def flood(source: str, target: tuple[str, int]) -> int:
    """300 forged REGISTERs as fast as a socket sends them; the port they come from."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    try:
        for i in range(300):
            while True:
                try:
                    sock.sendto(forged_register(i, port, source), target)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.001)
            if i % 5 == 4:  # ~2,000/s, paced so that the kernel's receive buffer drops (almost) none
                await asyncio.sleep(0.002)
    finally:
        await asyncio.sleep(0.3)
        sock.close()
    return port


def registers_received(edge: EdgePort) -> float:
    value = edge.metrics.registry.get_sample_value(
        "routr_sip_messages_total", {"direction": "in", "method": "REGISTER", "status_class": "request",
                                     "transport": "udp"})
    return value or 0.0


async def answers(peer: UdpPeer, within: float = 1.0) -> list[Request | Response]:
    got: list[Request | Response] = []
    try:
        while True:
            got.append(await peer.recv(within))
    except TimeoutError:
        return got


async def call_from(source: str, edge: EdgePort, call: str) -> tuple[UdpPeer, list[Request | Response]]:
    """An inbound call from ``source``; a trunk with credentials answers the 407 as a provider does."""
    trunk = await UdpPeer.open(source)
    invite = inbound_call(trunk.port, source, call)
    trunk.send(invite, edge.address("udp"))
    got = await answers(trunk)
    challenge = next((m for m in got if isinstance(m, Response) and m.status == 407), None)
    credentials = TRUNKS.get(source, (None, None))[1]
    if challenge is not None and credentials is not None:
        template = parse(invite.replace(f"branch=z9hG4bK{call}".encode(), f"branch=z9hG4bK{call}-2".encode()))
        assert isinstance(template, Request)
        authenticated = request_with_credentials(template, challenge, *credentials)
        assert authenticated is not None
        trunk.send(authenticated, edge.address("udp"))
        got += await answers(trunk)
    return trunk, got


@pytest.mark.parametrize("address", [TRUNK, DIGEST_TRUNK])
async def test_300_forged_registers_from_the_trunks_address_do_not_stop_its_calls(
    stack: tuple[EdgePort, LocalLocationClient], address: str
) -> None:
    edge, location = stack
    callee = await UdpPeer.open("127.0.0.1")
    try:
        await location.add_route(location_pb2.AddRouteRequest(aor="sip:1002@sip.local", route=location_pb2.Route(
            host="127.0.0.1", port=str(callee.port), transport=common_pb2.UDP, expires=600,
            contact_uri=f"sip:1002@127.0.0.1:{callee.port}")))
        started = asyncio.get_running_loop().time()
        await flood(address, edge.address("udp"))
        elapsed = asyncio.get_running_loop().time() - started
        assert address not in edge.rate.banned_sources and edge.rate.bans == 0
        assert registers_received(edge) > 220 and 300 / elapsed > 100  # > the burst of 200, > 100 requests/s
        trunk, got = await call_from(address, edge, "pstn-after-flood")
        try:
            statuses = [m.status for m in got if isinstance(m, Response)]
            assert 403 not in statuses, statuses
            invite = await callee.recv(2.0)  # the inbound PSTN call reaches the callee
            assert isinstance(invite, Request) and invite.method == "INVITE"
            assert invite.headers.get("Call-ID") == f"pstn-after-flood@{address}"
        finally:
            trunk.close()
    finally:
        callee.close()


async def test_the_same_flood_from_another_address_is_still_banned(
    stack: tuple[EdgePort, LocalLocationClient],
) -> None:
    edge, _ = stack
    await flood(OTHER, edge.address("udp"))
    assert OTHER in edge.rate.banned_sources  # over the burst of 200: banned for 60 s
    other, got = await call_from(OTHER, edge, "after-ban")
    other.close()
    assert got == []  # a banned source gets nothing at all
