"""Issue 17 item 3: routr-ray on a Ray cluster of three nodes (``ray.cluster_utils.Cluster``, started once for this
module): a head (no labels: Serve, the Location shards on Redis) and one node per EdgePort, labelled
``routr-edge=a`` / ``routr-edge=b``, each EdgePort pinned to its label by ``spec.placement``. ``routr-ray run
--address`` deploys config/ as shipped with two EdgePort files instead of one, as an operator joins a cluster.

SIPp (and a WebSocket phone) play the core acceptance scenarios with the two EdgePorts on different nodes:
register, a call across them both ways over TCP and WS, CANCEL, a call to the PSTN. Then, with phones registered,
node b is removed: no binding is lost (the shard that ran there reloads its slice from Redis on another node),
calls through edgeport-a keep working, and edgeport-b comes back on a new node with its label, at the same
address. ``routr-ray status`` is the operator's view throughout.

Everything that needs a Ray driver runs in a subprocess (``routr-ray run``, ``routr-ray status``): this process
only starts and stops the cluster's nodes, so it can share a pytest session with the other cluster tests (whose
driver is connected to another, single-node Ray). Inside ``scripts/in-netns``; needs ``sipp`` and
``redis-server``. About a minute and a half on a loaded 2-core box.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.acceptance import ACCEPTANCE, CONTACT_PORTS, SHIPPED_CONFIG_DIR, Profile, Sipp, copy_config
from tests.support.cross_edge import StreamPhone, answer
from tests.support.redis_server import REDIS_SERVER, RedisServer, free_port

pytestmark = [
    pytest.mark.timeout(600),
    pytest.mark.skipif(os.environ.get("ROUTR_RAY_IN_NETNS") != "1", reason="inside scripts/in-netns"),
    pytest.mark.skipif(shutil.which("sipp") is None or REDIS_SERVER is None, reason="needs sipp and redis-server"),
]

READY_TIMEOUT = 240.0  # Ray nodes + Serve on a shared 2-core box: typically 15-60 s
HOST = "127.0.0.1"
PASSWORDS = {"1001": "1234", "1002": "1234"}


def edgeport_yaml(ref: str, label: str, transports: str) -> str:
    return f"""# issue 17: one EdgePort per labelled node
apiVersion: v2beta1
kind: EdgePort
ref: {ref}
spec:
  bindAddr: 0.0.0.0
  processor: {{ addr: "serve://routr" }}
  transport: [{transports}]
  rateLimit: {{ trusted: [127.0.0.0/8] }}
  health: {{ enabled: false }}
  placement: {{ labels: {{ routr-edge: {label} }} }}
