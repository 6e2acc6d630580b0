"""End to end (issue 4): SIP OPTIONS over UDP -> EdgePort actor -> dispatcher (process_batch through the handle)
-> echo processor -> 200 back to the UDP client."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest
import ray
from ray import serve

from routr_ray.actors.edgeport import NAME, deploy_edgeport
from routr_ray.actors.serve_app import APP_NAME, deploy_app
from routr_ray.config.dispatcher import DispatcherConfig, ProcessorConfig
from routr_ray.config.edgeport import EdgePortConfig, HealthConfig, Transport, TransportProtocol
from routr_ray.sip import parse
from routr_ray.sip.message import Response


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def options(edge_port: int, user: str, timeout: float = 5.0) -> tuple[str, Response]:
    """Send OPTIONS sip:<user>@... (a user part: the EdgePort does not answer it itself); the call id and reply."""
    branch = "z9hG4bK" + uuid.uuid4().hex[:12]
    call_id = f"{branch}@127.0.0.1"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
        s.settimeout(timeout)
        s.sendto((
            f"OPTIONS sip:{user}@127.0.0.1:{edge_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={branch[-6:]}\r\n"
            f"To: <sip:{user}@127.0.0.1:{edge_port}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode(), ("127.0.0.1", edge_port))
        while True:  # skip a 100 Trying, should one come
            reply = parse(s.recv(65535))
            assert isinstance(reply, Response)
            if reply.status >= 200:
                return call_id, reply


@pytest.fixture(scope="module")
def edge_port(serve_grpc_port: int) -> Iterator[int]:
    # Only OPTIONS to user 1001 is routed: another user gets the dispatcher's 405, which proves the path.
    deploy_app(DispatcherConfig(processors=(
        ProcessorConfig(ref="echo", addr="serve://echo", methods=("OPTIONS",),
                        match_func="req => req.message.requestUri.user === '1001'"),
    )))
    port = udp_port()
    config = EdgePortConfig(
        ref=f"e2e-{uuid.uuid4().hex[:6]}",
        bind_addr="127.0.0.1",
        transports=(Transport(TransportProtocol.UDP, port, "127.0.0.1"),),
        health=HealthConfig(enabled=False),
    )
    deploy_edgeport(config)
    yield port
    ray.kill(ray.get_actor(NAME.format(ref=config.ref), namespace="routr"), no_restart=True)
    serve.delete(APP_NAME)


def test_options_over_udp_is_answered_200_by_the_echo_processor(edge_port: int) -> None:
    call_id, reply = options(edge_port, "1001")
    assert reply.status == 200
    assert reply.headers.get("Call-ID") == call_id
    assert reply.to is not None and reply.to.params.get("tag")  # the processor's answer (RFC 3261 §8.2.6.2)


def test_options_no_processor_takes_gets_405_from_the_dispatcher(edge_port: int) -> None:
    call_id, reply = options(edge_port, "1002")
    assert reply.status == 405
    assert reply.headers.get("Call-ID") == call_id
    assert reply.headers.get("Allow") == "OPTIONS"
