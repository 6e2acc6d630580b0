"""DispatchRuntime (the routing shared by the dispatcher deployment and the EdgePort's embedded dispatch) and
the ``routr-ray.responses`` word: written by the SDK, removed by the dispatcher when middlewares run."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from test_dispatch_support import message_request, sip_request, sip_response

from routr_ray.config.dispatcher import DispatcherConfig, MiddlewareConfig, ProcessorConfig
from routr_ray.dispatch.core import DispatchCore
from routr_ray.dispatch.matching import PROCESSOR_METADATA_KEY, Route, Router
from routr_ray.dispatch.middleware import Middleware, MiddlewareChain
from routr_ray.dispatch.runtime import Batching, DispatchRuntime
from routr_ray.edge import directives
from routr_ray.processors import sdk
from routr_ray.processors.connect import ConnectProcessor
from routr_ray.proto.convert import from_proto
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip import Request

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse


class FakeDeployments:
    """``deployment_send`` for two processor deployments that echo the request back; records each call."""

    def __init__(self, names: Sequence[str] = ("a", "b")) -> None:
        self.names = set(names)
        self.calls: list[tuple[str, int]] = []

    def __call__(self, name: str):  # type: ignore[no-untyped-def]
        if name not in self.names:
            raise ValueError(f"serve://{name} is not a deployment of this app")

        async def send(requests: list[MessageRequest]) -> list[MessageResponse]:
            self.calls.append((name, len(requests)))
            out = []
            for req in requests:
                resp = MessageResponse()
                resp.message.CopyFrom(req.message)
                resp.metadata["served-by"] = name
                out.append(resp)
            return out

        return send


def config(*processors: ProcessorConfig, middlewares: tuple[MiddlewareConfig, ...] = ()) -> DispatcherConfig:
    return DispatcherConfig(processors=processors, middlewares=middlewares)


async def test_a_batch_goes_to_each_processor_deployment_as_one_call() -> None:
    deployments = FakeDeployments()
    runtime = DispatchRuntime(deployments)
    runtime.apply(config(ProcessorConfig("pa", "serve://a", ("INVITE",)),
                         ProcessorConfig("pb", "serve://b", ("BYE", "REGISTER"))))
    batch = [message_request(sip_request(m)) for m in ("INVITE", "BYE", "INVITE", "MESSAGE")]
    results = await runtime.handle_batch(batch)
    assert sorted(deployments.calls) == [("a", 2), ("b", 1)]
    assert [r.metadata.get("served-by") for r in results[:3]] == ["a", "b", "a"]  # type: ignore[union-attr]
    assert [r.metadata[PROCESSOR_METADATA_KEY] for r in results[:3]] == ["pa", "pb", "pa"]  # type: ignore[union-attr]
    assert results[3] is not None and results[3].message.status_code == 405  # nothing takes MESSAGE


async def test_without_batching_each_message_is_its_own_call() -> None:
    deployments = FakeDeployments()
    runtime = DispatchRuntime(deployments, batching=Batching(max_batch=1))
    runtime.apply(config(ProcessorConfig("pa", "serve://a", ("INVITE",))))
    await runtime.handle_batch([message_request(sip_request("INVITE")) for _ in range(3)])
    assert deployments.calls == [("a", 1)] * 3


async def test_a_config_naming_an_unknown_deployment_changes_nothing() -> None:
    runtime = DispatchRuntime(FakeDeployments())
    runtime.apply(config(ProcessorConfig("pa", "serve://a", ("INVITE",))))
    before = runtime.core
    with pytest.raises(ValueError, match="serve://zzz"):
        runtime.apply(config(ProcessorConfig("pz", "serve://zzz", ("INVITE",))))
    assert runtime.core is before and runtime.config.processors[0].ref == "pa"


async def test_reconfigure_reroutes() -> None:
    deployments = FakeDeployments()
    runtime = DispatchRuntime(deployments)
    await runtime.reconfigure(config(ProcessorConfig("pa", "serve://a", ("INVITE",))))
    await runtime.reconfigure(config(ProcessorConfig("pb", "serve://b", ("INVITE",), match_func="req => true")))
    (result,) = await runtime.handle_batch([message_request(sip_request("INVITE"))])
    assert result is not None and result.metadata["served-by"] == "b"
    await runtime.close()


def test_no_config_yet_raises() -> None:
    with pytest.raises(RuntimeError):
        DispatchRuntime(FakeDeployments()).current()


# --- routr-ray.responses ---------------------------------------------------------------------------------


class Forwarder(sdk.Processor):
    needs_success_responses = False

    def handle(self, ctx: sdk.Context) -> sdk.Result:
        msg = ctx.message
        assert isinstance(msg, Request)
        return msg if msg.method != "OPTIONS" else 200


class RoutrLike(Forwarder):
    needs_success_responses = True


def test_the_sdk_and_the_edge_use_the_same_word() -> None:
    assert directives.RESPONSES_KEY == sdk.RESPONSES_KEY
    assert directives.RESPONSES_ERRORS_ONLY == sdk.RESPONSES_ERRORS_ONLY


async def test_a_processor_without_need_marks_what_it_forwards_only() -> None:
    forwarded = await Forwarder().process(message_request(sip_request("INVITE")))
    assert forwarded.metadata[sdk.RESPONSES_KEY] == sdk.RESPONSES_ERRORS_ONLY
    answered = await Forwarder().process(message_request(sip_request("OPTIONS")))
    assert sdk.RESPONSES_KEY not in answered.metadata
    passed = await Forwarder().process(message_request(sip_response(180)))
    assert sdk.RESPONSES_KEY not in passed.metadata


async def test_by_default_a_processor_gets_every_response() -> None:
    forwarded = await RoutrLike().process(message_request(sip_request("INVITE")))
    assert sdk.RESPONSES_KEY not in forwarded.metadata
    assert sdk.Processor.needs_success_responses is True


def test_connect_does_not_need_success_responses() -> None:
    assert ConnectProcessor.needs_success_responses is False


def test_the_edge_reads_the_word() -> None:
    assert directives.read_directive({sdk.RESPONSES_KEY: "errors"}).edge_relays_success
    assert not directives.read_directive({sdk.RESPONSES_KEY: "all"}).edge_relays_success
    d = directives.read_directive({sdk.RESPONSES_KEY: "errors", directives.FAILOVER_KEY: "sip:x@trunk.example"})
    assert d.edge_relays_success and d.without_next_hop(()).edge_relays_success  # kept on failover branches


async def _forward_marked(route: Route, req: MessageRequest) -> MessageResponse:
    return await Forwarder().process(req)


async def _pass(req: MessageRequest) -> MessageResponse:
    out = MessageResponse()
    out.message.CopyFrom(req.message)
    return out


@pytest.mark.parametrize("with_middleware", [False, True])
async def test_the_dispatcher_drops_the_word_when_middlewares_must_see_responses(with_middleware: bool) -> None:
    router = Router([ProcessorConfig("p", "p:1", ("INVITE",))])
    chain = MiddlewareChain([Middleware.from_config(MiddlewareConfig("m", "m:1"), _pass)] if with_middleware else [])
    core = DispatchCore(router, chain, _forward_marked)
    out = await core.handle(message_request(sip_request("INVITE")))
    assert out is not None and isinstance(from_proto(out.message), Request)
    assert (sdk.RESPONSES_KEY in out.metadata) is not with_middleware


@pytest.mark.parametrize("status", [180, 183, 200, 202])
async def test_connect_does_to_success_responses_only_what_the_edge_does_alone(status: int) -> None:
    """The contract behind ``needs_success_responses = False``: for a 1xx/2xx without a `.invalid` Contact,
    Connect's handle_response is exactly "remove the top Via" (what the EdgePort then does itself)."""
    from test_connect_support import Harness, sip, to_message_request

    from routr_ray.edge.edgeport import make_response
    from routr_ray.proto.convert import read_message_response
    from routr_ray.sip import Response

    request = sip("INVITE", "sip:1002@sip.local", from_="sip:1001@sip.local", to="sip:1002@sip.local",
                  via="SIP/2.0/UDP 10.0.0.1:5060", contact="<sip:1001@10.0.0.5:5060>")
    request.headers.prepend("Via", "SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKedge1")  # our Via on top
    response = make_response(request, status, to_tag="t1", extra=[("Contact", "<sip:1002@10.0.0.9:5062>"),
                                                                  ("Record-Route", "<sip:10.0.0.2;lr>")])
    mreq = to_message_request(response, ("10.0.0.9", 5062, "UDP"))
    mreq.metadata[PROCESSOR_METADATA_KEY] = "connect"
    by_connect = read_message_response(await Harness().processor.process(mreq))
    alone = response.copy()
    alone.headers.remove_first_value("Via")
    assert isinstance(by_connect, Response)
    assert bytes(by_connect) == bytes(alone)
