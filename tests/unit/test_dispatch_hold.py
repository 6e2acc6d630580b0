"""A failed call to an in-cluster (``serve://``) processor is held and tried again within the deadline
(issue 18 item 5, ``DispatchCore._held``): a replica that dies takes its calls with it, and the requests wait for
the one Serve starts instead of getting 503. A ``host:port`` processor's failure is still 503 at once, and a
request held past its deadline still gets 503."""

from __future__ import annotations

import asyncio
import time

from test_dispatch_support import message_request, sip_request

from routr_ray.config.dispatcher import ProcessorConfig
from routr_ray.dispatch.core import HOLD_MAX_RETRIES, DispatchCore
from routr_ray.dispatch.matching import Route, Router
from routr_ray.dispatch.metrics import DispatchMetrics
from routr_ray.dispatch.middleware import MiddlewareChain
from routr_ray.proto.gen import processor_pb2

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse


class Restarting:
    """A processor that fails (as a dead replica's calls do) until ``back_at`` on the monotonic clock."""

    def __init__(self, down_for: float) -> None:
        self.back_at = time.monotonic() + down_for
        self.calls = 0

    def answer(self, req: MessageRequest) -> MessageResponse:
        self.calls += 1
        if time.monotonic() < self.back_at:
            raise ConnectionError("the replica died")
        out = MessageResponse()
        out.message.CopyFrom(req.message)
        return out

    async def call(self, route: Route, req: MessageRequest) -> MessageResponse:
        return self.answer(req)

    async def batch(self, route: Route, requests: list[MessageRequest]) -> list[MessageResponse]:
        return [self.answer(r) for r in requests]


def core_for(addr: str, processor: Restarting, *, deadline: float = 5.0, batch: bool = False,
             metrics: DispatchMetrics | None = None) -> DispatchCore:
    router = Router([ProcessorConfig("connect-processor", addr, ("REGISTER", "INVITE"))])
    return DispatchCore(router, MiddlewareChain([]), processor.call, deadline=deadline,
                        call_batch=processor.batch if batch else None, metrics=metrics)


async def test_a_request_to_a_restarting_serve_processor_is_held_until_it_is_back() -> None:
    processor = Restarting(down_for=0.6)
    metrics = DispatchMetrics()
    core = core_for("serve://connect", processor, metrics=metrics)
    started = time.monotonic()
    out = await core.handle(message_request(sip_request("REGISTER")))
    assert out is not None and out.message.WhichOneof("message_type") == "request_uri"  # the processor's answer
    assert 0.6 <= time.monotonic() - started < 2.5
    assert processor.calls >= 3  # tried again with pauses, not once
    assert metrics.counts[("connect-processor", "retried")] == processor.calls - 1
    assert ("connect-processor", "unavailable") not in metrics.counts


async def test_a_held_batch_is_sent_again_whole() -> None:
    processor = Restarting(down_for=0.3)
    core = core_for("serve://connect", processor, batch=True)
    outs = await core.handle_batch([message_request(sip_request("REGISTER")) for _ in range(3)])
    assert [o is not None and o.message.WhichOneof("message_type") for o in outs] == ["request_uri"] * 3


async def test_a_request_held_past_its_deadline_gets_503() -> None:
    processor = Restarting(down_for=30.0)
    core = core_for("serve://connect", processor, deadline=0.5)
    started = time.monotonic()
    out = await core.handle(message_request(sip_request("INVITE")))
    assert out is not None and out.message.status_code == 503
    assert 0.5 <= time.monotonic() - started < 1.5


async def test_a_host_port_processor_that_fails_gets_503_at_once() -> None:
    processor = Restarting(down_for=30.0)
    core = core_for("10.0.0.5:50051", processor)
    started = time.monotonic()
    out = await core.handle(message_request(sip_request("INVITE")))
    assert out is not None and out.message.status_code == 503
    assert time.monotonic() - started < 0.2 and processor.calls == 1


async def test_a_late_processor_is_not_called_twice() -> None:
    calls = 0

    async def slow(route: Route, req: MessageRequest) -> MessageResponse:
        nonlocal calls
        calls += 1
        await asyncio.sleep(5.0)
        raise AssertionError("unreachable")

    router = Router([ProcessorConfig("connect-processor", "serve://connect", ("INVITE",))])
    core = DispatchCore(router, MiddlewareChain([]), slow, deadline=0.3)
    out = await core.handle(message_request(sip_request("INVITE")))
    assert out is not None and out.message.status_code == 503 and calls == 1


async def test_a_call_that_keeps_failing_is_retried_a_bounded_number_of_times() -> None:
    """A message that kills every replica it reaches must not kill one per pause until the deadline."""
    processor = Restarting(down_for=60.0)
    core = core_for("serve://connect", processor, deadline=30.0)
    out = await core.handle(message_request(sip_request("INVITE")))
    assert out is not None and out.message.status_code == 503
    assert processor.calls == 1 + HOLD_MAX_RETRIES
