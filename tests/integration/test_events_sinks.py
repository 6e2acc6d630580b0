"""Events reach real subscribers: a nats-server (Debian's ``nats-server``) and a redis-server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from routr_ray.observability.events import Event, call_ended, call_started, endpoint_registered
from routr_ray.observability.publisher import EventPublisher
from routr_ray.observability.sinks import NatsSink, RedisSink
from tests.support.redis_server import RedisServer, free_port

NATS_SERVER = shutil.which("nats-server")

EVENTS = [
    endpoint_registered("sip:alice@example.com", 300, {"X-Tenant": "t1"}),
    call_started("c1@host", "sip:alice@example.com", "sip:bob@example.com", {}),
    call_ended("c1@host", 486, {}),
]


class NatsServer:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        if NATS_SERVER is None:
            raise RuntimeError("these tests need Debian's nats-server: apt-get install -y nats-server")
        self._process = subprocess.Popen([NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port)],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    raise RuntimeError(f"nats-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None


@pytest.fixture
def nats_server() -> Iterator[NatsServer]:
    server = NatsServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
async def publisher_factory() -> AsyncIterator[list[EventPublisher]]:
    made: list[EventPublisher] = []
    yield made
    for publisher in made:
        await publisher.stop(drain_timeout=0.5)


async def received(queue: asyncio.Queue[tuple[str, bytes]], count: int) -> list[tuple[str, dict]]:
    out = []
    async with asyncio.timeout(5.0):
        while len(out) < count:
            subject, data = await queue.get()
            out.append((subject, json.loads(data)))
    return out


def expected(prefix: str) -> list[tuple[str, dict]]:
    return [(f"{prefix}.{e.name}", dict(e.data)) for e in EVENTS]


async def test_nats_subscriber_receives_events_with_routr_subjects(
    nats_server: NatsServer, publisher_factory: list[EventPublisher]
) -> None:
    import nats

    subscriber = await nats.connect(nats_server.url)
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def on_message(msg: object) -> None:
        queue.put_nowait((msg.subject, msg.data))  # type: ignore[attr-defined]

    await subscriber.subscribe("routr.>", cb=on_message)
    await subscriber.flush()
    publisher = EventPublisher([NatsSink(nats_server.url)])
    publisher_factory.append(publisher)
    await publisher.start()
    for event in EVENTS:
        assert publisher.publish(event)
    try:
        assert await received(queue, 3) == expected("routr")
    finally:
        await subscriber.close()
    assert publisher.stats()["nats"].published == 3


async def test_nats_sink_counts_failures_while_the_server_is_down_then_recovers(
    publisher_factory: list[EventPublisher],
) -> None:
    import nats

    server = NatsServer()  # not started yet
    publisher = EventPublisher([NatsSink(server.url, connect_timeout=0.5)], send_timeout=1.0)
    publisher_factory.append(publisher)
    await publisher.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert publisher.publish(EVENTS[0])
    assert loop.time() - started < 0.01  # the SIP path never waits for NATS
    for _ in range(300):
        await asyncio.sleep(0.01)
        if publisher.stats()["nats"].failed:
            break
    assert publisher.stats()["nats"].failed == 1
    await asyncio.to_thread(server.start)
    try:
        subscriber = await nats.connect(server.url)
        queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

        async def on_message(msg: object) -> None:
            queue.put_nowait((msg.subject, msg.data))  # type: ignore[attr-defined]

        await subscriber.subscribe("routr.>", cb=on_message)
        await subscriber.flush()
        publisher.publish(EVENTS[2])
        assert await received(queue, 1) == expected("routr")[2:]
        await subscriber.close()
    finally:
        await publisher.stop(drain_timeout=0.5)
        server.stop()


async def test_redis_subscriber_receives_events(
    redis_server: RedisServer, publisher_factory: list[EventPublisher]
) -> None:
    from redis import asyncio as aioredis

    client = aioredis.from_url(redis_server.url)
    pubsub = client.pubsub()
    await pubsub.psubscribe("pbx.*")
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def reader() -> None:
        async for message in pubsub.listen():
            if message["type"] == "pmessage":
                queue.put_nowait((message["channel"].decode(), message["data"]))

    task = asyncio.create_task(reader())
    publisher = EventPublisher([RedisSink(redis_server.url, prefix="pbx")])
    publisher_factory.append(publisher)
    await publisher.start()
    try:
        for event in EVENTS:
            publisher.publish(event)
        assert await received(queue, 3) == expected("pbx")
    finally:
        task.cancel()
        await pubsub.aclose()
        await client.aclose()


async def test_one_event_reaches_log_nats_and_redis_together(
    nats_server: NatsServer, redis_server: RedisServer, publisher_factory: list[EventPublisher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    import nats
    from redis import asyncio as aioredis

    from routr_ray.observability.sinks import LogSink

    caplog.set_level(logging.INFO, logger="routr_ray.events")
    nc = await nats.connect(nats_server.url)
    sub = await nc.subscribe("routr.call.ended")
    await nc.flush()
    client = aioredis.from_url(redis_server.url)
    pubsub = client.pubsub()
    await pubsub.subscribe("routr.call.ended")
    await pubsub.get_message(timeout=1.0)  # the subscribe confirmation
    publisher = EventPublisher([LogSink(), NatsSink(nats_server.url), RedisSink(redis_server.url)])
    publisher_factory.append(publisher)
    await publisher.start()
    event: Event = call_ended("c9@host", 603, {"X-Id": "9"})
    publisher.publish(event)
    try:
        msg = await sub.next_msg(timeout=5.0)
        assert json.loads(msg.data) == dict(event.data)
        got = None
        async with asyncio.timeout(5.0):
            while got is None:
                got = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
        assert json.loads(got["data"]) == dict(event.data)
        assert any(r.getMessage().startswith("call.ended {") for r in caplog.records)
    finally:
        await nc.close()
        await pubsub.aclose()
        await client.aclose()
