"""The edge side of an in-place config change (routr_ray/edge/reconfigure.py, RateLimiter.update), without sockets.
On the wire: tests/integration/test_edgeport_reconfigure.py."""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Iterator

import pytest

from routr_ray.config.edgeport import ConnectionLimits, EdgePortConfig, RateLimit, UnknownMethodAction
from routr_ray.edge.dispatcher_client import FakeDispatcher, client_for_addr
from routr_ray.edge.edgeport import EdgePort
from routr_ray.edge.guards import MethodDecision, RateLimiter
from routr_ray.edge.reconfigure import LOGGER, ConfigRefused, reconfigure
from routr_ray.grpcutil.auth import bearer_metadata
from routr_ray.proto.gen import processor_pb2


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_new_rate_limit_keeps_bans_caps_buckets_and_unbans_newly_trusted_sources() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(requests_per_second=1, burst=10, ban_seconds=60), clock=clock)
    assert all(limiter.allow("198.51.100.1") for _ in range(10))
    assert not limiter.allow("198.51.100.1") and limiter.is_banned("198.51.100.1")
    assert limiter.allow("198.51.100.2")  # 9 tokens left
    limiter.update(RateLimit(requests_per_second=1, burst=2, ban_seconds=60))
    assert limiter.is_banned("198.51.100.1")  # a running ban stays
    assert limiter.allow("198.51.100.2") and limiter.allow("198.51.100.2")  # capped at the new burst: 2
    assert not limiter.allow("198.51.100.2")
    limiter.update(RateLimit(requests_per_second=1, burst=2, trusted=(ipaddress.ip_network("198.51.100.0/24"),)))
    assert not limiter.is_banned("198.51.100.1") and limiter.allow("198.51.100.1")
    limiter.update(RateLimit(requests_per_second=1, burst=1))
    assert limiter.allow("198.51.100.1") and not limiter.allow("198.51.100.1")
    limiter.update(RateLimit(enabled=False))
    assert not limiter.is_banned("198.51.100.1") and all(limiter.allow("198.51.100.1") for _ in range(50))


def test_the_trunk_and_peer_sources_stay_protected_across_an_update() -> None:
    limiter = RateLimiter(RateLimit(burst=1))
    limiter.protect([ipaddress.ip_network("203.0.113.0/28")])
    limiter.update(RateLimit(burst=1, ban_seconds=5))
    assert limiter.is_protected("203.0.113.5")
    assert all(limiter.allow("203.0.113.5") for _ in range(20)) and not limiter.is_banned("203.0.113.5")


def _edge(config: EdgePortConfig | None = None) -> EdgePort:
    return EdgePort(config or EdgePortConfig(), FakeDispatcher(lambda request: processor_pb2.MessageResponse()))


@pytest.fixture
def routr_logger() -> Iterator[logging.Logger]:
    logger = logging.getLogger(LOGGER)
    level = logger.level
    yield logger
    logger.setLevel(level)


def test_methods_limits_addresses_and_log_level_apply_to_the_edge(routr_logger: logging.Logger) -> None:
    edge = _edge()
    connections, transport_limits = edge.connections, edge.transport_limits
    new = dataclasses.replace(
        edge.config, methods=("REGISTER",), unknown_method_action=UnknownMethodAction.DISCARD,
        limits=ConnectionLimits(max_message_size=4096, max_connections=7, max_connections_per_source=2,
                                idle_timeout_seconds=30),
        localnets=("10.9.0.0/16",), external_addrs=("203.0.113.9",), log_level="DEBUG")
    diff = reconfigure(edge, new)
    assert set(diff.in_place) == {"spec.methods", "spec.unknownMethodAction", "spec.limits", "spec.localnets",
                                  "spec.externalAddrs", "spec.logLevel"}
    assert edge.methods.check("INVITE") is MethodDecision.DISCARD and edge.methods.allow_header == "REGISTER"
    assert edge.connections is connections and (connections.max_connections,
                                                connections.max_connections_per_source) == (7, 2)
    assert edge.transport_limits is transport_limits  # the object every listener and connection holds
    assert (transport_limits.max_message_size, transport_limits.idle_timeout) == (4096, 30)
    assert list(edge._request_template.localnets) == ["10.9.0.0/16"]
    assert list(edge._request_template.external_addrs) == ["203.0.113.9"]
    assert routr_logger.level == logging.DEBUG
    assert edge.config is new


async def test_a_rotated_processor_token_is_sent_by_the_host_port_client() -> None:
    config = EdgePortConfig(processor_addr="127.0.0.1:9", processor_token="old-token-0123456789")
    client = client_for_addr(config.processor_addr, token=config.processor_token)  # a grpc.aio channel: on a loop
    edge = EdgePort(config, client)
    try:
        reconfigure(edge, dataclasses.replace(config, processor_token="new-token-0123456789"))
        assert client.metadata == bearer_metadata("new-token-0123456789")  # type: ignore[attr-defined]
    finally:
        await client.close()


def test_a_refused_change_applies_nothing_even_its_in_place_parts() -> None:
    edge = _edge()
    config, rate = edge.config, edge.rate.config
    with pytest.raises(ConfigRefused, match=r"^edgeport.yaml: spec.workers: "):
        reconfigure(edge, dataclasses.replace(config, workers=2, rate_limit=RateLimit(burst=1)))
    assert edge.config is config and edge.rate.config is rate
