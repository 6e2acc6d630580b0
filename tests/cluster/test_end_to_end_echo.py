"""End to end (issue 4): SIP OPTIONS over UDP -> EdgePort actor -> echo processor -> 200 back to the UDP client,
with both ways of dispatching: ``embedded`` (the EdgePort runs the dispatcher's matching and calls the processor
deployment itself, the default) and ``dispatcher`` (through the dispatcher deployment's process_batch)."""

from __future__ import annotations

import socket
import time
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
from tests.support.probes import udp_port


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


def echo_config(user: str) -> DispatcherConfig:
    # Only OPTIONS to ``user`` is routed: another user gets the dispatcher's 405, which proves the path.
    return DispatcherConfig(processors=(
        ProcessorConfig(ref="echo", addr="serve://echo", methods=("OPTIONS",),
                        match_func=f"req => req.message.requestUri.user === '{user}'"),
    ))


@pytest.fixture(scope="module")
def edges(serve_started: None) -> Iterator[dict[str, int]]:
    """One EdgePort per dispatch mode, same app: mode -> UDP port."""
    deploy_app(echo_config("1001"))
    ports: dict[str, int] = {}
    refs = []
    for mode in ("embedded", "dispatcher"):
        port = udp_port()
        config = EdgePortConfig(
            ref=f"e2e-{mode[:3]}-{uuid.uuid4().hex[:6]}",
            bind_addr="127.0.0.1",
            transports=(Transport(TransportProtocol.UDP, port, "127.0.0.1"),),
            health=HealthConfig(enabled=False),
        )
        handle, _ = deploy_edgeport(config, dispatch=mode)
        assert ray.get(handle.dispatch_mode.remote()) == mode
        ports[mode] = port
        refs.append(config.ref)
    yield ports
    for ref in refs:
        ray.kill(ray.get_actor(NAME.format(ref=ref), namespace="routr"), no_restart=True)
    serve.delete(APP_NAME)


@pytest.fixture(params=["embedded", "dispatcher"])
def edge_port(request: pytest.FixtureRequest, edges: dict[str, int]) -> int:
    return edges[request.param]


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


def test_the_embedded_dispatch_follows_a_dispatcher_config_change(edges: dict[str, int]) -> None:
    deploy_app(echo_config("1002"))  # reconfigures the dispatcher in place; the EdgePort re-reads within ~2 s
    try:
        deadline = time.monotonic() + 15
        while options(edges["embedded"], "1002")[1].status != 200:
            assert time.monotonic() < deadline, "the embedded dispatch kept the old config"
            time.sleep(0.5)
        assert options(edges["embedded"], "1001")[1].status == 405
        assert options(edges["dispatcher"], "1002")[1].status == 200
    finally:
        deploy_app(echo_config("1001"))
