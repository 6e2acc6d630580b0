"""LinkServer / LinkClient / LinkPool over real sockets on 127.0.0.1 (routr_ray/link)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from routr_ray.link import Endpoint, LinkClient, LinkConnectError, LinkError, LinkPool, LinkServer
from routr_ray.link.client import LinkRemoteError
from routr_ray.link.frames import CALL, ERROR, GOAWAY, GOAWAY_ID, HEADER, HELLO, REPLY, frame

TOKEN = b"t" * 32


async def echo_upper(payload: bytes) -> bytes:
    return payload.upper()


async def started(handler=echo_upper, **kwargs) -> LinkServer:  # type: ignore[no-untyped-def]
    server = LinkServer(handler, token=TOKEN, **kwargs)
    await server.start()
    return server


def endpoint(server: LinkServer, member: str = "a", token: bytes = TOKEN) -> Endpoint:
    host, port = server.address
    return Endpoint(member, host, port, token)


async def test_call_returns_the_handlers_bytes() -> None:
    server = await started()
    client = LinkClient(endpoint(server))
    try:
        assert await client.call(b"hello") == b"HELLO"
        assert await client.call(b"") == b""
        assert server.calls == 2 and server.connections == 1
    finally:
        client.close()
        await server.close()


async def test_calls_are_pipelined_and_answered_out_of_order() -> None:
    order: list[int] = []

    async def slow_first(payload: bytes) -> bytes:
        n = int(payload)
        await asyncio.sleep(0.05 * (5 - n))
        order.append(n)
        return payload

    server = await started(slow_first)
    client = LinkClient(endpoint(server))
    try:
        results = await asyncio.gather(*(client.call(str(n).encode()) for n in range(5)))
        assert results == [str(n).encode() for n in range(5)]  # each caller got its own answer
        assert order == [4, 3, 2, 1, 0]  # all five ran at once on one connection
    finally:
        client.close()
        await server.close()


async def test_wrong_token_closes_the_connection() -> None:
    server = await started()
    client = LinkClient(endpoint(server, token=b"wrong"))
    try:
        with pytest.raises(LinkError) as info:
            await asyncio.wait_for(client.call(b"x"), 2)
        assert not isinstance(info.value, LinkConnectError)  # it was sent (and refused)
        assert server.calls == 0
    finally:
        client.close()
        await server.close()


async def test_handler_error_comes_back_as_remote_error() -> None:
    async def broken(payload: bytes) -> bytes:
        if payload == b"bad":
            raise ValueError("no such op")
        return payload

    server = await started(broken)
    client = LinkClient(endpoint(server))
    try:
        with pytest.raises(LinkRemoteError, match="no such op"):
            await client.call(b"bad")
        assert await asyncio.wait_for(client.call(b"good"), 2) == b"good"  # the connection stays usable
    finally:
        client.close()
        await server.close()


async def test_server_going_away_fails_calls_in_flight() -> None:
    release = asyncio.Event()

    async def hang(payload: bytes) -> bytes:
        await release.wait()
        return payload

    server = await started(hang)
    client = LinkClient(endpoint(server))
    call = asyncio.ensure_future(client.call(b"x"))
    await asyncio.sleep(0.05)
    await server.close()
    with pytest.raises(LinkError) as info:
        await asyncio.wait_for(call, 2)
    assert not isinstance(info.value, LinkConnectError)
    client.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_refused_connection_is_a_connect_error_and_backs_off() -> None:
    client = LinkClient(Endpoint("x", "127.0.0.1", closed_port(), TOKEN), retry_after=30)
    with pytest.raises(LinkConnectError):
        await client.call(b"x")
    assert not client.usable
    with pytest.raises(LinkConnectError, match="failed recently"):
        await client.call(b"x")


async def test_busy_connection_answers_error_instead_of_queueing() -> None:
    release = asyncio.Event()

    async def hang(payload: bytes) -> bytes:
        await release.wait()
        return payload

    server = await started(hang, max_calls=2)
    client = LinkClient(endpoint(server))
    try:
        first = [asyncio.ensure_future(client.call(b"%d" % i)) for i in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(LinkRemoteError, match="busy"):
            await asyncio.wait_for(client.call(b"third"), 2)
        release.set()
        assert await asyncio.gather(*first) == [b"0", b"1"]
        assert server.rejected == 1
    finally:
        client.close()
        await server.close()


async def test_pool_spreads_calls_and_drops_removed_endpoints() -> None:
    seen: list[str] = []
    release = asyncio.Event()

    def named(name: str):  # type: ignore[no-untyped-def]
        async def handler(payload: bytes) -> bytes:
            seen.append(name)
            await release.wait()
            return name.encode()
        return handler

    a, b = await started(named("a")), await started(named("b"))
    pool = LinkPool()
    pool.update([endpoint(a, "a"), endpoint(b, "b")])
    try:
        calls = [asyncio.ensure_future(pool.call(b"x")) for _ in range(4)]
        await asyncio.sleep(0.05)
        assert sorted(seen) == ["a", "a", "b", "b"]  # least outstanding first
        release.set()
        assert sorted(await asyncio.gather(*calls)) == [b"a", b"a", b"b", b"b"]
        pool.update([endpoint(b, "b")])
        assert [e.member for e in pool.endpoints] == ["b"]
        assert {await pool.call(b"x") for _ in range(3)} == {b"b"}
        pool.update([])
        with pytest.raises(LinkConnectError, match="no usable endpoint"):
            await pool.call(b"x")
    finally:
        pool.close()
        await a.close()
        await b.close()


# ---- draining (issue 18 item 2): a stopping replica takes no new call and answers those in flight -------------


async def test_a_draining_server_answers_its_calls_in_flight_and_the_pool_sends_the_rest_elsewhere() -> None:
    release = asyncio.Event()
    seen: list[str] = []

    def named(name: str):  # type: ignore[no-untyped-def]
        async def handler(payload: bytes) -> bytes:
            seen.append(name)
            if name == "a":
                await release.wait()
            return name.encode()
        return handler

    a, b = await started(named("a")), await started(named("b"))
    pool = LinkPool()
    pool.update([endpoint(a, "a")])
    try:
        in_flight = [asyncio.ensure_future(pool.call(b"x")) for _ in range(3)]
        await asyncio.sleep(0.05)
        assert seen == ["a", "a", "a"]
        pool.update([endpoint(a, "a"), endpoint(b, "b")])  # b joins; a is still listed (the registry lags)
        drained = asyncio.ensure_future(a.drain(5.0))
        await asyncio.sleep(0.05)
        # a said GOAWAY: no new call goes there
        assert [await pool.call(b"y") for _ in range(5)] == [b"b"] * 5
        assert not drained.done()  # a waits for its calls in flight
        release.set()
        assert await asyncio.gather(*in_flight) == [b"a", b"a", b"a"]  # answered, not failed
        assert await asyncio.wait_for(drained, 2.0) is True  # the client acknowledged: a closed at once
        assert a.connections == 0
        assert seen.count("a") == 3
    finally:
        pool.close()
        await a.close()
        await b.close()


async def test_a_client_told_to_go_away_sends_nothing_more_and_new_connections_are_refused() -> None:
    release = asyncio.Event()

    async def hang(payload: bytes) -> bytes:
        await release.wait()
        return payload

    server = await started(hang)
    client = LinkClient(endpoint(server))
    try:
        call = asyncio.ensure_future(client.call(b"x"))
        await asyncio.sleep(0.05)
        drained = asyncio.ensure_future(server.drain(5.0))
        await asyncio.sleep(0.05)
        assert client.draining and not client.usable
        with pytest.raises(LinkConnectError, match="draining"):  # nothing sent: the caller may go elsewhere
            await client.call(b"y")
        release.set()
        assert await call == b"x"
        assert await asyncio.wait_for(drained, 2.0) is True
        assert server.calls == 1
        fresh = LinkClient(endpoint(server))
        with pytest.raises(LinkConnectError):  # the listening socket is closed
            await fresh.call(b"z")
    finally:
        client.close()
        await server.close()


async def test_a_client_that_never_acknowledges_is_waited_for_until_it_leaves() -> None:
    """A client of an older version ignores GOAWAY (an ERROR for call id 0, none of its calls): the server keeps
    answering it until it closes (its registry refresh dropped the server), within the drain's time."""
    server = await started()
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        writer.write(frame(HELLO, 0, TOKEN) + frame(CALL, 7, b"old"))
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(HEADER.size + 3), 2) == frame(REPLY, 7, b"OLD")
        drained = asyncio.ensure_future(server.drain(5.0))
        goaway = await asyncio.wait_for(reader.readexactly(HEADER.size + len(GOAWAY)), 2)
        assert goaway == frame(ERROR, GOAWAY_ID, GOAWAY)
        writer.write(frame(CALL, 8, b"still"))  # sent before it noticed: answered
        assert await asyncio.wait_for(reader.readexactly(HEADER.size + 5), 2) == frame(REPLY, 8, b"STILL")
        assert not drained.done()
        writer.close()
        assert await asyncio.wait_for(drained, 2.0) is True
    finally:
        writer.close()
        await server.close()


