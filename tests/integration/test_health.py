"""The health/metrics HTTP endpoint: /healthz, /readyz (callbacks, sync and async), /metrics exposition."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from routr_ray.edge.health import HealthServer

pytestmark = pytest.mark.timeout(20)


async def http(address: tuple[str, int], request: bytes) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection(*address)
    writer.write(request)
    raw = await asyncio.wait_for(reader.read(), 3)
    writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), headers, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode()


class Switch:
    def __init__(self, value: bool = True) -> None:
        self.value = value

    def __call__(self) -> bool:
        return self.value


@pytest.fixture
async def parts() -> AsyncIterator[tuple[HealthServer, Switch, Switch, Counter]]:
    registry = CollectorRegistry()
    counter = Counter("routr_sip_messages", "SIP messages", ["direction"], registry=registry)
    alive, ready = Switch(), Switch(False)
    server = HealthServer("127.0.0.1", 0, registry=registry, liveness=alive, readiness=ready)
    await server.start()
    yield server, alive, ready, counter
    await server.stop()


async def test_healthz_and_readyz_follow_the_checks(
    parts: tuple[HealthServer, Switch, Switch, Counter],
) -> None:
    server, alive, ready, _ = parts
    address = server.local_address
    assert (await http(address, get("/healthz")))[0] == 200
    assert (await http(address, get("/readyz")))[0] == 503  # dispatcher not reachable yet
    ready.value = True
    status, headers, body = await http(address, get("/readyz"))
    assert (status, body) == (200, b"ready\n") and headers["Connection"] == "close"
    alive.value = False
    assert (await http(address, get("/healthz")))[0] == 503
    assert (await http(address, get("/readyz")))[0] == 503  # not alive is never ready


async def test_metrics_serves_the_registry_in_prometheus_text_format(
    parts: tuple[HealthServer, Switch, Switch, Counter],
) -> None:
    server, _, _, counter = parts
    counter.labels(direction="in").inc(3)
    status, headers, body = await http(server.local_address, get("/metrics"))
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    assert 'routr_sip_messages_total{direction="in"} 3.0' in body.decode()
    status, headers, body = await http(server.local_address, get("/metrics", "HEAD"))
    assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0


async def test_unknown_paths_methods_and_garbage(parts: tuple[HealthServer, Switch, Switch, Counter]) -> None:
    server, *_ = parts
    address = server.local_address
    assert (await http(address, get("/nope")))[0] == 404
    assert (await http(address, get("/healthz", "POST")))[0] == 405
    assert (await http(address, b"hello\r\n\r\n"))[0] == 400
    assert (await http(address, get("/healthz?verbose=1")))[0] == 200


async def test_async_checks_that_fail_raise_or_hang_are_not_ready() -> None:
    async def slow() -> bool:
        await asyncio.sleep(10)
        return True

    def broken() -> bool:
        raise RuntimeError("dispatcher gone")

    async def fine() -> bool:
        return True

    server = HealthServer("127.0.0.1", 0, liveness=fine, readiness=slow, check_timeout=0.2)
    await server.start()
    try:
        assert (await http(server.local_address, get("/healthz")))[0] == 200
        assert (await http(server.local_address, get("/readyz")))[0] == 503
        server.readiness = broken
        assert (await http(server.local_address, get("/readyz")))[0] == 503
        assert (await http(server.local_address, get("/metrics")))[0] == 404  # no registry given
    finally:
        await server.stop()


async def test_oversized_request_head_is_dropped() -> None:
    server = HealthServer("127.0.0.1", 0)
    await server.start()
    try:
        reader, writer = await asyncio.open_connection(*server.local_address)
        writer.write(b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
        try:
            assert await asyncio.wait_for(reader.read(), 3) == b""
        except ConnectionResetError:
            pass
        writer.close()
        assert (await http(server.local_address, get("/healthz")))[0] == 200
    finally:
        await server.stop()
