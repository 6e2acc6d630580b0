"""RFC 3261 §18.4 on a wildcard UDP listening point (IP_RECVERR): an ICMP port unreachable names the destination
that refused, and never fails a later datagram to another destination (Linux reports a pending ICMP error on the
socket's next call, whatever that call is for)."""

from __future__ import annotations

import asyncio
import socket

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


async def _keeps_reading_after_icmp_errors() -> None:
    received: list[bytes] = []
    refused: list[tuple[str, int]] = []
    listener = UdpListener("0.0.0.0", 0, lambda data, flow: received.append(data))
    listener.on_unreachable = refused.extend
    await listener.start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        port = listener.local_address[1]
        for round_ in range(3):
            dead = closed_udp_port()
            assert listener.send_now(("127.0.0.1", dead), b"to nobody")
            await asyncio.sleep(0.1)  # the ICMP error is queued on the listener's socket
            sender.sendto(b"hello %d" % round_, ("127.0.0.1", port))
            for _ in range(50):
                if len(received) > round_:
                    break
                await asyncio.sleep(0.01)
            assert received == [b"hello %d" % i for i in range(round_ + 1)], (round_, received)
            assert ("127.0.0.1", dead) in refused
        assert listener.counters.icmp_errors >= 3
    finally:
        sender.close()
        await listener.stop()


def test_an_icmp_error_never_stops_the_listener_on_uvloop_or_asyncio() -> None:
    """Under uvloop (Ray actors) libuv stops watching a descriptor that reports POLLERR (a queued ICMP error): the
    listener watches a private epoll descriptor instead, so it keeps reading (the error queue is read each time)."""
    import uvloop

    for factory in (uvloop.new_event_loop, asyncio.new_event_loop):
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(asyncio.wait_for(_keeps_reading_after_icmp_errors(), 10))
