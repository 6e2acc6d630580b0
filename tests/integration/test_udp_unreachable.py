"""RFC 3261 §18.4 on a wildcard UDP listening point (IP_RECVERR): an ICMP port unreachable names the destination
that refused, and never fails a later datagram to another destination (Linux reports a pending ICMP error on the
socket's next call, whatever that call is for)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from routr_ray.edge.transports.udp import UdpListener


def closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_the_refused_destination_is_reported_and_the_next_send_goes_out() -> None:
    refused: list[tuple[str, int]] = []
    listener = UdpListener("0.0.0.0", 0, lambda data, flow: None)
    listener.on_unreachable = refused.extend
    await listener.start()
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.setblocking(False)
    try:
        dead = closed_udp_port()
        assert listener.send_now(("127.0.0.1", dead), b"to nobody")
        await asyncio.sleep(0.1)  # the ICMP error is back before the next send
        assert listener.send_now(receiver.getsockname(), b"to somebody")  # not failed by the earlier error
        await asyncio.sleep(0.1)
        assert receiver.recv(100) == b"to somebody"
        assert ("127.0.0.1", dead) in refused
    finally:
        receiver.close()
        await listener.stop()


async def _receives_after_an_icmp_error(pause: float) -> list[bytes]:
    received: list[bytes] = []
    listener = UdpListener("0.0.0.0", 0, lambda data, flow: received.append(data))
    await listener.start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        assert listener.send_now(("127.0.0.1", closed_udp_port()), b"to nobody")
        await asyncio.sleep(pause)  # nothing sent meanwhile: only the reader can notice the error
        sender.sendto(b"hello", ("127.0.0.1", listener.local_address[1]))
        for _ in range(100):
            if received:
                break
            await asyncio.sleep(0.01)
        return received
    finally:
        sender.close()
        await listener.stop()


async def test_the_listener_keeps_receiving_after_an_icmp_error() -> None:
    assert await _receives_after_an_icmp_error(0.1) == [b"hello"]


def test_the_listener_keeps_receiving_after_an_icmp_error_on_uvloop() -> None:
    """libuv stops polling a socket that reports POLLERR (what an ICMP error queued by IP_RECVERR is) and never
    calls its reader again; the EdgePort actors run on uvloop (Ray's async actors)."""
    uvloop = pytest.importorskip("uvloop")
    loop = uvloop.new_event_loop()
    try:
        assert loop.run_until_complete(_receives_after_an_icmp_error(0.1)) == [b"hello"]
    finally:
        loop.close()
