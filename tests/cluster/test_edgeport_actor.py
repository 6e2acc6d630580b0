"""The EdgePort as a detached Ray actor: answers over UDP, comes back after being killed (issue 3).

These EdgePorts have no dispatcher behind them (no ``routr`` app is deployed here), so they are not ready: OPTIONS
to them gets 503 with Retry-After (issue 13 item 4); that answer is what these tests wait for."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import ray

from routr_ray.actors.edgeport import NAME, deploy_edgeport, edge_fingerprint
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


def test_a_redeploy_keeps_an_unchanged_edgeport_and_gives_a_new_token_to_the_running_one(ray_session: None) -> None:
    """A rotated ``processor.token`` is applied in place (issue 18 item 4): the actor, its flows and transactions
    stay, and its fingerprint says it runs the new config (tests/cluster/test_edgeport_redeploy.py)."""
    import dataclasses

    port = udp_port()
    config = EdgePortConfig(
        ref=f"rot-{uuid.uuid4().hex[:6]}", bind_addr="127.0.0.1",
        transports=(Transport(TransportProtocol.UDP, port, "127.0.0.1"),), health=HealthConfig(enabled=False),
        processor_addr="127.0.0.1:9", processor_token="old-token-0123456789")
    name = NAME.format(ref=config.ref)
    try:
        deploy_edgeport(config)
        first = ray.get_actor(name, namespace="routr")._actor_id
        deploy_edgeport(config)
        assert ray.get_actor(name, namespace="routr")._actor_id == first  # nothing changed: kept, flows kept
        rotated = dataclasses.replace(config, processor_token="new-token-0123456789")
        handle, lines = deploy_edgeport(rotated)
        assert handle._actor_id == first  # kept: the token changes in place
        assert f"EdgePort {config.ref}: updated in place: spec.processor.token" in lines
        assert ray.get(handle.fingerprint.remote()) == edge_fingerprint(rotated, "embedded", "")
        assert options_ping(port) is not None
    finally:
        ray.kill(ray.get_actor(name, namespace="routr"), no_restart=True)


def test_trunk_and_peer_sources_follow_the_resource_board(ray_session: None) -> None:
    """Issue 14 item 8: the EdgePort starts with the Trunk/Peer source networks given at deploy, then follows the
    Connect resource board (only the networks reach it) when the resources reload."""
    from routr_ray.actors.connect import BOARD_NAME, ResourceBoard
    from routr_ray.config import Resources
    from routr_ray.config.resources import AccessControlList, Trunk, TrunkInbound
    from routr_ray.config.values import to_networks

    def with_trunk_at(cidr: str) -> Resources:
        return Resources(access_control_lists=(AccessControlList("acl", "acl", allow=to_networks([cidr])),),
                         trunks=(Trunk("trunk", "trunk", inbound=TrunkInbound("trunk.sip.local", "acl")),))

    port = udp_port()
    config = EdgePortConfig(ref=f"trunks-{uuid.uuid4().hex[:6]}", bind_addr="127.0.0.1",
                            transports=(Transport(TransportProtocol.UDP, port, "127.0.0.1"),),
                            health=HealthConfig(enabled=False))
    board = ResourceBoard.options(name=BOARD_NAME, namespace="routr").remote(with_trunk_at("203.0.113.0/28"))
    handle, _ = deploy_edgeport(config, trunk_sources=tuple(to_networks(["198.51.100.7"])))

    def protected_soon(expected: list[str], within: float = 15.0) -> list[str]:
        deadline = time.monotonic() + within
        while True:
            found = ray.get(handle.protected_sources.remote(), timeout=10)
            if found == expected or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    try:
        assert protected_soon(["203.0.113.0/28"]) == ["203.0.113.0/28"]  # the board's newest set replaces the deploy's
        ray.get(board.publish.remote(with_trunk_at("192.0.2.99/32")), timeout=10)  # a reload
        assert protected_soon(["192.0.2.99/32"], within=5.0) == ["192.0.2.99/32"]
    finally:
        ray.kill(handle, no_restart=True)
        ray.kill(board, no_restart=True)
