"""Attacks on the Location gRPC API (51902, issue 14 item 3): AddRoute/RemoveRoutes rewrite where calls go, so the
API must never listen beyond loopback without a token. In-process shards (no Ray), real sockets."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from routr_ray.config import load_location
from routr_ray.grpcutil.auth import OpenPortRefused, is_loopback_host, split_host_port
from routr_ray.location.grpc_api import start_location_server
from routr_ray.location.local_client import LocalLocationClient
from routr_ray.location.service import LocationService
from routr_ray.location.stores.memory import MemoryStore
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_config_keeps_51902_on_loopback() -> None:
    config = load_location(ROOT / "config" / "location.yaml")
    host, port = split_host_port(config.bind_addr)
    assert port == 51902 and is_loopback_host(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "[::]", "192.0.2.1"])
async def test_51902_on_a_non_loopback_address_without_a_token_refuses_to_start(host: str) -> None:
    port = free_port()
    client = LocalLocationClient([LocationService(MemoryStore("0"), shard_index=0, shard_count=1)])
    with pytest.raises(OpenPortRefused, match="without a token"):
        await start_location_server(client, f"{host}:{port}")
    with socket.socket() as probe:  # and nothing was left listening
        assert probe.connect_ex(("192.0.2.1", port)) != 0
