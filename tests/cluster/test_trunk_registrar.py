"""The trunk registrar actor on a real local Ray (issue 15): it registers a sendRegister trunk through a detached
EdgePort actor with a provider on 127.0.0.1, shows the registration in its statuses and on the EdgePort's
/metrics, and registers again (a new Call-ID) after Ray restarts it."""

from __future__ import annotations

import socket
import time
import uuid

import ray

from routr_ray.actors.edgeport import NAME as EDGE_NAME
from routr_ray.actors.edgeport import deploy_edgeport
from routr_ray.actors.trunk_registrar import deploy_trunk_registrar
from routr_ray.config import Resources
from routr_ray.config.edgeport import EdgePortConfig, HealthConfig, Transport, TransportProtocol
from routr_ray.config.resources import Credentials, Trunk, TrunkOutbound, TrunkUri
from routr_ray.sip import Request, parse
from tests.support.probes import metric_value, scrape, udp_port
from tests.support.redis_server import free_port


class Provider:
    """A provider that grants every REGISTER for an hour, without a challenge (digest has its own tests)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]

    def serve_one(self, deadline: float) -> Request | None:
        while time.monotonic() < deadline:
            try:
                data, peer = self.sock.recvfrom(65536)
            except TimeoutError:
                continue
            request = parse(data)
            if not isinstance(request, Request) or request.method != "REGISTER":
                continue
            response = request.make_response(200, to_tag="p")
            (contact,) = request.contacts
            response.headers.add("Contact", f"<{contact.uri}>;expires=3600")
            self.sock.sendto(bytes(response), peer)
            return request
        return None


def test_registers_through_the_edgeport_and_again_after_a_restart(ray_session: None) -> None:
    provider = Provider()
    edge_port, health = udp_port(), free_port()
    config = EdgePortConfig(ref=f"trk-{uuid.uuid4().hex[:6]}", bind_addr="127.0.0.1",
                            transports=(Transport(TransportProtocol.UDP, edge_port, "127.0.0.1"),),
                            health=HealthConfig(enabled=True, port=health, bind_addr="127.0.0.1"))
    deploy_edgeport(config)
    resources = Resources(
        credentials=(Credentials("cred", "c", "pbx-1", "pw"),),
        trunks=(Trunk("trunk-t", "T", None, TrunkOutbound((TrunkUri("127.0.0.1", provider.port, "udp"),),
                                                          send_register=True, credentials_ref="cred")),),
    )
    registrar = deploy_trunk_registrar(resources, "k" * 64, config.ref, detached=False)
    try:
        first = provider.serve_one(time.monotonic() + 20)
        assert first is not None, "no REGISTER reached the provider"
        assert (first.via[0].host, first.via[0].port) == ("127.0.0.1", edge_port)  # from the EdgePort's socket
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            (row,) = ray.get(registrar.statuses.remote(), timeout=10)
            if row["state"] == "registered":
                break
            time.sleep(0.2)
        assert row["state"] == "registered" and 3500 < row["expires_in"] <= 3600
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            samples = scrape(f"http://127.0.0.1:{health}/metrics")
            if metric_value(samples, "routr_trunk_registration_state", trunk="trunk-t") == 1:
                break
            time.sleep(0.2)
        assert metric_value(samples, "routr_trunk_registration_state", trunk="trunk-t") == 1

        ray.kill(registrar, no_restart=False)  # Ray restarts it: it registers again at once
        again = provider.serve_one(time.monotonic() + 30)
        assert again is not None, "no REGISTER after the restart"
        assert again.call_id != first.call_id
    finally:
        ray.kill(registrar, no_restart=True)
        ray.kill(ray.get_actor(EDGE_NAME.format(ref=config.ref), namespace="routr"), no_restart=True)
        provider.sock.close()
