"""The `routr` Serve app on a local Ray: the dispatcher's gRPC port (the front actor) → dispatcher → processors
(issue 4); config reload without restart, health-checked processors by address, the shared token and its rotation
on redeploy (issue 14)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import ray
from grpc_health.v1 import health_pb2
from ray import serve

from routr_ray.actors import NAMESPACE
from routr_ray.actors.front import deploy_front
from routr_ray.actors.serve_app import APP_NAME, TOKEN_ENV, deploy_app
from routr_ray.config.dispatcher import DispatcherConfig, ProcessorConfig
from routr_ray.processors.echo import EchoProcessor
from routr_ray.processors.server import SERVICE_NAME, start_processor_server
from routr_ray.proto.convert import make_message_request, read_message_response
from routr_ray.proto.gen import processor_pb2_grpc
from routr_ray.sip import parse
from tests.support.redis_server import free_port


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed when the socket is


def request(method: str, ruri: str = "sip:sip.local") -> bytes:
    return (
        f"{method} {ruri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-test1;rport\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:1001@sip.local>;tag=abc\r\n"
        "To: <sip:1002@sip.local>\r\n"
        f"Call-ID: call-{method}@127.0.0.1\r\n"
        f"CSeq: 1 {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class ProcessorServer:
    """A standalone grpc.aio echo processor in a background thread's loop (any language would do)."""

    def __init__(self) -> None:
        import threading

        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        holder: dict[str, Any] = {}

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def main() -> None:
                holder["server"] = await start_processor_server(EchoProcessor(), f"127.0.0.1:{self.port}")
                started.set()
                await asyncio.Event().wait()

            try:
                self.loop.run_until_complete(main())
            except RuntimeError:
                pass

        threading.Thread(target=run, daemon=True).start()
        assert started.wait(20)
        self.server = holder["server"]

    def set_health(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING

        async def update() -> None:
            for service in ("", SERVICE_NAME):
                await self.server.health_servicer.set(service, status)

        asyncio.run_coroutine_threadsafe(update(), self.loop).result(10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def external_processor_port() -> Iterator[int]:
    server = ProcessorServer()
    yield server.port
    server.stop()


@pytest.fixture(scope="module")
def base_config(serve_started: None, external_processor_port: int) -> DispatcherConfig:
    return DispatcherConfig(deadline_seconds=2.0, processors=(
        ProcessorConfig(ref="echo", addr="serve://echo", methods=("OPTIONS", "REGISTER")),
        ProcessorConfig(ref="dead", addr=f"127.0.0.1:{closed_port()}", methods=("INFO",)),
        ProcessorConfig(ref="external", addr=f"127.0.0.1:{external_processor_port}", methods=("MESSAGE",)),
    ))


FRONT = "dispatcher-front-test"


@pytest.fixture(scope="module")
def front_addr() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def grpc_stub(serve_started: None, base_config: DispatcherConfig,
              front_addr: str) -> Iterator[processor_pb2_grpc.ProcessorStub]:
    os.environ.pop(TOKEN_ENV, None)
    deploy_app(base_config)
    front = deploy_front(front_addr, None, name=FRONT)
    channel = grpc.insecure_channel(front_addr)
    yield processor_pb2_grpc.ProcessorStub(channel)
    channel.close()
    ray.kill(front, no_restart=True)
    serve.delete(APP_NAME)


def call(stub: processor_pb2_grpc.ProcessorStub, data: bytes, metadata: Any = None):  # noqa: ANN201
    req = make_message_request(parse(data), edge_port_ref="ep1", sender=("127.0.0.1", 5070, "UDP"))
    return read_message_response(stub.ProcessMessage(req, timeout=30, metadata=metadata))


def describe() -> dict[str, Any]:
    return serve.get_app_handle(APP_NAME).describe.remote().result(timeout_s=30)


def test_echo_processor_answers_200_through_the_dispatchers_grpc_port(grpc_stub) -> None:  # noqa: ANN001
    response = call(grpc_stub, request("OPTIONS"))
    assert response.status == 200
    assert response.call_id == "call-OPTIONS@127.0.0.1"


def test_unmatched_request_gets_405_with_allow(grpc_stub) -> None:  # noqa: ANN001
    response = call(grpc_stub, request("INVITE", "sip:1002@sip.local"))
    assert response.status == 405
    allow = {m.strip() for m in (response.headers.get("Allow") or "").split(",")}
    assert {"OPTIONS", "REGISTER", "INFO", "MESSAGE"} <= allow
    assert "INVITE" not in allow


def test_unreachable_processor_gets_503_within_the_deadline(grpc_stub) -> None:  # noqa: ANN001
    started = time.monotonic()
    response = call(grpc_stub, request("INFO"))
    assert response.status == 503
    assert response.headers.get("Retry-After")
    assert time.monotonic() - started < 10


def test_external_grpc_processor_is_reached_by_address(grpc_stub) -> None:  # noqa: ANN001
    response = call(grpc_stub, request("MESSAGE", "sip:1002@sip.local"))
    assert response.status == 200


def test_changed_config_reroutes_without_restarting_the_dispatcher(grpc_stub, base_config) -> None:  # noqa: ANN001
    before = describe()
    changed = dataclasses.replace(base_config, processors=(
        # INFO now goes to echo, but only for user 1001; OPTIONS is no longer routed
        ProcessorConfig(ref="echo", addr="serve://echo", methods=("INFO", "REGISTER"),
                        match_func="req => req.message.requestUri.user === '1001'"),
        *base_config.processors[1:],
    ))
    try:
        deploy_app(changed)
        assert call(grpc_stub, request("INFO", "sip:1001@sip.local")).status == 200
        assert call(grpc_stub, request("OPTIONS")).status == 405
        assert call(grpc_stub, request("INFO", "sip:1002@sip.local")).status == 503  # on to 'dead'
        after = describe()
        assert after["pid"] == before["pid"]  # reconfigured in place, not a new replica
        assert after["config"]["spec"]["processors"][0]["methods"] == ["INFO", "REGISTER"]
    finally:
        deploy_app(base_config)
    assert call(grpc_stub, request("OPTIONS")).status == 200
    assert describe()["pid"] == before["pid"]


def test_processor_failing_its_health_check_gets_503_at_once(grpc_stub, base_config) -> None:  # noqa: ANN001
    sick = ProcessorServer()
    try:
        sick.set_health(False)  # its ProcessMessage still answers 200: only the health check can say 503
        deploy_app(dataclasses.replace(base_config, processors=(
            *base_config.processors,
            ProcessorConfig(ref="sick", addr=f"127.0.0.1:{sick.port}", methods=("SUBSCRIBE",),
                            deadline_seconds=30.0),
        )))
        deadline = time.monotonic() + 10
        while describe()["remote_health"].get(f"127.0.0.1:{sick.port}") is not False:
            assert time.monotonic() < deadline, "the health check never reported NOT_SERVING"
            time.sleep(0.2)
        started = time.monotonic()
        response = call(grpc_stub, request("SUBSCRIBE", "sip:1002@sip.local"))
        assert response.status == 503 and response.headers.get("Retry-After")
        assert time.monotonic() - started < 10  # not the 30 s deadline
        sick.set_health(True)
        deadline = time.monotonic() + 10
        while call(grpc_stub, request("SUBSCRIBE", "sip:1002@sip.local")).status != 200:
            assert time.monotonic() < deadline, "the processor did not come back after SERVING"
            time.sleep(0.3)
    finally:
        deploy_app(base_config)
        sick.stop()


def test_shared_token_is_required_from_outside_callers_and_rotates_on_redeploy(
    grpc_stub, front_addr: str  # noqa: ANN001
) -> None:
    try:
        deploy_front(front_addr, "s3cret-0123456789", name=FRONT)
        with pytest.raises(grpc.RpcError) as refused:
            call(grpc_stub, request("OPTIONS"))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError):
            call(grpc_stub, request("OPTIONS"), metadata=(("authorization", "Bearer wrong"),))
        assert call(grpc_stub, request("OPTIONS"), metadata=(("authorization", "Bearer s3cret-0123456789"),)).status == 200
        assert call(grpc_stub, request("OPTIONS"), metadata=(("x-routr-token", "s3cret-0123456789"),)).status == 200
        deploy_front(front_addr, "n3w-s3cret-0123456789", name=FRONT)  # rotated: the old token is refused at once
        with pytest.raises(grpc.RpcError) as old:
            call(grpc_stub, request("OPTIONS"), metadata=(("x-routr-token", "s3cret-0123456789"),))
        assert old.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert call(grpc_stub, request("OPTIONS"), metadata=(("x-routr-token", "n3w-s3cret-0123456789"),)).status == 200
    finally:
        deploy_front(front_addr, None, name=FRONT)
    assert call(grpc_stub, request("OPTIONS")).status == 200


def test_an_unchanged_redeploy_keeps_the_front(grpc_stub, front_addr: str) -> None:  # noqa: ANN001
    before = ray.get_actor(FRONT, namespace=NAMESPACE)._actor_id
    deploy_front(front_addr, None, name=FRONT)
    assert ray.get_actor(FRONT, namespace=NAMESPACE)._actor_id == before


def test_replies_to_outside_callers_carry_no_internal_metadata(grpc_stub, front_addr: str) -> None:  # noqa: ANN001
    req = make_message_request(parse(request("OPTIONS")), edge_port_ref="ep1", sender=("203.0.113.9", 5070, "UDP"),
                               metadata={"routr-ray.trunk-ref": "trunk-01", "x-mine": "1"})
    reply = grpc_stub.ProcessMessage(req, timeout=30)
    assert read_message_response(reply).status == 200
    assert not [k for k in reply.metadata if k.startswith("routr-ray.")]  # not even the processor's ref
    try:
        deploy_front(front_addr, "edge-token-0123456789", name=FRONT)
        trusted = grpc_stub.ProcessMessage(req, timeout=30, metadata=(("x-routr-token", "edge-token-0123456789"),))
        assert trusted.metadata["routr-ray.processor"] == "echo"  # an EdgePort with the token gets its directives
    finally:
        deploy_front(front_addr, None, name=FRONT)
