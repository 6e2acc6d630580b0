"""Middleware chain and the dispatcher flow (DispatchCore) with plain async fakes."""

from __future__ import annotations

import asyncio
import logging

import pytest
from test_dispatch_support import message_request, sip_request, sip_response

from routr_ray.dispatch.core import DispatchCore
from routr_ray.dispatch.errors import respond
from routr_ray.dispatch.matching import PROCESSOR_METADATA_KEY, ProcessorSpec, Route, Router
from routr_ray.dispatch.middleware import Middleware, MiddlewareChain, MiddlewareFailed
from routr_ray.proto.gen import processor_pb2

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse


def header(msg, name: str) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.value for e in msg.extensions if e.name == name]


def tagging(name: str, calls: list[str]):  # type: ignore[no-untyped-def]
    """A middleware that records its call and appends ``X-Trail: name`` to the message."""

    async def call(req: MessageRequest) -> MessageResponse:
        calls.append(name)
        out = MessageResponse()
        out.message.CopyFrom(req.message)
        out.message.extensions.add(name="X-Trail", value=name)
        out.metadata["dropped"] = name  # a middleware's metadata is ignored, as in Routr
        return out

    return call


async def failing(req: MessageRequest) -> MessageResponse:
    raise ConnectionError("middleware down")


async def answering(req: MessageRequest) -> MessageResponse:
    return respond(req, 403, "Forbidden")


class FakeProcessor:
    def __init__(self, *, fail: BaseException | None = None, delay: float = 0.0) -> None:
        self.seen: list[tuple[str, MessageRequest]] = []
        self.fail = fail
        self.delay = delay

    async def __call__(self, route: Route, req: MessageRequest) -> MessageResponse:
        self.seen.append((route.ref, req))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        out = MessageResponse()
        out.message.CopyFrom(req.message)
        out.message.extensions.add(name="X-Trail", value=f"processor:{route.ref}")
        out.metadata["from-processor"] = "1"
        return out


ROUTER = Router([ProcessorSpec("connect", "c:1", ("INVITE", "ACK", "BYE", "REGISTER"))])


def core(middlewares: list[Middleware], processor: FakeProcessor, **kw) -> DispatchCore:  # type: ignore[no-untyped-def]
    return DispatchCore(ROUTER, MiddlewareChain(middlewares), processor, **kw)


# ---------------------------------------------------------------------------------------------------------
# Ordering, modification, post-processors


async def test_pre_then_processor_then_post_in_config_order() -> None:
    calls: list[str] = []
    mws = [Middleware("post1", tagging("post1", calls), post_processor=True),
           Middleware("pre1", tagging("pre1", calls)),
           Middleware("pre2", tagging("pre2", calls)),
           Middleware("post2", tagging("post2", calls), post_processor=True)]
    proc = FakeProcessor()
    req = message_request(sip_request("INVITE"))
    out = await core(mws, proc).handle(req)
    assert calls == ["pre1", "pre2", "post1", "post2"]
    # each middleware saw (and changed) the message the previous one returned; the processor saw both pre
    assert header(proc.seen[0][1].message, "X-Trail") == ["pre1", "pre2"]
    assert out is not None
    assert header(out.message, "X-Trail") == ["pre1", "pre2", "processor:connect", "post1", "post2"]
    assert dict(out.metadata) == {"from-processor": "1", PROCESSOR_METADATA_KEY: "connect"}
    assert header(req.message, "X-Trail") == []  # the caller's request is not mutated


async def test_post_processor_gets_request_merged_with_result() -> None:
    seen: list[MessageRequest] = []

    async def post(req: MessageRequest) -> MessageResponse:
        seen.append(req)
        out = MessageResponse()
        out.message.CopyFrom(req.message)
        return out

    req = message_request(sip_request("INVITE"), metadata={"from-edge": "1"})
    await core([Middleware("post", post, post_processor=True)], FakeProcessor()).handle(req)
    merged = seen[0]
    assert header(merged.message, "X-Trail") == ["processor:connect"]
    assert merged.edge_port_ref == "ep1" and merged.ref == req.ref
    assert dict(merged.metadata) == {"from-processor": "1", PROCESSOR_METADATA_KEY: "connect"}


async def test_short_circuit_answer_skips_processor_and_post() -> None:
    calls: list[str] = []
    mws = [Middleware("auth", answering), Middleware("later", tagging("later", calls)),
           Middleware("post", tagging("post", calls), post_processor=True)]
    proc = FakeProcessor()
    out = await core(mws, proc).handle(message_request(sip_request("INVITE")))
    assert out is not None and out.message.status_code == 403
    assert calls == [] and proc.seen == []


async def test_short_circuit_on_ack_is_dropped() -> None:
    proc = FakeProcessor()
    out = await core([Middleware("auth", answering)], proc).handle(message_request(sip_request("ACK")))
    assert out is None and proc.seen == []


