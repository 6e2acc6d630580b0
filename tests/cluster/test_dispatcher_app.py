"""The `routr` Serve app on a local Ray: Serve's gRPC proxy → dispatcher → processors (issue 4)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import grpc
import pytest
from ray import serve

from routr_ray.actors.serve_app import APP_NAME, build_app
from routr_ray.config.dispatcher import DispatcherConfig, ProcessorConfig
from routr_ray.processors.echo import EchoProcessor
from routr_ray.processors.server import start_processor_server
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


@pytest.fixture(scope="module")
def external_processor_port() -> Iterator[int]:
    """A standalone grpc.aio echo processor in a background thread's loop (any language would do)."""
    import threading

    port = free_port()
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, object] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            holder["server"] = await start_processor_server(EchoProcessor(), f"127.0.0.1:{port}")
            started.set()
            await asyncio.Event().wait()

        try:
            loop.run_until_complete(main())
        except RuntimeError:
            pass

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert started.wait(20)
    yield port
    loop.call_soon_threadsafe(loop.stop)


@pytest.fixture(scope="module")
def grpc_stub(serve_grpc_port: int, external_processor_port: int) -> Iterator[processor_pb2_grpc.ProcessorStub]:
    config = DispatcherConfig(processors=(
        ProcessorConfig(ref="echo", addr="serve://echo", methods=("OPTIONS", "REGISTER")),
        ProcessorConfig(ref="dead", addr=f"127.0.0.1:{closed_port()}", methods=("INFO",)),
        ProcessorConfig(ref="external", addr=f"127.0.0.1:{external_processor_port}", methods=("MESSAGE",)),
    ))
    serve.run(build_app(config, deadline=2.0), name=APP_NAME, route_prefix="/routr")
    channel = grpc.insecure_channel(f"127.0.0.1:{serve_grpc_port}")
    yield processor_pb2_grpc.ProcessorStub(channel)
    channel.close()
    serve.delete(APP_NAME)


def call(stub: processor_pb2_grpc.ProcessorStub, data: bytes):  # noqa: ANN201
    req = make_message_request(parse(data), edge_port_ref="ep1", sender=("127.0.0.1", 5070, "UDP"))
    return read_message_response(stub.ProcessMessage(req, timeout=30))


def test_echo_processor_answers_200_through_the_serve_grpc_proxy(grpc_stub) -> None:  # noqa: ANN001
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
