"""Issue 18 item 4: a new ``edgeport.yaml`` applied to a running EdgePort in place (routr_ray/edge/reconfigure.py).

The shipped EdgePort with the real Connect (tests/support/phones.py), over real sockets on loopback: 1002 registers
over TCP and keeps its connection; then a new ACL and rate limit are applied. The new ACL refuses a source it now
denies, the new rate limit bans a source over it, and the TCP flow is still the same open connection: a request
to 1002 still reaches it over that connection. A change that would rebind a port is refused and changes nothing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import os
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from routr_ray.config.edgeport import (
    EdgePortConfig,
    HealthConfig,
    RateLimit,
    SecurityContext,
    SourceFilter,
    Transport,
    TransportProtocol,
)
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort
from routr_ray.edge.reconfigure import ConfigRefused, reconfigure
from routr_ray.edge.tlsutil import TlsConfigError, make_self_signed_pem
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request, Response, StreamFramer, parse
from tests.support.phones import Phone, shipped_edge
from tests.unit.test_connect_support import authorize

pytestmark = [pytest.mark.timeout(30), pytest.mark.netns,
              pytest.mark.skipif(os.environ.get("ROUTR_RAY_IN_NETNS") != "1", reason="inside scripts/in-netns")]

DENIED = "127.0.0.3"  # the source the new ACL denies
FLOODER = "127.0.0.4"  # the source that goes over the new rate limit
CALLER = "127.0.0.5"  # 1001, calling 1002 after the change
CALLEE = "127.0.0.1"  # 1002, registered over TCP


class TcpPhone:
    """1002 over one TCP connection it keeps (RFC 5626-style flow: requests to it come back over it)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.framer = StreamFramer()
        self.pending: list[bytes] = []
        self.port = int(writer.get_extra_info("sockname")[1])
        self.cseq = 0

    @classmethod
    async def connect(cls, edge: EdgePort) -> TcpPhone:
        return cls(*await asyncio.open_connection(*edge.address("tcp"), local_addr=(CALLEE, 0)))

    async def recv(self, timeout: float = 3.0) -> Request | Response:  # noqa: ASYNC109
        while not self.pending:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            assert data, "the EdgePort closed the connection"
            self.pending.extend(u for u in self.framer.feed(data) if isinstance(u, bytes))
        return parse(self.pending.pop(0))

    def register_request(self) -> Request:
        self.cseq += 1
        text = "\r\n".join([
            "REGISTER sip:sip.local SIP/2.0",
            f"Via: SIP/2.0/TCP {CALLEE}:{self.port};rport;branch=z9hG4bKtcpreg{self.cseq}",
            "Max-Forwards: 70", "From: <sip:1002@sip.local>;tag=t1002", "To: <sip:1002@sip.local>",
            "Call-ID: reg-1002-tcp", f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:1002@{CALLEE}:{self.port};transport=tcp>", "Expires: 600", "Content-Length: 0", "", ""])
        message = parse(text.encode())
        assert isinstance(message, Request)
        return message

    async def register(self) -> Response:
        request = self.register_request()
        self.writer.write(bytes(request))
        challenge = await self.recv()
        assert isinstance(challenge, Response) and challenge.status == 401, challenge
        self.cseq += 1
        again = authorize(request, challenge, "1002", "1234")
        via = again.top_via
        assert via is not None
        via.params["branch"] = f"{via.params['branch']}a"
        again.replace_top_via(via)
        self.writer.write(bytes(again))
        answer = await self.recv()
        assert isinstance(answer, Response)
        return answer

    def close(self) -> None:
        self.writer.close()


async def answers(phone: Phone, edge: EdgePort, count: int, tag: str) -> int:
    """How many of ``count`` OPTIONS (each its own transaction) ``phone`` sends the EdgePort get an answer."""
    server = ("127.0.0.1", edge.address("udp")[1])
    for index in range(count):
        phone.send(phone.request("OPTIONS", "sip:sip.local", "1001", "sip:sip.local", call_id=f"{tag}-{index}",
                                 contact=False), server)
    answered = 0
    try:
        while True:
            message, _ = await phone.recv(timeout=0.5)
            answered += isinstance(message, Response)
    except TimeoutError:
        return answered


async def message_to_1002(caller: Phone, edge: EdgePort) -> Response | None:
    """1001 sends MESSAGE to 1002 (with credentials when challenged); the final response, if any comes."""
    server = ("127.0.0.1", edge.address("udp")[1])
    message = caller.request("MESSAGE", "sip:1002@sip.local", "1001", "sip:1002@sip.local", call_id="msg-1",
                             contact=False)
    caller.send(message, server)
    answer, _ = await caller.final()
    if answer.status in (401, 407):
        caller.send(caller.answer_challenge(message, answer, "1001"), server)
        return None
    return answer


async def test_a_new_acl_and_rate_limit_apply_to_the_live_edgeport_and_its_tcp_flow_stays() -> None:
    async with shipped_edge() as edge:
        callee = await TcpPhone.connect(edge)
        denied, flooder, caller = (await Phone.open(DENIED), await Phone.open(FLOODER), await Phone.open(CALLER))
        try:
            assert (await callee.register()).status == 200
            (connection,) = list(edge.connections)
            # before: every source is answered (shipped_edge trusts every source: no rate limit)
            assert await answers(denied, edge, 1, "before-acl") == 1
            assert await answers(flooder, edge, 6, "before-rate") == 6

            new = dataclasses.replace(
                edge.config,
                access_control_list=SourceFilter(deny=(ipaddress.ip_network(f"{DENIED}/32"),)),
                rate_limit=RateLimit(requests_per_second=0.1, burst=3, ban_seconds=60))
            diff = reconfigure(edge, new, file="config/edgeport.yaml")
            assert set(diff.in_place) == {"spec.accessControlList", "spec.rateLimit"}
            assert edge.config is new

            # (a) the new ACL refuses the source it now denies (no answer at all)
            banned = edge.metrics.reject_counts.get("banned_source", 0)
            assert await answers(denied, edge, 1, "after-acl") == 0
            assert edge.metrics.reject_counts.get("banned_source", 0) == banned + 1
            # (b) the new rate limit: a burst of 3, then the source is banned
            assert await answers(flooder, edge, 6, "after-rate") == 3
            assert edge.metrics.reject_counts.get("rate_limited", 0) >= 3
            # (c) the TCP flow is the same open connection, and a request to 1002 still reaches it over it
            assert list(edge.connections) == [connection]
            assert await message_to_1002(caller, edge) is None  # challenged, answered with credentials
            forwarded = await callee.recv()
            assert isinstance(forwarded, Request) and forwarded.method == "MESSAGE"
            assert forwarded.uri.startswith("sip:1002@")
            assert list(edge.connections) == [connection]
        finally:
            for phone in (denied, flooder, caller):
                phone.close()
            callee.close()


async def test_a_port_change_is_refused_and_nothing_changes() -> None:
    """Attack: an in-place change never rebinds a listener (nor widens what a port exposes); a config with another
    port, or a listener moved to another address, is refused whole: not even its in-place parts are applied."""
    async with shipped_edge() as edge:
        before = {name: listener.local_address for name, listener in edge.listeners.items()}
        old, guard = edge.config, edge.sources
        moved = dataclasses.replace(
            old, transports=(Transport(TransportProtocol.UDP, 0, "127.0.0.1"), *old.transports[1:]),
            access_control_list=SourceFilter(deny=(ipaddress.ip_network("127.0.0.0/8"),)))
        with pytest.raises(ConfigRefused) as refused:
            reconfigure(edge, moved, file="config/edgeport.yaml")
        assert str(refused.value).startswith("config/edgeport.yaml: spec.transport: ")
        assert "nothing was changed" in str(refused.value)
        wider_health = dataclasses.replace(old, health=dataclasses.replace(old.health, bind_addr="0.0.0.0"))
        with pytest.raises(ConfigRefused, match="spec.health"):
            reconfigure(edge, wider_health)
        assert edge.config is old and edge.sources is guard
        assert {name: listener.local_address for name, listener in edge.listeners.items()} == before
        phone = await Phone.open("127.0.0.1")
        try:
            assert await answers(phone, edge, 1, "still") == 1  # the refused deny-all was not applied
        finally:
            phone.close()


Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _peer_certificate(port: int) -> tuple[bytes, Connection]:
    """A new TLS connection to the EdgePort (no verification: the certificates are self-signed); the server's
    certificate (DER) and the open connection."""
    client = ssl.create_default_context()
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    assert der
    return der, (reader, writer)


async def _answers_a_ping(connection: Connection) -> bool:
    """RFC 5626 §4.4.1: a double-CRLF ping gets a CRLF pong over a connection the EdgePort keeps."""
    reader, writer = connection
    writer.write(b"\r\n\r\n")
    return await asyncio.wait_for(reader.read(2), 2.0) == b"\r\n"


async def test_a_new_certificate_is_used_by_new_tls_connections_and_open_ones_stay(tmp_path: Path) -> None:
    cert, key = make_self_signed_pem(("reloaded.example",))
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    config = EdgePortConfig(ref="tls-reload", bind_addr="127.0.0.1",
                            transports=(Transport(TransportProtocol.TLS, 0, "127.0.0.1"),),
                            health=HealthConfig(enabled=False))
    edge = EdgePort(config, FakeDispatcher(lambda request: processor_pb2.MessageResponse()))
    await edge.start()
    port = edge.address("tls")[1]
    try:
        old_der, old_connection = await _peer_certificate(port)
        bad = dataclasses.replace(config, security_context=SecurityContext(
            certificate=str(tmp_path / "missing.pem"), private_key=str(tmp_path / "key.pem")))
        with pytest.raises(TlsConfigError):  # a certificate that cannot be read: nothing changes
            reconfigure(edge, bad)
        assert edge.config is config and (await _peer_certificate(port))[0] == old_der
        new = dataclasses.replace(config, security_context=SecurityContext(
            certificate=str(tmp_path / "cert.pem"), private_key=str(tmp_path / "key.pem")))
        assert reconfigure(edge, new).in_place == ("spec.securityContext",)
        new_der, new_connection = await _peer_certificate(port)
        assert new_der != old_der
        assert x509.load_der_x509_certificate(new_der).subject.rfc4514_string() == \
            x509.load_pem_x509_certificate(cert).subject.rfc4514_string()
        assert await _answers_a_ping(old_connection)  # the connection opened before stays, with its certificate
        assert old_connection[1].get_extra_info("ssl_object").getpeercert(binary_form=True) == old_der
        assert await _answers_a_ping(new_connection)
        old_connection[1].close()
        new_connection[1].close()
    finally:
        await edge.stop()
