"""UDP and TCP listeners on real loopback sockets: delivery, replies over the same flow, framing, keepalives,
connection reuse and the connection guards (caps, idle and first-message timeouts, size, slow readers)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from routr_ray.edge.connections import ConnectionTable
from routr_ray.edge.transports import (
    DEFAULT_PORTS,
    Flow,
    TcpListener,
    TransportLimits,
    TransportName,
    UdpListener,
    WssListener,
    create_listener,
    listener_class,
)
from routr_ray.sip import ParseError

pytestmark = pytest.mark.timeout(20)

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP client.invalid;branch=z9hG4bK776asdhds\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:alice@example.com>\r\n"
    b"From: <sip:alice@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b"Contact: <sip:alice@client.invalid;transport=tcp>\r\n"
    b"Content-Length: 0\r\n\r\n"
)
MESSAGE = (
    b"MESSAGE sip:bob@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP client.invalid;branch=z9hG4bK776asdhdt\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:bob@example.com>\r\n"
    b"From: <sip:alice@example.com>;tag=49583\r\n"
    b"Call-ID: asd88asd77a@1.2.3.4\r\n"
    b"CSeq: 1 MESSAGE\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 5\r\n\r\n"
    b"hello"
)
REPLY = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/TCP client.invalid;branch=z9hG4bK776asdhds\r\n"
    b"To: <sip:alice@example.com>;tag=37GkEhwl6\r\n"
    b"From: <sip:alice@example.com>;tag=1928301774\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 1 REGISTER\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class Inbox:
    """Collects (data, flow) from a listener's on_message callback."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, Flow]] = asyncio.Queue()

    def __call__(self, data: bytes, flow: Flow) -> None:
        self.queue.put_nowait((data, flow))

    async def next(self, within: float = 2.0) -> tuple[bytes, Flow]:
        return await asyncio.wait_for(self.queue.get(), within)

    async def nothing(self, wait: float = 0.2) -> None:
        await asyncio.sleep(wait)
        assert self.queue.empty(), f"unexpected message: {self.queue.get_nowait()!r}"


async def read_exactly(reader: asyncio.StreamReader, n: int, within: float = 2.0) -> bytes:
    return await asyncio.wait_for(reader.readexactly(n), within)


async def closed_by_peer(reader: asyncio.StreamReader, within: float = 2.0) -> bool:
    """True when the peer closes (EOF or reset) within ``timeout``."""
    try:
        data = await asyncio.wait_for(reader.read(65536), within)
    except ConnectionResetError:
        return True
    return data == b""


@pytest.fixture
async def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def udp(inbox: Inbox) -> AsyncIterator[UdpListener]:
    listener = UdpListener("127.0.0.1", 0, inbox, limits=TransportLimits(max_message_size=4096))
    await listener.start()
    yield listener
    await listener.stop()


@pytest.fixture
async def tcp(inbox: Inbox) -> AsyncIterator[TcpListener]:
    listener = TcpListener("127.0.0.1", 0, inbox)
    await listener.start()
    yield listener
    await listener.stop()


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple) -> None:  # type: ignore[override,type-arg]
        self.received.put_nowait(data)


async def udp_client(
    remote: tuple[str, int], family: int = socket.AF_INET
) -> tuple[asyncio.DatagramTransport, UdpClient]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(UdpClient, remote_addr=remote, family=family)
    return transport, protocol


# --- registry -----------------------------------------------------------------------------------------------


def test_listener_classes_are_chosen_by_protocol_name() -> None:
    assert listener_class("udp") is UdpListener
    assert listener_class("TCP") is TcpListener
    assert listener_class("wss") is WssListener
    with pytest.raises(ValueError, match="sctp"):
        listener_class("sctp")
    listener = create_listener("tls", "127.0.0.1", None, Inbox())
    assert (
        listener.transport is TransportName.TLS and listener.port == DEFAULT_PORTS[TransportName.TLS] == 5061
    )


# --- UDP ------------------------------------------------------------------------------------------------------