async def test_success_responses_pass_through_middlewares_and_may_be_modified() -> None:
    calls: list[str] = []
    mws = [Middleware("relay", tagging("relay", calls))]
    proc = FakeProcessor()
    resp = message_request(sip_response(200, "OK"), metadata={PROCESSOR_METADATA_KEY: "connect"})
    out = await core(mws, proc).handle(resp)
    assert calls == ["relay"]  # a response returned by a middleware is a modification, not an answer
    assert out is not None and header(out.message, "X-Trail") == ["relay", "processor:connect"]


@pytest.mark.parametrize(("status", "through"), [(100, False), (180, True), (183, True), (200, True),
                                                 (202, True), (302, False), (486, False), (503, False)])
async def test_which_responses_go_through_middlewares(status: int, through: bool) -> None:
    calls: list[str] = []
    proc = FakeProcessor()
    resp = message_request(sip_response(status, "X"))
    out = await core([Middleware("relay", tagging("relay", calls))], proc).handle(resp)
    assert (calls == ["relay"]) is through
    assert out is not None and len(proc.seen) == 1  # the processor always gets the response


# ---------------------------------------------------------------------------------------------------------
# Error policy


async def test_failing_middleware_answers_500_and_skips_the_processor(caplog) -> None:  # type: ignore[no-untyped-def]
    proc = FakeProcessor()
    dispatcher = core([Middleware("rtprelay", failing)], proc)
    with caplog.at_level(logging.ERROR, logger="routr_ray.dispatch.middleware"):
        for _ in range(3):
            out = await dispatcher.handle(message_request(sip_request("INVITE")))
            assert out is not None and out.message.status_code == 500
    assert proc.seen == []
    logged = [r for r in caplog.records if "rtprelay" in r.getMessage()]
    assert len(logged) == 1  # rate-limited


async def test_failing_post_middleware_answers_500() -> None:
    out = await core([Middleware("p", failing, post_processor=True)], FakeProcessor()).handle(
        message_request(sip_request("INVITE")))
    assert out is not None and out.message.status_code == 500


async def test_failing_middleware_on_ack_or_response_drops() -> None:
    dispatcher = core([Middleware("rtprelay", failing)], FakeProcessor())
    assert await dispatcher.handle(message_request(sip_request("ACK"))) is None
    assert await dispatcher.handle(message_request(sip_response(200, "OK"))) is None


async def test_optional_middleware_failure_passes_through(caplog) -> None:  # type: ignore[no-untyped-def]
    calls: list[str] = []
    mws = [Middleware("opt", failing, optional=True), Middleware("next", tagging("next", calls)),
           Middleware("optpost", failing, post_processor=True, optional=True)]
    proc = FakeProcessor()
    with caplog.at_level(logging.WARNING, logger="routr_ray.dispatch.middleware"):
        out = await core(mws, proc).handle(message_request(sip_request("INVITE")))
    assert calls == ["next"]
    assert out is not None and header(out.message, "X-Trail") == ["next", "processor:connect"]
    assert any("passing through" in r.getMessage() for r in caplog.records)


async def test_middleware_returning_no_message_is_a_failure() -> None:
    async def empty(req: MessageRequest) -> MessageResponse:
        return MessageResponse()

    chain = MiddlewareChain([Middleware("empty", empty)])
    with pytest.raises(MiddlewareFailed, match="empty"):
        await chain.run_pre(message_request(sip_request("INVITE")))


# ---------------------------------------------------------------------------------------------------------
# Processor errors


async def test_no_match_answers_405_with_allow() -> None:
    proc = FakeProcessor()
    out = await core([], proc).handle(message_request(sip_request("OPTIONS")))
    assert out is not None and out.message.status_code == 405
    assert header(out.message, "Allow") == ["INVITE, ACK, BYE, REGISTER"]
    assert proc.seen == []


@pytest.mark.parametrize("fail", [ConnectionRefusedError("closed port"), RuntimeError("boom")])
async def test_unreachable_or_failing_processor_answers_503(fail: BaseException) -> None:
    out = await core([], FakeProcessor(fail=fail), retry_after=9).handle(message_request(sip_request("INVITE")))
    assert out is not None and out.message.status_code == 503
    assert header(out.message, "Retry-After") == ["9"]


async def test_processor_past_its_deadline_answers_503_in_time() -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    out = await core([], FakeProcessor(delay=5.0), deadline=0.05).handle(message_request(sip_request("INVITE")))
    assert loop.time() - start < 1.0
    assert out is not None and out.message.status_code == 503


async def test_processor_errors_on_ack_and_responses_are_dropped() -> None:
    dispatcher = core([], FakeProcessor(fail=ConnectionRefusedError()))
    assert await dispatcher.handle(message_request(sip_request("ACK"))) is None
    assert await dispatcher.handle(message_request(sip_response(200, "OK"))) is None
    assert await core([], FakeProcessor()).handle(message_request(sip_response(200, "OK", "OPTIONS"))) is None
