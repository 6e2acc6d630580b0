"""Per-entry deadlines (``deadlineSeconds``) for processors and middlewares, Middleware.from_config, and
DispatchCore.handle_batch (one call per processor for an EdgePort batch)."""

from __future__ import annotations

import asyncio
import time

from test_dispatch_support import message_request, sip_request

from routr_ray.config.dispatcher import MiddlewareConfig, ProcessorConfig
from routr_ray.dispatch.core import DispatchCore
from routr_ray.dispatch.matching import Route, Router
from routr_ray.dispatch.middleware import Middleware, MiddlewareChain
from routr_ray.proto.gen import processor_pb2

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse


def echo_after(delays: dict[str, float]):  # type: ignore[no-untyped-def]
    async def call(route: Route, req: MessageRequest) -> MessageResponse:
        await asyncio.sleep(delays[route.ref])
        out = MessageResponse()
        out.message.CopyFrom(req.message)
        return out

    return call


async def test_a_processor_deadline_overrides_the_dispatcher_default() -> None:
    router = Router([ProcessorConfig("quick", "q:1", ("INVITE",), deadline_seconds=0.05),
                     ProcessorConfig("patient", "p:1", ("BYE",))])
    core = DispatchCore(router, MiddlewareChain([]), echo_after({"quick": 3.0, "patient": 0.1}), deadline=5.0)
    started = time.monotonic()
    out = await core.handle(message_request(sip_request("INVITE")))
    assert out is not None and out.message.status_code == 503
    assert time.monotonic() - started < 1.5  # its own 0.05 s, far from the 3 s it would take
    out = await core.handle(message_request(sip_request("BYE")))  # 0.1 s is within the default 5 s
    assert out is not None and out.message.WhichOneof("message_type") == "request_uri"


async def slow_middleware(req: MessageRequest) -> MessageResponse:
    await asyncio.sleep(3.0)
    out = MessageResponse()
    out.message.CopyFrom(req.message)
    return out


async def test_a_middleware_past_its_deadline_fails_500_or_passes_through_when_optional() -> None:
    router = Router([ProcessorConfig("p", "p:1", ("INVITE",))])
    for optional, status in ((False, 500), (True, None)):
        config = MiddlewareConfig("slow", "s:1", optional=optional, deadline_seconds=0.05)
        chain = MiddlewareChain([Middleware.from_config(config, slow_middleware, deadline=10.0)])
        core = DispatchCore(router, chain, echo_after({"p": 0.0}))
        started = time.monotonic()
        out = await core.handle(message_request(sip_request("INVITE")))
        assert time.monotonic() - started < 1.5  # its 0.05 s, not its 3 s nor the default 10 s
        assert out is not None
        if status is None:  # passed through to the processor, which echoed the request
            assert out.message.WhichOneof("message_type") == "request_uri"
        else:
            assert out.message.status_code == status


def test_middleware_from_config_reads_optional_and_the_default_deadline() -> None:
    mw = Middleware.from_config(MiddlewareConfig("m", "m:1", post_processor=True, optional=True),
                                slow_middleware, deadline=3.0)
    assert (mw.post_processor, mw.optional, mw.deadline) == (True, True, 3.0)
    own = Middleware.from_config(MiddlewareConfig("m", "m:1", deadline_seconds=0.5), slow_middleware, deadline=3.0)
    assert (own.optional, own.deadline) == (False, 0.5)


# --- handle_batch: one call per processor for an EdgePort batch -------------------------------------------------

async def test_a_batch_goes_to_each_processor_as_one_call_in_order() -> None:
    from routr_ray.dispatch.matching import PROCESSOR_METADATA_KEY
    from routr_ray.processors.sdk import drop as drop_response

    router = Router([ProcessorConfig("a", "a:1", ("INVITE",)), ProcessorConfig("b", "b:1", ("BYE", "ACK")),
                     ProcessorConfig("broken", "x:1", ("MESSAGE",))])
    calls: list[tuple[str, int]] = []

    async def call_batch(route: Route, reqs: list[MessageRequest]) -> list[MessageResponse | None]:
        calls.append((route.ref, len(reqs)))
        if route.ref == "broken":
            raise ConnectionError("down")
        out: list[MessageResponse | None] = []
        for req in reqs:
            if req.method == processor_pb2.Method.Value("ACK"):
                out.append(drop_response())
            else:
                resp = MessageResponse()
                resp.message.CopyFrom(req.message)
                out.append(resp)
        return out

    async def unused(route: Route, req: MessageRequest) -> MessageResponse:
        raise AssertionError("the one-message path is not taken")

    core = DispatchCore(router, MiddlewareChain([]), unused, deadline=5.0, call_batch=call_batch)
    methods = ["INVITE", "BYE", "INVITE", "OPTIONS", "ACK", "MESSAGE"]
    out = await core.handle_batch([message_request(sip_request(m)) for m in methods])
    assert sorted(calls) == [("a", 2), ("b", 2), ("broken", 1)]
    assert out[0] is not None and out[0].metadata[PROCESSOR_METADATA_KEY] == "a"
    assert out[1] is not None and out[1].metadata[PROCESSOR_METADATA_KEY] == "b"
    assert out[2] is not None and out[2].message.call_id.call_id == out[0].message.call_id.call_id
    assert out[3] is not None and out[3].message.status_code == 405  # no processor takes OPTIONS
    assert out[4] is None  # the processor absorbed the ACK
    assert out[5] is not None and out[5].message.status_code == 503  # its processor's call failed


async def test_a_missing_answer_in_a_batch_gets_503_alone() -> None:
    router = Router([ProcessorConfig("a", "a:1", ("INVITE",))])

    async def call_batch(route: Route, reqs: list[MessageRequest]) -> list[MessageResponse | None]:
        good = MessageResponse()
        good.message.CopyFrom(reqs[0].message)
        return [good, None]

    async def unused(route: Route, req: MessageRequest) -> MessageResponse:
        raise AssertionError

    core = DispatchCore(router, MiddlewareChain([]), unused, call_batch=call_batch)
    first, second = await core.handle_batch([message_request(sip_request("INVITE"))] * 2)
    assert first is not None and first.message.WhichOneof("message_type") == "request_uri"
    assert second is not None and second.message.status_code == 503
