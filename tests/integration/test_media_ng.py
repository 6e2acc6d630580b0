"""The ng client and the instance pool over real UDP sockets on 127.0.0.1 (routr_ray/media/ng.py, pool.py), against
small scripted ng servers (a stand-in that answers what each test says; the real RTPEngine is in
test_media_relay.py): cookies, retransmissions, timeouts, ICMP port unreachable, per-call affinity, failover,
health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from routr_ray.media.bencode import decode, encode
from routr_ray.media.ng import NgClient, NgRejected, NgUnreachable
from routr_ray.media.pool import CallNotFound, NoInstance, RtpEngines
from tests.support.redis_server import free_port

pytestmark = pytest.mark.timeout(30)

Handler = Callable[[dict[str, Any]], dict[str, Any] | None]


class ScriptedNg(asyncio.DatagramProtocol):
    """Answers each request with ``handler(command)`` (None: no answer); keeps every datagram it got."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.datagrams: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def open(cls, handler: Handler, port: int = 0) -> ScriptedNg:
        _, server = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: cls(handler), local_addr=("127.0.0.1", port))
        return server

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.datagrams.append(data)
        cookie, _, body = data.partition(b" ")
        reply = self.handler(decode(body))
        if reply is not None:
            assert self.transport is not None
            self.transport.sendto(b"stranger " + encode({"result": "ok"}), addr)  # someone else's cookie: ignored
            self.transport.sendto(cookie + b" " + encode(reply), addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def commands(self) -> list[str]:
        return [decode(d.partition(b" ")[2])["command"] for d in self.datagrams]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def pong(command: dict[str, Any]) -> dict[str, Any]:
    return {"result": "pong"} if command["command"] == "ping" else {"result": "ok", "sdp": "v=0\r\n"}


async def test_a_command_and_its_reply_are_matched_by_cookie() -> None:
    server = await ScriptedNg.open(pong)
    client = NgClient("127.0.0.1", server.port, timeout=1.0, retries=2)
    try:
        assert await client.command({"command": "ping"}) == {"result": "pong"}
        assert (await client.command({"command": "offer", "call-id": "c", "from-tag": "f", "sdp": "v=0"}))["sdp"]
        first, second = (d.partition(b" ")[0] for d in server.datagrams)
        assert first != second and first.split(b"_")[0] == second.split(b"_")[0]  # one prefix, a counter
    finally:
        client.close(), server.close()


async def test_a_lost_datagram_is_retransmitted_with_the_same_cookie() -> None:
    seen = 0

    def drop_twice(command: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal seen
        seen += 1
        return None if seen < 3 else {"result": "pong"}

    server = await ScriptedNg.open(drop_twice)
    client = NgClient("127.0.0.1", server.port, timeout=0.6, retries=2)
    try:
        assert await client.command({"command": "ping"}) == {"result": "pong"}
        assert len(server.datagrams) == 3 and len(set(server.datagrams)) == 1  # the same bytes: one command
    finally:
        client.close(), server.close()


async def test_an_error_result_is_rejected_with_its_reason() -> None:
    server = await ScriptedNg.open(lambda c: {"result": "error", "error-reason": "Unknown call-id"})
    client = NgClient("127.0.0.1", server.port)
    try:
        with pytest.raises(NgRejected, match="Unknown call-id"):
            await client.command({"command": "answer"})
    finally:
        client.close(), server.close()


async def test_silence_is_unreachable_within_the_timeout() -> None:
    server = await ScriptedNg.open(lambda c: None)
    client = NgClient("127.0.0.1", server.port, timeout=0.3, retries=2)
    try:
        started = time.monotonic()
        with pytest.raises(NgUnreachable, match="no answer"):
            await client.command({"command": "ping"})
        assert 0.25 < time.monotonic() - started < 0.6
        assert len(server.datagrams) == 3
    finally:
        client.close(), server.close()


async def test_nothing_listening_is_unreachable_at_once() -> None:
    client = NgClient("127.0.0.1", free_port(), timeout=2.0, retries=2)
    try:
        started = time.monotonic()
        with pytest.raises(NgUnreachable):
            await client.command({"command": "ping"})
        assert time.monotonic() - started < 0.5  # ICMP port unreachable on the connected socket, not the 2 s
    finally:
        client.close()


class Cluster:
    """Scripted instances that hold calls: offer creates, answer/delete/query need the call."""

    def __init__(self) -> None:
        self.servers: dict[str, ScriptedNg] = {}
        self.calls: dict[str, set[str]] = {}
        self.silent: set[str] = set()

    async def add(self, ref: str) -> None:
        self.calls[ref] = set()

        def handle(command: dict[str, Any]) -> dict[str, Any] | None:
            if ref in self.silent:
                return None
            name, call = command["command"], command.get("call-id", "")
            if name == "ping":
                return {"result": "pong"}
            if name == "offer":
                self.calls[ref].add(call)
                return {"result": "ok", "sdp": f"v=0 {ref}"}
            if call not in self.calls[ref]:
                if name == "delete":
                    return {"result": "ok", "warning": "Call-ID not found or tags didn't match"}
                return {"result": "error", "error-reason": "Unknown call-id"}
            if name == "delete":
                self.calls[ref].discard(call)
            return {"result": "ok", "sdp": f"v=0 {ref}"}

        self.servers[ref] = await ScriptedNg.open(handle)

    def pool(self, **kw: Any) -> RtpEngines:
        return RtpEngines([(ref, "127.0.0.1", s.port) for ref, s in self.servers.items()],
                          timeout=kw.pop("timeout", 0.3), retries=1, **kw)

    def close(self) -> None:
        for server in self.servers.values():
            server.close()


@pytest.fixture
async def cluster():  # type: ignore[no-untyped-def]
    cluster = Cluster()
    for ref in ("a", "b", "c"):
        await cluster.add(ref)
    yield cluster
    cluster.close()


async def test_every_replica_computes_the_same_order_and_finds_the_call(cluster) -> None:  # type: ignore[no-untyped-def]
    one, two = cluster.pool(), cluster.pool()  # two middleware replicas
    try:
        orders = {tuple(i.ref for i in one.order(f"call-{n}")) for n in range(50)}
        assert len(orders) > 3, "calls spread over the instances"
        for n in range(20):
            assert [i.ref for i in one.order(f"call-{n}")] == [i.ref for i in two.order(f"call-{n}")]
        instance, _ = await one.new_call("call-x", {"command": "offer", "call-id": "call-x"})
        assert instance.ref == one.order("call-x")[0].ref and "call-x" in cluster.calls[instance.ref]
        found, reply = await two.existing_call("call-x", {"command": "answer", "call-id": "call-x"})
        assert found.ref == instance.ref and reply["sdp"] == f"v=0 {instance.ref}"
        assert await two.locate("call-y") is None
        with pytest.raises(CallNotFound):
            await two.existing_call("call-y", {"command": "delete", "call-id": "call-y"})
    finally:
        await one.close(), await two.close()


async def test_a_new_call_fails_over_and_the_dead_instance_is_skipped(cluster) -> None:  # type: ignore[no-untyped-def]
    pool = cluster.pool()
    try:
        first, second, _ = pool.order("call-f")
        cluster.silent.add(first.ref)
        started = time.monotonic()
        instance, _ = await pool.new_call("call-f", {"command": "offer", "call-id": "call-f"})
        assert instance is second and not first.up and time.monotonic() - started < 0.5
        # known down: the next calls do not wait for it
        started = time.monotonic()
        await pool.new_call("call-f", {"command": "offer", "call-id": "call-f"})
        assert time.monotonic() - started < 0.1
        # it answers its pings again: up
        cluster.silent.clear()
        await pool.ping_all()
        assert first.up
    finally:
        await pool.close()


async def test_all_instances_down_is_no_instance_at_once(cluster) -> None:  # type: ignore[no-untyped-def]
    pool = cluster.pool()
    try:
        cluster.silent.update(cluster.servers)
        await pool.ping_all()
        assert pool.live == []
        started = time.monotonic()
        with pytest.raises(NoInstance):
            await pool.new_call("call-d", {"command": "offer", "call-id": "call-d"})
        with pytest.raises(NoInstance):
            await pool.existing_call("call-d", {"command": "answer", "call-id": "call-d"})
        assert time.monotonic() - started < 0.05
    finally:
        await pool.close()


async def test_the_pinger_marks_instances_down_and_up(cluster) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, bool]] = []

    class Recorder:
        def command(self, instance: str, command: str, result: str, seconds: float) -> None:
            pass

        def instance_up(self, instance: str, up: bool) -> None:
            seen.append((instance, up))

    pool = cluster.pool(ping_interval=0.1, recorder=Recorder())
    try:
        pool.start()
        cluster.silent.add("b")
        for _ in range(50):
            if not pool.by_ref["b"].up:
                break
            await asyncio.sleep(0.05)
        assert not pool.by_ref["b"].up and pool.by_ref["a"].up
        cluster.silent.clear()
        for _ in range(50):
            if pool.by_ref["b"].up:
                break
            await asyncio.sleep(0.05)
        assert pool.by_ref["b"].up
        assert ("b", False) in seen and seen[-1][1] in (True, False)
    finally:
        await pool.close()