async def test_udp_delivers_a_datagram_and_replies_to_its_flow(udp: UdpListener, inbox: Inbox) -> None:
    host, port = udp.local_address
    assert port != 0
    transport, client = await udp_client((host, port))
    try:
        transport.sendto(REGISTER)
        data, flow = await inbox.next()
        assert data == REGISTER
        client_port = transport.get_extra_info("sockname")[1]
        assert flow == Flow(TransportName.UDP, "127.0.0.1", client_port, "127.0.0.1", port, None)
        assert await udp.send(flow, REPLY)
        assert await asyncio.wait_for(client.received.get(), 2) == REPLY
        assert await udp.send(("127.0.0.1", client_port), REPLY)
        assert await asyncio.wait_for(client.received.get(), 2) == REPLY
    finally:
        transport.close()


async def test_udp_ignores_crlf_keepalives_and_drops_oversize(udp: UdpListener, inbox: Inbox) -> None:
    transport, _ = await udp_client(udp.local_address)
    try:
        transport.sendto(b"\r\n\r\n")
        transport.sendto(b"\r\n")
        transport.sendto(REGISTER + b"x" * 5000)  # over the 4096-byte limit of the fixture
        await inbox.nothing()
        assert udp.counters.keepalives == 2
        assert udp.counters.oversize_messages == 1
        transport.sendto(REGISTER)
        assert (await inbox.next())[0] == REGISTER
    finally:
        transport.close()


async def test_udp_survives_icmp_port_unreachable(udp: UdpListener, inbox: Inbox) -> None:
    closed = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    for _ in range(3):
        # the kernel accepts the datagram; the ICMP answer never reaches an unconnected socket on Linux
        assert await udp.send(("127.0.0.1", dead_port), REPLY)
        await asyncio.sleep(0.02)
    # where the kernel does report it (connected sockets, other OSes), asyncio calls error_received
    protocol = udp._endpoint.get_protocol()  # type: ignore[union-attr]
    protocol.error_received(ConnectionRefusedError(111, "Connection refused"))
    assert udp.counters.icmp_errors == 1
    assert udp.is_listening
    transport, _ = await udp_client(udp.local_address)
    try:
        transport.sendto(REGISTER)
        assert (await inbox.next())[0] == REGISTER
    finally:
        transport.close()


async def test_udp_refuses_non_literal_hosts(udp: UdpListener) -> None:
    assert not await udp.send(("sip.example.com", 5060), REPLY)
    assert udp.counters.send_failures == 1


async def test_udp_dual_stack_wildcard_serves_ipv4_and_ipv6(inbox: Inbox) -> None:
    listener = UdpListener("::", 0, inbox)
    await listener.start()
    try:
        port = listener.local_address[1]
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            transport, client = await udp_client((host, port), family)
            try:
                transport.sendto(REGISTER)
                data, flow = await inbox.next()
                assert data == REGISTER and flow.remote_host == host  # IPv4 arrives unmapped
                assert await listener.send(flow, REPLY)
                assert await asyncio.wait_for(client.received.get(), 2) == REPLY
            finally:
                transport.close()
    finally:
        await listener.stop()


# --- TCP ------------------------------------------------------------------------------------------------------


async def test_tcp_delivers_and_replies_over_the_same_connection(tcp: TcpListener, inbox: Inbox) -> None:
    reader, writer = await asyncio.open_connection(*tcp.local_address)
    try:
        writer.write(REGISTER)
        data, flow = await inbox.next()
        assert data == REGISTER
        assert flow.transport is TransportName.TCP and flow.connection_id is not None
        assert flow.remote == writer.get_extra_info("sockname")[:2]
        assert flow.local == tcp.local_address
        assert tcp.connections.by_id(flow.connection_id) is not None
        assert tcp.connections.by_remote("tcp", *flow.remote) is tcp.connections.by_id(flow.connection_id)
        assert await tcp.send(flow, REPLY)
        assert await read_exactly(reader, len(REPLY)) == REPLY
        # a Via with received/rport finds the same connection by address (a .invalid sent-by is no help)
        assert await tcp.send(flow.remote, REPLY)
        assert await read_exactly(reader, len(REPLY)) == REPLY
    finally:
        writer.close()
    await asyncio.sleep(0.05)
    assert len(tcp.connections) == 0
    assert not await tcp.send(flow, REPLY)  # gone: a Flow never opens a new connection


