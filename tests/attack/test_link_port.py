"""Attacks on a link server (the internal data plane, docs/link.md; issue 14 item 6), with its shipped limits:
whoever reaches the port cannot make it hold memory or connections before presenting the token."""

from __future__ import annotations

import asyncio
import time

from routr_ray.link import Endpoint, LinkClient, LinkServer
from routr_ray.link.frames import HEADER, HELLO

TOKEN = b"k" * 32


async def echo(payload: bytes) -> bytes:
    return payload


async def test_a_hello_declaring_64_mib_is_closed_after_a_few_dozen_bytes() -> None:
    server = LinkServer(echo, token=TOKEN)
    host, port = await server.start()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(HEADER.pack(64 << 20, 0, HELLO) + b"\0" * 23)  # 32 bytes of a 64 MiB "token"
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 2) == b""  # closed, nothing buffered waiting for the rest
        writer.close()
        assert server.refused_connections == 1 and server.connections == 0
    finally:
        await server.close()


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await reader.read(1) == b""
    except ConnectionResetError:  # aborted: closed all the same
        return True


async def test_1000_idle_connections_are_closed_and_the_clusters_client_still_gets_in() -> None:
    server = LinkServer(echo, token=TOKEN)
    host, port = await server.start()
    idle = [await asyncio.open_connection(host, port) for _ in range(1000)]  # each sends nothing
    try:
        client = LinkClient(Endpoint("member", host, port, TOKEN))
        try:
            assert await asyncio.wait_for(client.call(b"still here"), 5) == b"still here"
        finally:
            client.close()
        started = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*(closed(reader) for reader, _ in idle)),
                                         server.handshake_timeout + 5)
        assert all(results) and len(results) == 1000
        assert time.monotonic() - started <= server.handshake_timeout + 5
        assert server.pending == 0 and server.connections == 0
    finally:
        for _, writer in idle:
            writer.close()
        await server.close()