async def test_a_drain_that_outlasts_its_time_closes_what_is_left() -> None:
    async def hang(payload: bytes) -> bytes:
        await asyncio.Event().wait()
        return payload

    server = await started(hang)
    client = LinkClient(endpoint(server))
    call = asyncio.ensure_future(client.call(b"x"))
    await asyncio.sleep(0.05)
    assert await server.drain(0.2) is False
    with pytest.raises(LinkError):
        await asyncio.wait_for(call, 2)
    client.close()


async def test_the_pool_passes_over_a_server_that_refuses_and_calls_the_next() -> None:
    server = await started()
    pool = LinkPool(retry_after=30)
    pool.update([Endpoint("gone", "127.0.0.1", closed_port(), TOKEN), endpoint(server, "up")])
    try:
        assert {await pool.call(b"x") for _ in range(4)} == {b"X"}  # never a LinkConnectError to the caller
    finally:
        pool.close()
        await server.close()


# ---- before the token (DESIGN §6b): nothing buffered, no idle connection kept --------------------------------


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection (fails the test when it stays open 2 s)."""
    return await asyncio.wait_for(reader.read(), 2.0)


async def test_a_hello_declaring_64_mib_is_closed_after_its_header() -> None:
    server = await started()
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        writer.write(HEADER.pack(64 << 20, 0, HELLO))  # 9 bytes: the server must not wait for the rest
        await writer.drain()
        assert await read_until_closed(reader) == b""
        assert server.refused_connections == 1 and server.connections == 0
    finally:
        writer.close()
        await server.close()


async def test_a_call_before_the_hello_is_refused_at_its_header() -> None:
    server = await started()
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        writer.write(HEADER.pack(10, 1, CALL))
        await writer.drain()
        assert await read_until_closed(reader) == b""
        assert server.calls == 0
    finally:
        writer.close()
        await server.close()


async def test_a_connection_without_hello_is_closed_after_the_handshake_timeout() -> None:
    server = await started(handshake_timeout=0.2)
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        writer.write(b"\x00\x00")  # a header that never completes
        await writer.drain()
        started_at = asyncio.get_running_loop().time()
        assert await read_until_closed(reader) == b""
        assert asyncio.get_running_loop().time() - started_at < 1.5
        assert server.connections == 0 and server.pending == 0
    finally:
        writer.close()
        await server.close()


async def test_calls_in_the_same_write_as_the_hello_are_answered() -> None:
    server = await started()
    reader, writer = await asyncio.open_connection(*server.address)
    try:
        big = b"x" * 100_000  # far above the HELLO limit: the authenticated reader takes it
        writer.write(frame(HELLO, 0, TOKEN) + frame(CALL, 7, big))
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(HEADER.size), 2)
        length, call_id, kind = HEADER.unpack(header)
        assert (kind, call_id) == (REPLY, 7)
        assert await reader.readexactly(length) == big.upper()
    finally:
        writer.close()
        await server.close()


async def test_idle_connections_evict_each_other_and_a_client_still_gets_in() -> None:
    server = await started(max_pending=8, handshake_timeout=30)
    idle = [await asyncio.open_connection(*server.address) for _ in range(40)]
    client = LinkClient(endpoint(server))
    try:
        await asyncio.sleep(0.05)
        assert server.pending <= 8  # the oldest were closed as new ones came
        closed = 0
        for reader, _ in idle[:32]:
            closed += await read_until_closed(reader) == b""
        assert closed == 32
        assert await client.call(b"in") == b"IN"  # the cluster's own client is not locked out
    finally:
        client.close()
        for _, writer in idle:
            writer.close()
        await server.close()


async def test_connections_beyond_the_cap_are_closed_at_once() -> None:
    server = await started(max_connections=3)
    clients = [LinkClient(endpoint(server, member=str(i))) for i in range(3)]
    try:
        for c in clients:
            assert await c.call(b"a") == b"A"
        reader, writer = await asyncio.open_connection(*server.address)
        assert await read_until_closed(reader) == b""
        writer.close()
        assert server.connections == 3
    finally:
        for c in clients:
            c.close()
        await server.close()
