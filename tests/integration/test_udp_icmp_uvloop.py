"""A wildcard UDP listening point keeps receiving after an ICMP error, on uvloop (the EdgePort actor's loop).

Regression: with IP_RECVERR on the socket, Linux reports a port unreachable for an unconnected UDP socket as an
error condition (EPOLLERR); uvloop then stopped calling the socket's reader and the EdgePort went deaf to every
later datagram. Without IP_RECVERR the kernel reports nothing for an unconnected socket and the reader keeps
working; a branch to a contact that is gone ends at Timer B (docs/connect.md, known limits)."""

from __future__ import annotations

import asyncio
import socket

import uvloop

from routr_ray.edge.transports.udp import UdpListener


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _scenario() -> list[bytes]:
    received: list[bytes] = []
    listener = UdpListener("0.0.0.0", 0, lambda data, flow: received.append(data))
    await listener.start()
    try:
        assert listener.send_now(("127.0.0.1", _closed_udp_port()), b"to nobody")  # ICMP port unreachable back
        await asyncio.sleep(0.2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"OPTIONS sip:x SIP/2.0\r\n\r\n", ("127.0.0.1", listener.local_address[1]))
            await asyncio.sleep(0.2)
        return received
    finally:
        await listener.stop()


def test_a_wildcard_udp_socket_on_uvloop_still_receives_after_an_icmp_error() -> None:
    assert uvloop.run(_scenario()) == [b"OPTIONS sip:x SIP/2.0\r\n\r\n"]
