"""Issue 14: 50 sources x 100 TCP connections with keepalives fill the EdgePort's connection table; the
per-source cap holds each source at 100, and a new client from another source still connects and registers.

Policy when the total cap is reached (routr_ray/edge/connections.py, docs/security.md): the idlest inbound
connection of the heaviest source is closed to admit a source holding fewer (fair share by eviction); a source
that would hold as many as the heaviest is refused.

In-process EdgePort on real TCP sockets, the 50 sources being 127.0.1.1-127.0.1.50 (all of 127/8 is local).
The per-source cap is the shipped 100; the total cap is set to 5,000 here (shipped: 10,000) so that the 50 x 100
flood fills it exactly: filling 10,000 would need 100 sources and twice the sockets (20,000 file descriptors, the
limit of this process) for the same behaviour.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource

import pytest

from routr_ray.config.edgeport import ConnectionLimits
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions
from routr_ray.sip import Response, parse
from tests.integration.test_edgeport import FAST, config, fake_processor, request

pytestmark = pytest.mark.timeout(120)

SOURCES = 50
PER_SOURCE = 100
TOTAL = SOURCES * PER_SOURCE


async def connect(host: str, port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
    except OSError:
        return None
    return reader, writer


async def closed_soon(reader: asyncio.StreamReader, within: float = 2.0) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), within) == b""
    except (TimeoutError, ConnectionError):
        return False


async def test_50_sources_x_100_connections_cannot_lock_out_a_new_client() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2 * TOTAL + 500:
        pytest.skip(f"needs {2 * TOTAL + 500} file descriptors (hard limit {hard})")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    limits = ConnectionLimits(max_connections=TOTAL, max_connections_per_source=PER_SOURCE)
    edge = EdgePort(config(limits=limits), FakeDispatcher(fake_processor()), options=EdgePortOptions(timers=FAST))
    await edge.start()
    host, port = edge.address("tcp")
    flood: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    keepalive: asyncio.Task[None] | None = None
    try:
        for s in range(SOURCES):
            source = f"127.0.1.{s + 1}"
            opened = await asyncio.gather(*(connect(host, port, source) for _ in range(PER_SOURCE)))
            assert all(c is not None for c in opened)
            flood += [c for c in opened if c is not None]
        await asyncio.sleep(0.2)
        assert len(edge.connections) == TOTAL

        async def keep_alive() -> None:  # RFC 5626 §4.4.1 double-CRLF pings on every flood connection
            while True:
                for _, writer in flood:
                    if not writer.is_closing():
                        writer.write(b"\r\n\r\n")
                await asyncio.sleep(0.5)

        keepalive = asyncio.get_running_loop().create_task(keep_alive())
        await asyncio.sleep(0.6)

        # the per-source cap holds: a 101st connection from a flooding source is closed at once
        extra = await connect(host, port, "127.0.1.7")
        assert extra is not None and await closed_soon(extra[0])
        extra[1].close()
        assert edge.connections.count_from("127.0.1.7") == PER_SOURCE

        # a new client from another source connects and registers
        reader, writer = await asyncio.open_connection(host, port, local_addr=("127.0.2.1", 0))
        local_port = writer.get_extra_info("sockname")[1]
        writer.write(request("REGISTER", "sip:example.com", local_port, transport="TCP", host="127.0.2.1"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        answer = parse(head)
        assert isinstance(answer, Response) and answer.status == 200
        assert edge.connections.count_from("127.0.2.1") == 1
        # it took one slot from a flooding source (now 99); the table stays at its cap
        assert edge.connections.evictions == 1 and len(edge.connections) == TOTAL
        counts = sorted(edge.connections.count_from(f"127.0.1.{s + 1}") for s in range(SOURCES))
        assert counts[0] == PER_SOURCE - 1 and counts[-1] == PER_SOURCE

        # a flooding source cannot take the slot back: it would hold as many as the heaviest
        victim = next(f"127.0.1.{s + 1}" for s in range(SOURCES)
                      if edge.connections.count_from(f"127.0.1.{s + 1}") == PER_SOURCE - 1)
        again = await connect(host, port, victim)
        assert again is not None and await closed_soon(again[0])
        again[1].close()
        assert edge.connections.count_from("127.0.2.1") == 1 and edge.connections.evictions == 1
        writer.close()
    finally:
        if keepalive is not None:
            keepalive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keepalive
        for _, w in flood:
            w.close()
        await edge.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
