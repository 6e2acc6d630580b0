"""A config change cannot widen what a port exposes (issue 18 item 4, docs/security.md "Config changes on a running
server"): the shipped EdgePort in-process, its health port on loopback; a new config that would move the health
port or a listener to every interface is refused and applies nothing, and the ports stay where they were, checked
by connecting to the host's other address (192.0.2.1 in scripts/in-netns)."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket

import pytest

from routr_ray.config.edgeport import RateLimit, SourceFilter, Transport, TransportProtocol
from routr_ray.edge.dispatcher_client import FakeDispatcher
from routr_ray.edge.edgeport import EdgePort
from routr_ray.edge.reconfigure import ConfigRefused, reconfigure
from routr_ray.proto.gen import processor_pb2
from tests.attack.test_health_port import shipped
from tests.support.redis_server import free_port


def reachable(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(1.0)
        return probe.connect_ex((host, port)) == 0


async def test_a_deploy_cannot_move_the_health_port_or_a_listener_to_every_interface() -> None:
    tcp = free_port()
    config = dataclasses.replace(shipped(), transports=(Transport(TransportProtocol.TCP, tcp, "127.0.0.1"),))
    edge = EdgePort(config, FakeDispatcher(lambda r: processor_pb2.MessageResponse()))
    await edge.start()
    health = config.health.port
    try:
        assert reachable("127.0.0.1", health) and not reachable("192.0.2.1", health)
        assert reachable("127.0.0.1", tcp) and not reachable("192.0.2.1", tcp)
        acl = SourceFilter(deny=(ipaddress.ip_network("198.51.100.0/24"),))
        wider = [
            dataclasses.replace(config, health=dataclasses.replace(config.health, bind_addr="0.0.0.0"),
                                access_control_list=acl),
            dataclasses.replace(config, transports=(Transport(TransportProtocol.TCP, tcp, "0.0.0.0"),),
                                rate_limit=RateLimit(enabled=False)),
            dataclasses.replace(config, health=dataclasses.replace(config.health, port=free_port(),
                                                                   bind_addr="0.0.0.0")),
        ]
        for change in wider:
            with pytest.raises(ConfigRefused, match="nothing was changed"):
                reconfigure(edge, change)
        assert edge.config is config and edge.rate.config is config.rate_limit
        assert not edge.sources.deny  # the in-place parts of a refused change are not applied either
        assert reachable("127.0.0.1", health) and not reachable("192.0.2.1", health)
        assert reachable("127.0.0.1", tcp) and not reachable("192.0.2.1", tcp)
    finally:
        await edge.stop()
