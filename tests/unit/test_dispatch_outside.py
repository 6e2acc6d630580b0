"""Internal metadata stays inside (DESIGN §6b): the outside-caller policy (routr_ray/dispatch/outside.py) and the
dispatcher's calls to middlewares, which get no ``routr-ray.*`` metadata unless their entry asks for it."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from test_dispatch_support import message_request, sip_request

from routr_ray.config.dispatcher import DispatcherConfig, MiddlewareConfig, ProcessorConfig
from routr_ray.dispatch.outside import (
    from_outside,
    peer_address,
    strip_internal,
    to_outside,
    without_internal,
)
from routr_ray.dispatch.runtime import DispatchRuntime, OutboundTokens
from routr_ray.proto.gen import processor_pb2

MessageRequest = processor_pb2.MessageRequest
MessageResponse = processor_pb2.MessageResponse

INTERNAL = {"routr-ray.processor": "connect", "routr-ray.trunk-ref": "trunk-01",
            "routr-ray.gateway-auth": "dXNlcjpwYXNz", "Routr-Ray.Next-Hop": "sip:10.0.0.9"}


@pytest.mark.parametrize(("peer", "expected"), [
    ("ipv4:127.0.0.1:40000", ("127.0.0.1", 40000)),
    ("ipv6:[::1]:40001", ("::1", 40001)),
    ("ipv6:%5B::1%5D:40002", ("::1", 40002)),
    ("unix:/tmp/socket", None),
    ("ipv4:127.0.0.1", None),
    ("", None),
])
def test_peer_address(peer: str, expected: tuple[str, int] | None) -> None:
    assert peer_address(peer) == expected


def test_an_outside_request_loses_internal_metadata_and_its_claimed_sender() -> None:
    request = message_request(metadata={**INTERNAL, "x-customer": "kept"}, sender=("203.0.113.5", 5060, "udp"))
    outside = from_outside(request, ("127.0.0.1", 40000))
    assert dict(outside.metadata) == {"x-customer": "kept"}
    assert (outside.sender.host, outside.sender.port) == ("127.0.0.1", 40000)
    assert outside.sender.transport == request.sender.transport
    assert request.sender.host == "203.0.113.5" and len(request.metadata) == 5  # the caller's object unchanged


def test_a_reply_to_an_outside_caller_carries_no_internal_metadata() -> None:
    reply = MessageResponse()
    reply.metadata.update({**INTERNAL, "x-customer": "kept"})
    assert dict(to_outside(reply).metadata) == {"x-customer": "kept"}


def test_without_internal_copies_only_when_needed() -> None:
    plain = message_request(metadata={"x": "1"})
    assert without_internal(plain) is plain
    marked = message_request(metadata={**INTERNAL, "x": "1"})
    copy = without_internal(marked)
    assert copy is not marked and dict(copy.metadata) == {"x": "1"} and len(marked.metadata) == 5
    assert strip_internal(marked.metadata) == 4


class RecordingDeployments:
    """``deployment_send``: each deployment answers a copy of the request with the directive Connect would add
    (trunk credentials) and keeps what it was sent."""

    def __init__(self) -> None:
        self.seen: dict[str, list[MessageRequest]] = {}

    def __call__(self, name: str):  # type: ignore[no-untyped-def]
        async def send(requests: list[MessageRequest]) -> Sequence[MessageResponse]:
            self.seen.setdefault(name, []).extend(requests)
            out = []
            for req in requests:
                resp = MessageResponse()
                resp.message.CopyFrom(req.message)
                resp.metadata.update(req.metadata)
                if name == "connect":
                    resp.metadata["routr-ray.gateway-auth"] = "dXNlcjpwYXNz"
                out.append(resp)
            return out

        return send


@pytest.mark.parametrize("asks", [False, True])
async def test_middlewares_get_internal_metadata_only_when_their_entry_asks(asks: bool) -> None:
    deployments = RecordingDeployments()
    runtime = DispatchRuntime(deployments)
    runtime.apply(DispatcherConfig(
        processors=(ProcessorConfig("connect", "serve://connect", ("INVITE",)),),
        middlewares=(MiddlewareConfig("pre", "serve://pre", internal_metadata=asks),
                     MiddlewareConfig("post", "serve://post", post_processor=True, internal_metadata=asks)),
    ))
    request = message_request(sip_request("INVITE"), metadata={"routr-ray.trunk-ref": "trunk-01", "x": "1"})
    result = await runtime.current().handle(request)
    assert result is not None
    # the processor (in the cluster) sees everything, and the EdgePort gets its directive
    assert deployments.seen["connect"][0].metadata["routr-ray.trunk-ref"] == "trunk-01"
    assert result.metadata["routr-ray.gateway-auth"] == "dXNlcjpwYXNz"
    pre, post = deployments.seen["pre"][0], deployments.seen["post"][0]
    assert pre.metadata["x"] == "1" and post.metadata["x"] == "1"
    assert ("routr-ray.trunk-ref" in pre.metadata) is asks
    assert ("routr-ray.gateway-auth" in post.metadata) is asks  # the processor's result, as the post one sees it


def test_outbound_tokens_follow_the_entry_then_the_default() -> None:
    config = DispatcherConfig(
        processors=(ProcessorConfig("own", "a:1", ("INVITE",), token="own-0123456789abcdef"),
                    ProcessorConfig("shared", "b:1", ("BYE",))),
        processor_token="shared-0123456789abcdef",
    )
    tokens = OutboundTokens.of(config)
    assert (tokens.for_ref("own"), tokens.for_ref("shared")) == ("own-0123456789abcdef", "shared-0123456789abcdef")
    assert OutboundTokens.of(config, "env-0123456789abcdef").for_ref("shared") == "env-0123456789abcdef"
    assert OutboundTokens.from_plain(tokens.to_plain()) == tokens
    assert "0123456789" not in repr(tokens)


async def test_a_rotated_token_gets_a_new_channel() -> None:
    runtime = DispatchRuntime(RecordingDeployments())
    config = DispatcherConfig(processors=(ProcessorConfig("ext", "127.0.0.1:9", ("INVITE",)),))
    runtime.apply(config, OutboundTokens("old-0123456789abcdef"))
    (old,) = runtime.remote.values()
    stale = runtime.apply(config, OutboundTokens("new-0123456789abcdef"))
    (new,) = runtime.remote.values()
    assert stale == [old] and new is not old
    assert new._metadata == (("authorization", "Bearer new-0123456789abcdef"),)
    assert runtime.apply(config) == []  # same tokens: the channel is kept
    for client in (old, new):
        await client.close()


def test_the_app_gets_processor_tokens_as_init_arguments_never_in_user_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from routr_ray.actors.serve_app import PROCESSOR_TOKEN_ENV, build_app

    monkeypatch.delenv(PROCESSOR_TOKEN_ENV, raising=False)
    config = DispatcherConfig(processors=(
        ProcessorConfig("echo", "serve://echo", ("OPTIONS",)),
        ProcessorConfig("ext", "ext:51904", ("INFO",), token="own-0123456789abcdef"),
    ), processor_token="shared-0123456789abcdef")
    dispatcher = build_app(config)._bound_deployment
    assert dispatcher.init_kwargs["tokens"] == {"default": "shared-0123456789abcdef",
                                                "by_ref": {"ext": "own-0123456789abcdef"}}
    assert "0123456789" not in repr(dispatcher.user_config)  # Serve shows user_config in status and dashboard
    monkeypatch.setenv(PROCESSOR_TOKEN_ENV, "rotated-0123456789abcdef")
    rotated = build_app(config)._bound_deployment
    assert rotated.init_kwargs["tokens"]["default"] == "rotated-0123456789abcdef"
    assert rotated.version != dispatcher.version  # new replicas: the rotation takes effect on redeploy
