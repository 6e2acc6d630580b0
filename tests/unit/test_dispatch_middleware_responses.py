"""Which responses a middleware sees (its ``responses`` mode), a middleware asking for the responses to one
request (``routr-ray.responses: all``), and the metadata a trusted (``internalMetadata``) middleware may change
(routr_ray/dispatch/middleware.py, core.py)."""

from __future__ import annotations

import pytest
from test_dispatch_support import message_request, sip_request, sip_response

from routr_ray.config.dispatcher import MiddlewareConfig
from routr_ray.dispatch.core import DispatchCore
from routr_ray.dispatch.matching import PROCESSOR_METADATA_KEY, ProcessorSpec, Route, Router
from routr_ray.dispatch.middleware import RESPONSES_ALL, RESPONSES_KEY, Middleware, MiddlewareChain
from routr_ray.proto.gen import processor_pb2

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse
ROUTER = Router([ProcessorSpec("connect", "c:1", ("INVITE", "MESSAGE", "BYE"))])


async def marking_processor(route: Route, req: MessageRequest) -> MessageResponse:
    """Forwards requests marked routr-ray.responses=errors (as Connect), with a directive; passes responses."""
    out = MessageResponse()
    out.message.CopyFrom(req.message)
    out.metadata.update(req.metadata)
    if req.message.WhichOneof("message_type") == "request_uri":
        out.metadata[RESPONSES_KEY] = "errors"
        out.metadata["routr-ray.next-hop"] = "sip:127.0.0.1:5070"
    return out


class Recorder:
    """A middleware that records what it sees; asks for responses to INVITEs; may write metadata."""

    def __init__(self, ask: bool = True, writes: dict[str, str] | None = None) -> None:
        self.seen: list[MessageRequest] = []
        self.ask = ask
        self.writes = writes or {}

    async def __call__(self, req: MessageRequest) -> MessageResponse:
        self.seen.append(req)
        out = MessageResponse()
        out.message.CopyFrom(req.message)
        out.metadata.update(req.metadata)
        out.metadata.update(self.writes)
        if self.ask and req.message.method == "INVITE" and req.message.WhichOneof("message_type") == "request_uri":
            out.metadata[RESPONSES_KEY] = RESPONSES_ALL
        return out

    def statuses(self) -> list[int]:
        return [r.message.status_code for r in self.seen if r.message.WhichOneof("message_type") == "response_type"]


def core(*middlewares: Middleware) -> DispatchCore:
    return DispatchCore(ROUTER, MiddlewareChain(middlewares), marking_processor)


@pytest.mark.parametrize(("status", "all_mode", "requested_mode"), [
    (100, False, False), (180, True, True), (200, True, True), (302, False, True), (486, False, True),
    (503, False, True), (603, False, True)])
async def test_which_responses_each_mode_sees(status: int, all_mode: bool, requested_mode: bool) -> None:
    every, asked = Recorder(), Recorder()
    dispatcher = core(Middleware("every", every, post_processor=True),
                      Middleware("asked", asked, post_processor=True, responses="requested"))
    await dispatcher.handle(message_request(sip_response(status, "X"), metadata={PROCESSOR_METADATA_KEY: "connect"}))
    assert (every.statuses() == [status]) is all_mode
    assert (asked.statuses() == [status]) is requested_mode


async def test_requested_mode_keeps_the_mark_except_on_the_requests_it_asked_for() -> None:
    relay = Recorder()
    dispatcher = core(Middleware("relay", relay, post_processor=True, responses="requested"))
    invite = await dispatcher.handle(message_request(sip_request("INVITE")))
    message = await dispatcher.handle(message_request(sip_request("MESSAGE")))
    assert invite is not None and RESPONSES_KEY not in invite.metadata  # its 1xx/2xx come back through us
    assert message is not None and message.metadata[RESPONSES_KEY] == "errors"  # the EdgePort relays them alone
    assert invite.metadata["routr-ray.next-hop"] == "sip:127.0.0.1:5070"  # the processor's directives stay


async def test_all_mode_removes_the_mark_from_everything_as_before() -> None:
    dispatcher = core(Middleware("acct", Recorder(ask=False), responses="all"))
    message = await dispatcher.handle(message_request(sip_request("MESSAGE")))
    assert message is not None and RESPONSES_KEY not in message.metadata


async def test_a_pre_processor_middleware_may_ask_too() -> None:
    dispatcher = core(Middleware("pre", Recorder(), responses="requested"))
    invite = await dispatcher.handle(message_request(sip_request("INVITE")))
    message = await dispatcher.handle(message_request(sip_request("MESSAGE")))
    assert invite is not None and RESPONSES_KEY not in invite.metadata
    assert message is not None and message.metadata[RESPONSES_KEY] == "errors"


async def test_an_untrusted_middleware_changes_no_metadata_but_may_ask() -> None:
    writes = {"routr-ray.next-hop": "sip:evil.example:5060", "routr-ray.echo.x": "1", "free": "y"}
    relay = Middleware("relay", Recorder(writes=writes), post_processor=True, responses="requested")
    invite = await core(relay).handle(message_request(sip_request("INVITE")))
    assert invite is not None
    assert invite.metadata["routr-ray.next-hop"] == "sip:127.0.0.1:5070"
    assert "routr-ray.echo.x" not in invite.metadata and "free" not in invite.metadata
    assert RESPONSES_KEY not in invite.metadata  # the ask is honoured: it only brings more responses here


async def test_a_trusted_middleware_adds_and_changes_internal_metadata_only() -> None:
    writes = {"routr-ray.branches": "[]", "routr-ray.echo.media": "o:b0", "free": "y"}
    relay = Middleware.from_config(
        MiddlewareConfig("relay", "serve://rtpengine", post_processor=True, internal_metadata=True,
                         responses="requested"), Recorder(writes=writes))
    assert relay.trusted and relay.responses == "requested"
    invite = await core(relay).handle(message_request(sip_request("INVITE")))
    assert invite is not None
    assert invite.metadata["routr-ray.branches"] == "[]" and invite.metadata["routr-ray.echo.media"] == "o:b0"
    assert "free" not in invite.metadata and RESPONSES_KEY not in invite.metadata
    assert invite.metadata["routr-ray.next-hop"] == "sip:127.0.0.1:5070"  # kept: a middleware cannot delete keys


async def test_a_trusted_middleware_cannot_mark_errors_only_for_another_one() -> None:
    """The mark a trusted middleware writes is not taken (only the dispatcher and the processor set it)."""
    relay = Middleware("relay", Recorder(ask=False, writes={RESPONSES_KEY: "errors"}), post_processor=True,
                       trusted=True)
    invite = await core(relay).handle(message_request(sip_request("INVITE")))
    assert invite is not None and RESPONSES_KEY not in invite.metadata  # mode all: every response comes back
