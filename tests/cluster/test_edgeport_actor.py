"""The EdgePort as a detached Ray actor: answers over UDP, comes back after being killed (issue 3).

These EdgePorts have no dispatcher behind them (no ``routr`` app is deployed here), so they are not ready: OPTIONS
to them gets 503 with Retry-After (issue 13 item 4); that answer is what these tests wait for."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import ray

from routr_ray.actors.edgeport import NAME, deploy_edgeport
from routr_ray.config.edgeport import EdgePortConfig, HealthConfig, Transport, TransportProtocol
from tests.support.probes import metric_value, options_ping, scrape, udp_port
from tests.support.redis_server import free_port


@pytest.fixture(scope="module")
def edge(ray_session: None) -> Iterator[int]:
    port = udp_port()
    config = EdgePortConfig(
        ref=f"test-{uuid.uuid4().hex[:6]}",
        bind_addr="127.0.0.1",
        transports=(Transport(TransportProtocol.UDP, port, "127.0.0.1"),),
        health=HealthConfig(enabled=True, port=free_port(), bind_addr="127.0.0.1"),
    )
    handle, lines = deploy_edgeport(config)
    assert any(f"127.0.0.1:{port}" in line for line in lines)
    yield port
    ray.kill(ray.get_actor(NAME.format(ref=config.ref), namespace="routr"), no_restart=True)


def test_detached_edgeport_answers_options_over_udp(edge: int) -> None:
    reply = options_ping(edge)
    assert reply is not None and reply.startswith(b"SIP/2.0 503 ") and b"\r\nRetry-After: " in reply


def test_killed_edgeport_answers_again_within_5_seconds(edge: int) -> None:
    actor = ray.get_actor(next(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                               if a["name"].startswith("edgeport-test-")), namespace="routr")
    ray.kill(actor, no_restart=False)
    started = time.monotonic()
    while time.monotonic() - started < 5.0:
        reply = options_ping(edge, timeout=0.25)
        if reply is not None:
            assert reply.startswith(b"SIP/2.0 503 ")  # answering again (not ready: nothing behind it)
            return
    pytest.fail("the EdgePort did not answer within 5 s of being killed")


def options_in(health_port: int) -> float:
    samples = scrape(f"http://127.0.0.1:{health_port}/metrics")
    return metric_value(samples, "routr_sip_messages_total", method="OPTIONS", direction="in")


def test_workers_share_the_port_and_each_answers(ray_session: None) -> None:
    from routr_ray.actors.edgeport import deploy_edgeports, worker_name

    port, health = udp_port(), free_port()
    config = EdgePortConfig(
        ref=f"workers-{uuid.uuid4().hex[:6]}",
        bind_addr="127.0.0.1",
        transports=(Transport(TransportProtocol.UDP, port, "127.0.0.1"),),
        health=HealthConfig(enabled=True, port=health, bind_addr="127.0.0.1"),
        workers=2,
    )
    handles, lines = deploy_edgeports(config)
    try:
        assert len(handles) == 2
        named = {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)}
        assert {worker_name(config.ref, i) for i in range(2)} <= named
        assert any("2 workers" in line for line in lines)
        replies = [options_ping(port) for _ in range(40)]  # 40 source ports: the kernel spreads them
        assert all(r is not None and r.startswith(b"SIP/2.0 503 ") for r in replies)  # each answers, not ready
        per_worker = [options_in(health), options_in(health + 1)]
        assert sum(per_worker) == 40 and min(per_worker) > 0, per_worker
    finally:
        for handle in handles:
            ray.kill(handle, no_restart=True)
