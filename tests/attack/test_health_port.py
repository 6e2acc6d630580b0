"""The health/metrics port (issue 14 item 11): /metrics tells what the server does, so it binds loopback unless
configured, and can be turned off. The EdgePort as shipped (config/edgeport.yaml) in-process, real sockets."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

from routr_ray.config import load_edgeport
from routr_ray.config.edgeport import Transport, TransportProtocol
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort
from routr_ray.proto.gen import processor_pb2
from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def shipped(**health: object):  # type: ignore[no-untyped-def]
    config = load_edgeport(ROOT / "config" / "edgeport.yaml")
    return dataclasses.replace(config, transports=(Transport(TransportProtocol.UDP, 0, "127.0.0.1"),),
                               security_context=None,
                               health=dataclasses.replace(config.health, port=free_port(), **health))


async def test_health_binds_loopback_by_default() -> None:
    config = shipped()
    edge = EdgePort(config, FakeDispatcher(lambda r: processor_pb2.MessageResponse()))
    await edge.start()
    try:
        assert edge.health is not None
        with socket.create_connection(("127.0.0.1", config.health.port), timeout=2):
            pass
        with socket.socket() as probe:
            assert probe.connect_ex(("192.0.2.1", config.health.port)) != 0  # not on the other addresses
    finally:
        await edge.stop()


async def test_health_can_be_turned_off() -> None:
    config = shipped(enabled=False)
    edge = EdgePort(config, FakeDispatcher(lambda r: processor_pb2.MessageResponse()))
    await edge.start()
    try:
        assert edge.health is None
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", config.health.port)) != 0
    finally:
        await edge.stop()
