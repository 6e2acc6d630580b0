"""Issue 13 item 4 on real sockets: listening is not ready. Until the EdgePort's end-to-end probe (the dispatcher
client's ``ready()``) answers, OPTIONS to the EdgePort itself gets 503 with Retry-After and /readyz 503; once it
answers, 200 to both; a path that breaks later turns them back to 503; a draining EdgePort is not ready."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from routr_ray.config.edgeport import HealthConfig
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort, EdgePortOptions
from routr_ray.sip import Response
from tests.integration.test_edgeport import FAST, UdpPeer, config, fake_processor, request
from tests.integration.test_edgeport_transports import http_get

pytestmark = pytest.mark.timeout(30)


class GatedDispatcher(FakeDispatcher):
    """A fake dispatcher whose end-to-end probe answers only once ``path_up`` (messages pass regardless: the
    probe alone decides readiness)."""

    def __init__(self) -> None:
        super().__init__(fake_processor())
        self.path_up = False
        self.probes = 0

    async def ready(self) -> bool:
        self.probes += 1
        return self.path_up


@pytest.fixture
async def gated() -> GatedDispatcher:
    return GatedDispatcher()


@pytest.fixture
async def edge(gated: GatedDispatcher) -> AsyncIterator[EdgePort]:
    port = EdgePort(config(health=HealthConfig(port=0, bind_addr="127.0.0.1")), gated,
                    options=EdgePortOptions(timers=FAST, ready_interval=0.02, ready_recheck=0.05, retry_after=2))
    await port.start()
    yield port
    await port.stop()


@pytest.fixture
async def client() -> AsyncIterator[UdpPeer]:
    peer = await UdpPeer.open()
    yield peer
    peer.close()


async def options(edge: EdgePort, client: UdpPeer, n: int) -> Response:
    host, port = edge.address("udp")
    client.send(request("OPTIONS", f"sip:{host}:{port}", client.port, branch=f"z9hG4bKready{n}",
                        call_id=f"ready-{n}"), (host, port))
    answer = await client.recv()
    assert isinstance(answer, Response)
    return answer


async def readyz(edge: EdgePort) -> int:
    assert edge.health is not None
    return (await http_get(edge.health.local_address, "/readyz"))[0]


async def until(predicate: object, seconds: float = 3.0) -> None:
    for _ in range(int(seconds / 0.01)):
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_options_and_readyz_say_503_until_the_path_answers(
    edge: EdgePort, gated: GatedDispatcher, client: UdpPeer
) -> None:
    assert edge.is_alive()  # listening ...
    answer = await options(edge, client, 1)  # ... is not ready
    assert answer.status == 503 and answer.headers.get("Retry-After") == "2"
    assert await readyz(edge) == 503
    assert await edge.wait_ready(0.05) is False
    assert gated.received == []  # the EdgePort answered the OPTIONS itself

    gated.path_up = True
    assert await edge.wait_ready(2.0) is True
    assert (await options(edge, client, 2)).status == 200
    assert await readyz(edge) == 200


async def test_a_path_that_breaks_turns_options_and_readyz_back_to_503(
    edge: EdgePort, gated: GatedDispatcher, client: UdpPeer
) -> None:
    gated.path_up = True
    assert await edge.wait_ready(2.0)
    gated.path_up = False
    assert await readyz(edge) == 503  # /readyz probes now
    await until(lambda: not edge.readiness.ready)  # the background probe (every ready_recheck s) too
    assert (await options(edge, client, 3)).status == 503


async def test_a_draining_edgeport_is_not_ready(edge: EdgePort, gated: GatedDispatcher, client: UdpPeer) -> None:
    gated.path_up = True
    assert await edge.wait_ready(2.0)
    await edge.drain(0)
    assert (await options(edge, client, 4)).status == 503
    assert await readyz(edge) == 503


async def test_a_dispatcher_that_answers_at_once_makes_the_edgeport_ready_when_it_starts(client: UdpPeer) -> None:
    edge = EdgePort(config(), FakeDispatcher(fake_processor()), options=EdgePortOptions(timers=FAST))
    await edge.start()  # waits briefly for the first probe: a quick answer decides at once
    try:
        assert edge.readiness.ready
        assert (await options(edge, client, 5)).status == 200
    finally:
        await edge.stop()