async def test_tcp_dual_stack_wildcard_serves_ipv4_and_ipv6(inbox: Inbox) -> None:
    listener = TcpListener("::", 0, inbox)
    await listener.start()
    try:
        port = listener.local_address[1]
        for host in ("127.0.0.1", "::1"):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(REGISTER)
                data, flow = await inbox.next()
                assert data == REGISTER and flow.remote_host == host  # IPv4 arrives unmapped
                assert listener.connections.by_remote(
                    "tcp", f"[{host}]" if ":" in host else host, flow.remote_port
                )
                assert await listener.send(flow, REPLY)
                assert await read_exactly(reader, len(REPLY)) == REPLY
            finally:
                writer.close()
    finally:
        await listener.stop()


async def test_tcp_framing_one_byte_writes_and_two_messages_in_one_write(
    tcp: TcpListener, inbox: Inbox
) -> None:
    reader, writer = await asyncio.open_connection(*tcp.local_address)
    try:
        for i in range(len(MESSAGE)):
            writer.write(MESSAGE[i : i + 1])
            await writer.drain()
        assert (await inbox.next())[0] == MESSAGE
        writer.write(REGISTER + MESSAGE)
        assert (await inbox.next())[0] == REGISTER
        assert (await inbox.next())[0] == MESSAGE
        await inbox.nothing(0.05)
    finally:
        writer.close()


async def test_tcp_double_crlf_ping_gets_a_crlf_pong(tcp: TcpListener, inbox: Inbox) -> None:
    reader, writer = await asyncio.open_connection(*tcp.local_address)
    try:
        writer.write(b"\r\n\r\n")
        assert await read_exactly(reader, 2) == b"\r\n"
        writer.write(REGISTER)  # the connection still carries messages after a ping
        assert (await inbox.next())[0] == REGISTER
        await inbox.nothing(0.05)
        assert tcp.counters.keepalives == 1
    finally:
        writer.close()


async def test_tcp_framing_error_sends_the_callback_reply_then_closes(inbox: Inbox) -> None:
    errors: list[tuple[Flow, ParseError]] = []

    def on_stream_error(flow: Flow, error: ParseError) -> bytes | None:
        errors.append((flow, error))
        return b"SIP/2.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n"

    listener = TcpListener("127.0.0.1", 0, inbox, on_stream_error=on_stream_error)
    await listener.start()
    try:
        reader, writer = await asyncio.open_connection(*listener.local_address)
        # RFC 3261 §18.3: Content-Length is mandatory on a stream; without it the stream cannot be framed
        writer.write(REGISTER.replace(b"Content-Length: 0\r\n", b""))
        answer = await asyncio.wait_for(reader.read(), 2)
        assert answer.startswith(b"SIP/2.0 400 ")
        assert len(errors) == 1 and errors[0][0].transport is TransportName.TCP
        assert listener.counters.framing_errors == 1
        writer.close()
    finally:
        await listener.stop()


async def test_tcp_oversize_message_closes_the_connection(inbox: Inbox) -> None:
    listener = TcpListener("127.0.0.1", 0, inbox, limits=TransportLimits(max_message_size=1024))
    await listener.start()
    try:
        reader, writer = await asyncio.open_connection(*listener.local_address)
        big = MESSAGE.replace(b"Content-Length: 5", b"Content-Length: 5000") + b"x" * 4995
        writer.write(big)
        assert await closed_by_peer(reader)
        assert listener.counters.oversize_messages == 1
        await inbox.nothing(0.05)
        writer.close()
    finally:
        await listener.stop()


async def test_tcp_opens_an_outbound_connection_on_demand_and_reuses_it(
    tcp: TcpListener, inbox: Inbox
) -> None:
    accepted: list[asyncio.StreamReader] = []

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(reader)
        data = await reader.readexactly(len(MESSAGE))
        assert data == MESSAGE
        writer.write(REPLY)  # the next hop answers over the connection we opened
        await writer.drain()
        await reader.readexactly(len(MESSAGE))
        await reader.read()

    next_hop = await asyncio.start_server(peer, "127.0.0.1", 0)
    try:
        address = next_hop.sockets[0].getsockname()[:2]
        results = await asyncio.gather(*(tcp.send(address, MESSAGE) for _ in range(2)))
        assert results == [True, True]
        data, flow = await inbox.next()
        assert data == REPLY and flow.remote == address and flow.connection_id is not None
        assert len(accepted) == 1  # concurrent senders share one connection
        assert tcp.connections.by_remote(TransportName.TCP, *address) is tcp.connections.by_id(
            flow.connection_id
        )
    finally:
        await tcp.stop()
        next_hop.close()
        await next_hop.wait_closed()