"""


@dataclass
class MultiNode:
    cluster: Any
    nodes: dict[str, Any]
    address: str
    env: dict[str, str]
    ports: dict[str, int]
    config_dir: Path
    work: Path
    run: subprocess.Popen[bytes] | None = None
    log: Path = field(default_factory=Path)

    def sipp(self, tmp_path: Path) -> Sipp:
        profile = Profile("multinode", SHIPPED_CONFIG_DIR, {}, self.ports["a"], 0, self.ports["b_ws"], 0,
                          self.ports["trunk"], PASSWORDS)
        return Sipp(tmp_path, profile)

    def status(self, *, text: bool = False) -> Any:
        args = [sys.executable, "-m", "routr_ray", "status", "--address", self.address, "--timeout", "10"]
        result = subprocess.run([*args] if text else [*args, "--json"], capture_output=True, text=True,
                                env=self.env, timeout=120)
        return result.stdout if text else json.loads(result.stdout)

    def edgeport(self, status: dict[str, Any], ref: str) -> dict[str, Any]:
        return next(e for e in status["edgeports"] if e["name"] == f"edgeport-{ref}")

    def node_labels(self, status: dict[str, Any], node_id: str) -> dict[str, str]:
        return next(n["labels"] for n in status["nodes"] if n["node_id"] == node_id)

    def log_tail(self, lines: int = 80) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def multinode(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MultiNode]:
    import ray
    from ray.cluster_utils import Cluster

    work = tmp_path_factory.mktemp("multinode")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with pytest.MonkeyPatch.context() as patch:
        # cluster_utils writes (and at shutdown deletes) /tmp/ray/ray_current_cluster, where `ray.init()` and
        # `--address auto` on this machine look: this cluster is ours alone (every command here names it)
        patch.setattr(ray._private.utils, "write_ray_address", lambda *args, **kwargs: None)
        patch.setattr(ray._common.utils, "reset_ray_address", lambda *args, **kwargs: None)
        yield from _multinode(Cluster, work)


def _multinode(cluster_class: Any, work: Path) -> Iterator[MultiNode]:
    # node death noticed within ~3 s (Ray's default: ~15 s)
    system = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
    temp_dir = tempfile.mkdtemp(prefix="rrmn-", dir="/tmp")  # short: Unix socket paths are limited to 107 bytes
    cluster = cluster_class(initialize_head=True, connect=False, head_node_args={
        "num_cpus": 2, "gcs_server_port": free_port(), "include_dashboard": False, "_system_config": system,
        "object_store_memory": 100 * 1024 * 1024, "temp_dir": temp_dir})
    redis = RedisServer()
    multi: MultiNode | None = None
    try:
        nodes = {label: cluster.add_node(num_cpus=1, labels={"routr-edge": label},
                                         object_store_memory=80 * 1024 * 1024) for label in ("a", "b")}
        redis.start()
        ports = {"a": free_port(), "b": free_port(), "b_ws": free_port(), "trunk": free_port()}
        mapping = {51901: free_port(), 51902: free_port(), 5080: ports["trunk"]}
        config_dir = copy_config(Profile("multinode", SHIPPED_CONFIG_DIR, mapping, 0, 0, 0, 0, 0),
                                 work / "config")
        (config_dir / "edgeport.yaml").unlink()
        (config_dir / "edgeport-a.yaml").write_text(edgeport_yaml(
            "edgeport-a", "a", f"{{ protocol: udp, port: {ports['a']} }}, {{ protocol: tcp, port: {ports['a']} }}"))
        (config_dir / "edgeport-b.yaml").write_text(edgeport_yaml(
            "edgeport-b", "b", f"{{ protocol: udp, port: {ports['b']} }}, {{ protocol: tcp, port: {ports['b']} }}, "
                               f"{{ protocol: ws, port: {ports['b_ws']} }}"))
        location = (config_dir / "location.yaml").read_text()
        location = re.sub(r"cache:\s*\n\s*provider: memory", f'cache: {{ provider: redis, parameters: "{redis.url}" }}',
                          location)
        assert "provider: redis" in location
        (config_dir / "location.yaml").write_text(location)
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
               "ROUTR_RAY_NONCE_KEY": "multinode-" + "k" * 40}
        multi = MultiNode(cluster, nodes, cluster.address, env, ports, config_dir, work, log=work / "run.log")
        with multi.log.open("wb") as log:
            multi.run = subprocess.Popen(
                [sys.executable, "-m", "routr_ray", "run", "--config", str(config_dir), "--address", cluster.address],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while "ready in" not in multi.log.read_text(errors="replace"):
            if multi.run.poll() is not None:
                pytest.fail(f"routr-ray run exited with {multi.run.returncode}:\n{multi.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"routr-ray run not ready within {READY_TIMEOUT:.0f}s:\n{multi.log_tail()}")
            time.sleep(0.5)
        yield multi
    finally:
        if multi is not None and multi.run is not None and multi.run.poll() is None:
            multi.run.send_signal(signal.SIGTERM)
            try:
                multi.run.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(multi.run.pid, signal.SIGKILL)
                multi.run.wait(timeout=10)
        cluster.shutdown()
        redis.cleanup()
        shutil.rmtree(temp_dir, ignore_errors=True)


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(1.0)
    raise AssertionError(f"{what} within {timeout:.0f}s (last: {last!r})")


def bindings(status: dict[str, Any]) -> int | None:
    """The bindings of every shard, None while a shard does not answer."""
    shards = status["shards"]
    if not shards or not all(s["healthy"] for s in shards):
        return None
    return sum(int(s["bindings"]) for s in shards)


def test_each_edgeport_runs_on_a_node_with_its_label(multinode: MultiNode) -> None:
    status = multinode.status()
    assert status["healthy"], multinode.status(text=True)
    assert sum(1 for n in status["nodes"] if n["alive"]) == 3
    for ref, label in (("edgeport-a", "a"), ("edgeport-b", "b")):
        edge = multinode.edgeport(status, ref)
        assert multinode.node_labels(status, edge["node_id"]) == {"routr-edge": label}, edge
        assert edge["placement"] == f"routr-edge={label}" and not edge["restarted"]
    a, b = (multinode.edgeport(status, ref)["node_id"] for ref in ("edgeport-a", "edgeport-b"))
    assert a != b
    text = multinode.status(text=True)
    assert "Nodes (3 alive)" in text and "Data plane" in text and "placement: routr-edge=b" in text


@pytest.mark.parametrize("hangs_up", ["caller", "callee"])
def test_a_call_from_node_a_to_a_tcp_phone_on_node_b(multinode: MultiNode, tmp_path: Path, hangs_up: str) -> None:
    sipp = multinode.sipp(tmp_path)
    call_id = f"mn-{hangs_up}-{os.getpid()}@{HOST}"  # SIPp maps by Call-ID: both use this one (callee_tcp.xml)
    callee = sipp.start("cross_edge/callee_tcp.xml", transport="t1", remote=(HOST, multinode.ports["b"]),
                        auth=("1002", PASSWORDS["1002"]), timeout_s=40,
                        extra=("-set", "hangs_up", hangs_up, "-cid_str", call_id))
    log = callee.work / "messages.log"
    wait_for(lambda: log.exists() and re.search(r"^SIP/2\.0 200 ", log.read_text(errors="replace"), re.MULTILINE),
             30, "1002 registered over TCP at edgeport-b")
    scenario = "agent_call/uac.xml" if hangs_up == "caller" else "agent_call/uac_callee_hangs_up.xml"
    caller = sipp.run(scenario, service="1002", keys={"caller": "1001"}, auth=("1001", PASSWORDS["1001"]),
                      extra=("-cid_str", call_id), timeout_s=30)
    answered = callee.result(timeout=45)
    sipp.assert_ok(caller, answered)
    (invite,) = answered.received("INVITE")
    assert re.search(rf"^Via: SIP/2\.0/TCP 127\.0\.0\.1:{multinode.ports['b']};", invite, re.MULTILINE), invite
    routes = re.findall(r"^Record-Route: <(sip:[^>]+)>", invite, re.MULTILINE)
    assert [r.split(";")[0] for r in routes] == [f"sip:127.0.0.1:{multinode.ports['b']}",
                                                  f"sip:127.0.0.1:{multinode.ports['a']}"], invite


def test_a_call_from_node_a_to_a_websocket_phone_on_node_b(multinode: MultiNode, tmp_path: Path) -> None:
    sipp = multinode.sipp(tmp_path)

    async def play() -> Any:
        phone = await StreamPhone.open("WS", (HOST, multinode.ports["b_ws"]))
        caller = None
        try:
            assert (await phone.register("1002")).status == 200
            caller = sipp.start("agent_call/uac.xml", service="1002", keys={"caller": "1001"},
                                auth=("1001", PASSWORDS["1001"]), timeout_s=30)
            invite, source = await phone.request_of("INVITE", timeout=20)
            answer(phone, invite, 180, source)
            answer(phone, invite, 200, source)
            await phone.request_of("ACK", timeout=15)
            bye, _ = await phone.request_of("BYE", timeout=15)
            phone.send(bye.make_response(200))
            return await asyncio.to_thread(caller.result, 30)
        finally:
            await phone.unregister("1002")
            await phone.close()
            if caller is not None and caller.process.poll() is None:
                caller.process.kill()

    sipp.assert_ok(asyncio.run(play()))


def test_cancel_of_a_call_to_a_phone_registered_on_the_other_node(multinode: MultiNode, tmp_path: Path) -> None:
    sipp = multinode.sipp(tmp_path)
    edge_b = (HOST, multinode.ports["b"])
    sipp.assert_ok(sipp.register("1002", remote=edge_b))
    try:
        callee = sipp.uas("cancel/uas_cancelled.xml", CONTACT_PORTS["1002"], keys={"me": "1002"}, timeout_s=30)
        caller = sipp.run("cancel/uac_cancel.xml", service="1002", keys={"caller": "1001"},
                          auth=("1001", PASSWORDS["1001"]), timeout_s=30)
        cancelled = callee.result(timeout=40)
    finally:
        sipp.unregister("1002", remote=edge_b)
    sipp.assert_ok(caller, cancelled)
    (invite,) = cancelled.received("INVITE")
    (cancel,) = cancelled.received("CANCEL")
    # a UDP phone registered through edgeport-b is called from there (the EdgePort that faces it)
    for message in (invite, cancel):
        assert re.search(rf"^Via: SIP/2\.0/UDP 127\.0\.0\.1:{multinode.ports['b']};", message, re.MULTILINE), message
    assert caller.received("SIP/2.0 487")


def test_a_call_to_the_pstn_from_node_b(multinode: MultiNode, tmp_path: Path) -> None:
    sipp = multinode.sipp(tmp_path)
    # the acceptance suite's provider, which checks the Request-URI names its own port
    provider = tmp_path / "trunk_uas.xml"
    provider.write_text((ACCEPTANCE / "to_pstn" / "trunk_uas.xml").read_text().replace(
        "127\\.0\\.0\\.1:25080", f"127\\.0\\.0\\.1:{multinode.ports['trunk']}"))
    assert str(multinode.ports["trunk"]) in provider.read_text()
    trunk = sipp.uas(str(provider), multinode.ports["trunk"], keys={"me": "trunk01"}, timeout_s=30)
    caller = sipp.run("agent_call/uac.xml", service="17065550100", keys={"caller": "1001"},
                      auth=("1001", PASSWORDS["1001"]), remote=(HOST, multinode.ports["b"]), timeout_s=30)
    answered = trunk.result(timeout=40)
    sipp.assert_ok(caller, answered)
    (invite,) = answered.received("INVITE")
    assert invite.startswith(f"INVITE sip:17065550100@127.0.0.1:{multinode.ports['trunk']} SIP/2.0")
    assert re.search(rf"^Via: SIP/2\.0/UDP 127\.0\.0\.1:{multinode.ports['b']};", invite, re.MULTILINE), invite


def test_a_lost_node_loses_no_binding_and_its_edgeport_comes_back_with_its_label(
    multinode: MultiNode, tmp_path: Path
) -> None:
    sipp = multinode.sipp(tmp_path)
    edge_a, edge_b = (HOST, multinode.ports["a"]), (HOST, multinode.ports["b"])
    sipp.assert_ok(sipp.register("1001", remote=edge_a), sipp.register("1002", remote=edge_b))
    try:
        before = wait_for(lambda: bindings(multinode.status()), 30, "every shard answering")
        assert before >= 2
        old_b = multinode.edgeport(multinode.status(), "edgeport-b")["node_id"]

        multinode.cluster.remove_node(multinode.nodes.pop("b"))
        wait_for(lambda: not multinode.edgeport(multinode.status(), "edgeport-b")["healthy"], 60,
                 "edgeport-b reported down")
        # 0 bindings lost: a shard that ran on node b reloads its slice from Redis on another node
        assert wait_for(lambda: bindings(multinode.status()), 90, "every shard answering again") == before

        # calls to phones on the surviving EdgePort keep working (retried while Serve moves what ran on node b)
        def call_1001() -> bool:
            callee = sipp.uas("agent_call/uas.xml", CONTACT_PORTS["1001"], keys={"me": "1001"}, timeout_s=15)
            caller = sipp.run("agent_call/uac.xml", service="1001", keys={"caller": "1002"},
                              auth=("1002", PASSWORDS["1002"]), remote=edge_a, timeout_s=15)
            answered = callee.result(timeout=20)
            return caller.ok and answered.ok

        wait_for(call_1001, 90, "a call to 1001 through edgeport-a while node b is gone")

        multinode.nodes["b"] = multinode.cluster.add_node(num_cpus=1, labels={"routr-edge": "b"},
                                                          object_store_memory=80 * 1024 * 1024)

        def back() -> dict[str, Any] | None:
            edge = multinode.edgeport(multinode.status(), "edgeport-b")
            return edge if edge["healthy"] else None

        edge = wait_for(back, 120, "edgeport-b back")
        status = multinode.status()
        assert edge["node_id"] != old_b and multinode.node_labels(status, edge["node_id"]) == {"routr-edge": "b"}
        assert edge["restarted"]
        assert bindings(status) == before
        assert "RESTARTED by Ray" in multinode.status(text=True)

        # 1002's binding (made through edgeport-b before the node was lost) works again: same address, new node
        callee = sipp.uas("agent_call/uas.xml", CONTACT_PORTS["1002"], keys={"me": "1002"}, timeout_s=30)
        caller = sipp.run("agent_call/uac.xml", service="1002", keys={"caller": "1001"},
                          auth=("1001", PASSWORDS["1001"]), remote=edge_a, timeout_s=30)
        answered = callee.result(timeout=40)
        sipp.assert_ok(caller, answered)
        (invite,) = answered.received("INVITE")
        assert re.search(rf"^Via: SIP/2\.0/UDP 127\.0\.0\.1:{multinode.ports['b']};", invite, re.MULTILINE), invite
    finally:
        sipp.unregister("1001", remote=edge_a)
        sipp.unregister("1002", remote=edge_a)
