"""Readiness (issue 13 item 4): the EdgePort is ready only once its end-to-end probe answers, and says so again
when it stops answering. Also the probe's answerers: the SDK processor, Connect (every Location shard), and the
dispatcher runtime (every processor of its config)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from routr_ray.config.dispatcher import DispatcherConfig, ProcessorConfig
from routr_ray.dispatch.runtime import DispatchRuntime
from routr_ray.edge.readiness import Readiness
from routr_ray.location.errors import LocationError, LocationErrorCode
from routr_ray.location.local_client import LocalLocationClient
from routr_ray.location.service import LocationService
from routr_ray.processors import EchoProcessor, Processor
from routr_ray.processors.connect import ConnectProcessor
from routr_ray.processors.sdk import PROBE_KEY, PROBE_READY, is_probe, probe_answered_ready, probe_request
from routr_ray.proto.gen import processor_pb2

pytestmark = pytest.mark.timeout(10)


class Switch:
    """A probe that answers ``state`` (or raises, or hangs) and counts its calls."""

    def __init__(self, state: bool = False) -> None:
        self.state = state
        self.calls = 0
        self.raises = False
        self.hang = False

    async def __call__(self) -> bool:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.raises:
            raise ConnectionError("down")
        return self.state


async def test_not_ready_until_the_probe_answers_then_ready() -> None:
    probe = Switch(False)
    readiness = Readiness(probe, interval=0.01, recheck=10.0, timeout=1.0)
    await readiness.start(first_wait=0.5)
    try:
        assert readiness.ready is False and probe.calls >= 1
        assert await readiness.wait(0.05) is False
        probe.state = True
        assert await readiness.wait(1.0) is True
        assert readiness.ready is True
        calls = probe.calls
        await asyncio.sleep(0.1)
        assert probe.calls == calls  # once ready, only every `recheck` seconds
    finally:
        await readiness.stop()


async def test_a_probe_that_raises_or_hangs_is_not_ready() -> None:
    probe = Switch(True)
    probe.raises = True
    readiness = Readiness(probe, interval=0.01, recheck=10.0, timeout=0.05)
    assert await readiness.check() is False
    probe.raises, probe.hang = False, True
    assert await readiness.check() is False  # bounded by `timeout`
    probe.hang = False
    assert await readiness.check() is True
    await readiness.stop()


async def test_a_ready_edge_that_loses_its_path_is_not_ready_again() -> None:
    probe = Switch(True)
    readiness = Readiness(probe, interval=0.01, recheck=0.02, timeout=1.0)
    await readiness.start()
    try:
        assert readiness.ready
        probe.state = False
        for _ in range(100):
            await asyncio.sleep(0.01)
            if not readiness.ready:
                break
        assert readiness.ready is False
        assert await readiness.wait(0.05) is False
    finally:
        await readiness.stop()


async def test_concurrent_checks_share_one_probe() -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    calls = 0

    async def slow() -> bool:
        nonlocal calls
        calls += 1
        started.set()
        await release.wait()
        return True

    readiness = Readiness(slow, timeout=5.0)
    first = asyncio.ensure_future(readiness.check())
    await started.wait()
    second = asyncio.ensure_future(readiness.check())
    release.set()
    assert await first and await second and calls == 1
    await readiness.stop()


# the probe's answerers -----------------------------------------------------------------------------------


class Counting(Processor):
    def __init__(self, ready: Any = True) -> None:
        self._ready = ready
        self.handled = 0

    def handle(self, ctx: Any) -> int:
        self.handled += 1
        return 200

    async def ready(self) -> bool:
        if isinstance(self._ready, Exception):
            raise self._ready
        return bool(self._ready)


async def test_an_sdk_processor_answers_a_probe_without_running_its_pipeline() -> None:
    processor = Counting()
    request = probe_request()
    assert is_probe(request)
    (answer,) = await processor.process_batch([request])
    assert probe_answered_ready(answer) and not answer.HasField("message") and processor.handled == 0
    assert not probe_answered_ready((await Counting(False).process_batch([request]))[0])
    failing = (await Counting(RuntimeError("shard down")).process_batch([request]))[0]
    assert failing.metadata[PROBE_KEY].startswith("not-ready: RuntimeError")
    # a message that merely carries the key is not a probe: it goes through the pipeline as any other
    fake = processor_pb2.MessageRequest()
    fake.message.request_uri.host = "example.com"
    fake.metadata[PROBE_KEY] = "ask"
    assert not is_probe(fake)


def _location(count: int = 2) -> LocalLocationClient:
    return LocalLocationClient([LocationService(shard_index=i, shard_count=count) for i in range(count)])


async def test_connect_is_ready_when_every_location_shard_answers() -> None:
    from routr_ray.config import Resources

    connect = ConnectProcessor(Resources(), _location(), nonce_key=b"k" * 32)
    assert probe_answered_ready((await connect.process_batch([probe_request()]))[0])

    class DownLocation(LocalLocationClient):
        async def ping(self) -> None:
            raise LocationError(LocationErrorCode.UNAVAILABLE, "location shard unavailable")

    down = ConnectProcessor(Resources(), DownLocation(_location().shards), nonce_key=b"k" * 32)
    answer = (await down.process_batch([probe_request()]))[0]
    assert not probe_answered_ready(answer) and "unavailable" in answer.metadata[PROBE_KEY]


def _runtime(sends: dict[str, Any]) -> DispatchRuntime:
    def deployment_send(name: str) -> Any:
        return sends[name]

    return DispatchRuntime(deployment_send)


def _config(*addrs: str, methods: tuple[str, ...] = ("REGISTER",)) -> DispatcherConfig:
    return DispatcherConfig(processors=tuple(
        ProcessorConfig(ref=f"p{i}", addr=addr, methods=methods) for i, addr in enumerate(addrs)))


async def test_the_dispatcher_runtime_probes_every_processor_of_its_config() -> None:
    echo = EchoProcessor()
    down = Counting(False)

    async def to_echo(batch: list[processor_pb2.MessageRequest]) -> Sequence[processor_pb2.MessageResponse]:
        return await echo.process_batch(batch)

    async def to_down(batch: list[processor_pb2.MessageRequest]) -> Sequence[processor_pb2.MessageResponse]:
        return await down.process_batch(batch)

    async def unreachable(batch: list[processor_pb2.MessageRequest]) -> Sequence[processor_pb2.MessageResponse]:
        raise ConnectionError("no replica")

    runtime = _runtime({"echo": to_echo, "down": to_down, "gone": unreachable})
    assert await runtime.probe() == "the dispatcher has no config yet"
    runtime.apply(_config("serve://echo"))
    assert await runtime.probe() is None
    runtime.apply(_config("serve://echo", "serve://down"))
    assert "serve://down" in (await runtime.probe() or "")
    runtime.apply(_config("serve://echo", "serve://gone"))
    assert "does not answer" in (await runtime.probe() or "")
    await runtime.close()


async def test_only_what_a_register_needs_is_probed() -> None:
    """A processor for other methods that is down (the acceptance config's MESSAGE service at a dead address)
    leaves the EdgePorts ready; a config that routes no REGISTER is probed whole."""
    echo = EchoProcessor()

    async def to_echo(batch: list[processor_pb2.MessageRequest]) -> Sequence[processor_pb2.MessageResponse]:
        return await echo.process_batch(batch)

    async def unreachable(batch: list[processor_pb2.MessageRequest]) -> Sequence[processor_pb2.MessageResponse]:
        raise ConnectionError("no replica")

    runtime = _runtime({"echo": to_echo, "gone": unreachable})
    runtime.apply(DispatcherConfig(processors=(
        ProcessorConfig(ref="message-service", addr="serve://gone", methods=("MESSAGE",)),
        ProcessorConfig(ref="connect", addr="serve://echo", methods=("REGISTER", "MESSAGE")),
    )))
    assert [e.ref for e in runtime.probed_entries()] == ["connect"]
    assert await runtime.probe() is None
    runtime.apply(_config("serve://echo", "serve://gone", methods=("OPTIONS",)))
    assert "does not answer" in (await runtime.probe() or "")
    await runtime.close()


async def test_a_remote_processor_is_ready_unless_its_health_check_fails() -> None:
    runtime = _runtime({})
    runtime.apply(_config("127.0.0.1:9"))  # nothing listens there
    client = runtime.remote["127.0.0.1:9"]
    client.health_timeout = 0.5
    assert client.healthy is None  # no health check has run yet: the probe runs one
    assert "fails its health check" in (await runtime.probe() or "")
    client.healthy, client.has_health_service = None, False  # a server without the Health service: calls tell
    assert await runtime.probe() is None
    await runtime.close()


def test_probe_answer_values() -> None:
    answer = processor_pb2.MessageResponse()
    assert not probe_answered_ready(answer) and not probe_answered_ready(None)
    answer.metadata[PROBE_KEY] = PROBE_READY
    assert probe_answered_ready(answer)