async def test_tcp_connect_failure_returns_false(tcp: TcpListener) -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    dead = probe.getsockname()[:2]
    probe.close()
    assert not await tcp.send(dead, MESSAGE)
    assert tcp.counters.connect_failures == 1


# --- guards -----------------------------------------------------------------------------------------------------


async def test_connection_caps_per_source_and_in_total(inbox: Inbox) -> None:
    table = ConnectionTable(max_connections=3, max_connections_per_source=2)
    listener = TcpListener("127.0.0.1", 0, inbox, connections=table)
    await listener.start()
    writers: list[asyncio.StreamWriter] = []
    try:
        host, port = listener.local_address
        readers = []
        for _ in range(3):
            reader, writer = await asyncio.open_connection(host, port)
            readers.append(reader)
            writers.append(writer)
        assert await closed_by_peer(readers[2])  # third from 127.0.0.1: over the per-source cap
        assert listener.counters.connections_over_source_cap == 1
        # the two admitted ones still work
        writers[0].write(REGISTER)
        assert (await inbox.next())[0] == REGISTER
        # 127.0.0.2 is another source: one more fits in the total of 3, the next does not
        r4, w4 = await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0))
        r5, w5 = await asyncio.open_connection(host, port, local_addr=("127.0.0.2", 0))
        writers += [w4, w5]
        assert await closed_by_peer(r5)
        assert listener.counters.connections_over_total_cap == 1
        assert len(table) == 3 and table.count_from("127.0.0.2") == 1
    finally:
        for writer in writers:
            writer.close()
        await listener.stop()


async def test_idle_connection_is_closed(inbox: Inbox) -> None:
    limits = TransportLimits(idle_timeout=0.3, first_message_timeout=5.0)
    listener = TcpListener("127.0.0.1", 0, inbox, limits=limits)
    await listener.start()
    try:
        reader, writer = await asyncio.open_connection(*listener.local_address)
        writer.write(REGISTER)
        await inbox.next()
        await asyncio.sleep(0.15)
        writer.write(b"\r\n\r\n")  # a keepalive is activity: it pushes the idle deadline
        assert await read_exactly(reader, 2) == b"\r\n"
        await asyncio.sleep(0.2)
        assert len(listener.connections) == 1
        assert await closed_by_peer(reader, within=1.0)
        assert listener.counters.idle_timeouts == 1
        writer.close()
    finally:
        await listener.stop()


async def test_connection_that_never_completes_a_message_is_closed_sooner(inbox: Inbox) -> None:
    limits = TransportLimits(idle_timeout=30.0, first_message_timeout=0.3)
    listener = TcpListener("127.0.0.1", 0, inbox, limits=limits)
    await listener.start()
    try:
        reader, writer = await asyncio.open_connection(*listener.local_address)
        writer.write(b"\r\n\r\n")  # pings do not count as a message
        assert await read_exactly(reader, 2) == b"\r\n"
        writer.write(REGISTER[:40])  # a slow or silent peer: bytes, but never a full message
        assert await closed_by_peer(reader, within=1.5)
        assert listener.counters.first_message_timeouts == 1
        writer.close()
    finally:
        await listener.stop()


async def test_peer_that_does_not_read_is_dropped(inbox: Inbox) -> None:
    limits = TransportLimits(max_write_buffer=64 * 1024)
    listener = TcpListener("127.0.0.1", 0, inbox, limits=limits)
    await listener.start()
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(listener.local_address)
        sock.sendall(REGISTER)
        _, flow = await inbox.next()
        chunk = REPLY + b"x" * 16384
        sent = 0
        while await listener.send(flow, chunk):
            sent += 1
            assert sent < 10_000
            if sent % 16 == 0:
                await asyncio.sleep(0)
        assert listener.counters.slow_readers == 1
        await asyncio.sleep(0.05)
        assert listener.connections.by_id(flow.connection_id or 0) is None
        sock.close()
    finally:
        await listener.stop()
