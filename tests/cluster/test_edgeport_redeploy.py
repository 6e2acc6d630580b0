"""Issue 18 item 4 on a real local Ray: a redeploy with a changed ACL and rate limit updates the running EdgePort
actor in place (same actor, same process, its TCP connection kept; the change seen on the wire, and kept across a
crash restart); a port change is refused naming the file, the field and why, and changes nothing; the launcher's
check refuses it (and a Location shard-count change) before anything is deployed.

These EdgePorts have no dispatcher behind them: OPTIONS gets 503 from the EdgePort itself (not ready), which is
the answer the tests wait for; a source the ACL denies or the rate limit bans gets none.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from routr_ray.actors.edgeport import deploy_edgeport, edge_fingerprint, worker_name
from routr_ray.config.edgeport import (
    EdgePortConfig,
    HealthConfig,
    RateLimit,
    SourceFilter,
    Transport,
    TransportProtocol,
)
from routr_ray.edge.reconfigure import ConfigRefused
from tests.support.probes import options_ping, udp_port
from tests.support.redis_server import free_port

pytestmark = pytest.mark.skipif(os.environ.get("ROUTR_RAY_IN_NETNS") != "1", reason="inside scripts/in-netns")

REPO = Path(__file__).resolve().parents[2]
DENIED, FLOODER = "127.0.0.3", "127.0.0.4"


def answered(port: int, source: str, count: int = 1) -> int:
    return sum(options_ping(port, timeout=0.5, source=source) is not None for _ in range(count))


def pid_of(handle: ray.actor.ActorHandle, tries: int = 1) -> int:
    """The actor's process id (``tries``: after a restart the handle's first calls may fail as unavailable)."""
    for _ in range(tries - 1):
        try:
            return int(ray.get(handle.__ray_call__.remote(lambda _self: os.getpid()), timeout=10))
        except ray.exceptions.ActorUnavailableError:
            time.sleep(0.2)
    return int(ray.get(handle.__ray_call__.remote(lambda _self: os.getpid()), timeout=10))


def pings(connection: socket.socket) -> bool:
    """RFC 5626 §4.4.1 double-CRLF ping over a TCP connection the EdgePort keeps: a CRLF pong."""
    connection.sendall(b"\r\n\r\n")
    return connection.recv(2) == b"\r\n"


@pytest.fixture
def config(ray_session: None) -> Iterator[EdgePortConfig]:
    config = EdgePortConfig(
        ref=f"reconf-{uuid.uuid4().hex[:6]}", bind_addr="127.0.0.1",
        transports=(Transport(TransportProtocol.UDP, udp_port(), "127.0.0.1"),
                    Transport(TransportProtocol.TCP, free_port(), "127.0.0.1")),
        health=HealthConfig(enabled=False), processor_addr="127.0.0.1:9", processor_token="token-0123456789abcdef")
    yield config
    try:
        ray.kill(ray.get_actor(worker_name(config.ref, 0), namespace="routr"), no_restart=True)
    except ValueError:
        pass


def test_a_new_acl_and_rate_limit_update_the_running_edgeport_in_place(config: EdgePortConfig) -> None:
    udp, tcp = config.transports[0].port, config.transports[1].port
    handle, _ = deploy_edgeport(config, file="config/edgeport.yaml")
    actor, pid = handle._actor_id, pid_of(handle)
    with socket.create_connection(("127.0.0.1", tcp), timeout=5) as connection:
        assert pings(connection)
        assert answered(udp, DENIED) == 1 and answered(udp, FLOODER, 6) == 6

        new = dataclasses.replace(config, access_control_list=SourceFilter(deny=(ipaddress.ip_network(f"{DENIED}/32"),)),
                                  rate_limit=RateLimit(requests_per_second=0.1, burst=3, ban_seconds=60))
        handle, lines = deploy_edgeport(new, file="config/edgeport.yaml")
        assert f"EdgePort {config.ref}: updated in place: spec.accessControlList, spec.rateLimit" in lines
        # the same actor in the same process, and its TCP connection is still open
        assert handle._actor_id == actor and pid_of(handle) == pid
        assert pings(connection)
        # on the wire: the denied source gets no answer, the flooder 3 (the new burst) then none, others answer
        assert answered(udp, DENIED) == 0
        assert answered(udp, FLOODER, 6) == 3
        assert answered(udp, "127.0.0.1") == 1
        assert ray.get(handle.fingerprint.remote()) == edge_fingerprint(new, "embedded", "")
        _, lines = deploy_edgeport(new)  # the same config again: nothing to do
        assert not any("updated in place" in line for line in lines)

    # a crash restart comes back with the config applied in place, not the one the actor was created with
    ray.kill(handle, no_restart=False)
    deadline = time.monotonic() + 20
    while answered(udp, "127.0.0.1") == 0:
        assert time.monotonic() < deadline, "the EdgePort did not come back"
    assert pid_of(handle, tries=20) != pid
    assert answered(udp, DENIED) == 0
    running, _, _ = ray.get(handle.running_config.remote(), timeout=10)
    assert running == new


def test_a_port_change_is_refused_and_the_running_edgeport_is_kept(config: EdgePortConfig) -> None:
    udp = config.transports[0].port
    handle, _ = deploy_edgeport(config)
    actor, pid = handle._actor_id, pid_of(handle)
    moved = dataclasses.replace(config, transports=(Transport(TransportProtocol.UDP, udp_port(), "127.0.0.1"),
                                                    config.transports[1]),
                                access_control_list=SourceFilter(deny=(ipaddress.ip_network("127.0.0.0/8"),)))
    with pytest.raises(ConfigRefused) as refused:
        deploy_edgeport(moved, file="/etc/routr/edgeport.yaml")
    message = str(refused.value)
    assert message.startswith("/etc/routr/edgeport.yaml: spec.transport: the listeners are bound when the EdgePort "
                              "starts")
    assert "nothing was changed" in message and len(message.splitlines()) == 1
    assert handle._actor_id == actor and pid_of(handle) == pid
    assert answered(udp, "127.0.0.1") == 1  # the old port, and the refused deny-all was not applied
    running, _, _ = ray.get(handle.running_config.remote(), timeout=10)
    assert running == config


def _config_dir(tmp_path: Path, ref: str, udp: int, tcp: int) -> Path:
    """config/ as shipped, its EdgePort moved to loopback ports of this test and no health port."""
    target = tmp_path / "config"
    shutil.copytree(REPO / "config", target)
    text = (target / "edgeport.yaml").read_text()
    text = (text.replace("ref: edgeport-01", f"ref: {ref}").replace("bindAddr: 0.0.0.0", "bindAddr: 127.0.0.1")
            .replace("addr: serve://routr ", "addr: 127.0.0.1:9 ")
            .replace("    - { protocol: udp, port: 5060 }\n    - { protocol: tcp, port: 5060 }\n"
                     "    - { protocol: tls, port: 5061 }\n    - { protocol: ws, port: 5062 }\n"
                     "    - { protocol: wss, port: 5063 }\n",
                     f"    - {{ protocol: udp, port: {udp} }}\n    - {{ protocol: tcp, port: {tcp} }}\n")
            .replace("    port: 8080 ", "    enabled: false\n    port: 8080 "))
    (target / "edgeport.yaml").write_text(text)
    return target


def test_the_launchers_redeploy_applies_an_acl_in_place_and_refuses_a_port_or_shard_change(
        ray_session: None, tmp_path: Path) -> None:
    from routr_ray.actors import location as location_actors
    from routr_ray.actors.launcher import (
        Deployment,
        StartupError,
        _start_edgeports,
        check_running,
        location_config,
    )
    from routr_ray.config import load_config_dir

    ref, udp, tcp = f"launch-{uuid.uuid4().hex[:6]}", udp_port(), free_port()
    directory = _config_dir(tmp_path, ref, udp, tcp)
    edgeport_yaml = directory / "edgeport.yaml"
    shards = location_actors.create_shards(2, "memory")
    deployment = Deployment(run_id="test")

    def load() -> tuple[object, ...]:
        config = load_config_dir(directory)
        return (config, *location_config(config, None))

    try:
        ray.get([s.ready.remote() for s in shards], timeout=60)
        config, location, provider, url = load()
        check_running(config, location, provider, url)  # nothing of this EdgePort runs yet
        _start_edgeports(deployment, config)
        (handle,) = deployment.edgeports
        actor, pid = handle._actor_id, pid_of(handle)
        assert answered(udp, DENIED) == 1

        edgeport_yaml.write_text(edgeport_yaml.read_text().replace("    deny: []", f"    deny: [{DENIED}/32]"))
        config, location, provider, url = load()
        check_running(config, location, provider, url)  # an ACL change: in place, nothing refused
        lines = _start_edgeports(Deployment(run_id="test"), config)
        assert any("updated in place: spec.accessControlList" in line for line in lines)
        assert handle._actor_id == actor and pid_of(handle) == pid
        assert answered(udp, DENIED) == 0 and answered(udp, "127.0.0.1") == 1

        edgeport_yaml.write_text(edgeport_yaml.read_text().replace(f"port: {udp} ", f"port: {udp_port()} "))
        (directory / "location.yaml").write_text((directory / "location.yaml").read_text()
                                                 .replace("shards: 2", "shards: 3"))
        config, location, provider, url = load()
        with pytest.raises(StartupError) as refused:
            check_running(config, location, provider, url)
        first, second, hint = str(refused.value).splitlines()
        assert first.startswith(f"{edgeport_yaml}: spec.transport: the listeners are bound")
        assert second.startswith(f"{directory / 'location.yaml'}: spec.shards: 2 shards run, 3 asked for")
        assert "stop the server" in hint
        assert pid_of(handle) == pid and answered(udp, "127.0.0.1") == 1  # still the same EdgePort, same port
    finally:
        for handle in [*deployment.edgeports, *shards]:
            ray.kill(handle, no_restart=True)
