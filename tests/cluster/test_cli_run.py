"""`routr-ray run` / `status` / `locate` as a user runs them: the CLI in a subprocess (issue 7 items 1 and 2).

Startup failures are checked before Ray starts, so those tests take a second each. The full test starts the
server with two EdgePorts, sends SIP OPTIONS to both, reads `routr-ray status --json` and `routr-ray locate`,
then sends SIGTERM and checks that no process started by the run is left: every process Ray starts inherits
the run's environment, so a marker variable finds them all, wherever they were re-parented.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.redis_server import free_port

MARKER = "ROUTR_RAY_TEST_MARKER"
READY_TIMEOUT = 120  # a loaded 2-core CI box; typically 10-20 s


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "routr_ray", *args]


def env(**extra: str) -> dict[str, str]:
    result = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "ROUTR_RAY_CONFIG")}
    result.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", **extra)
    return result


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(directory: Path, edges: list[tuple[str, int]], *, health_port: int, location_port: int,
                 grpc_port: int, grpc_host: str = "127.0.0.1", location_host: str = "127.0.0.1") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for ref, udp_port in edges:
        (directory / f"edgeport-{ref}.yaml").write_text(f"""
apiVersion: v2beta1
kind: EdgePort
ref: {ref}
spec:
  bindAddr: 127.0.0.1
  processor: {{ addr: "serve://routr" }}
  localnets: [127.0.0.0/8]
  methods: [REGISTER, INVITE, ACK, BYE, CANCEL, OPTIONS]
  transport:
    - {{ protocol: udp, port: {udp_port} }}
  rateLimit: {{ trusted: [127.0.0.1/32] }}
  health: {{ port: {health_port}, bindAddr: 127.0.0.1 }}
""")
    (directory / "dispatcher.yaml").write_text(f"""
apiVersion: v2beta1
kind: MessageDispatcher
ref: dispatcher
spec:
  bindAddr: {grpc_host}:{grpc_port}
  processors:
    - {{ ref: echo, addr: "serve://echo", methods: [REGISTER, INVITE, ACK, BYE, CANCEL, OPTIONS] }}
""")
    (directory / "location.yaml").write_text(f"""
apiVersion: v2beta1
kind: Location
ref: location
spec:
  bindAddr: {location_host}:{location_port}
  shards: 2
  cache: {{ provider: memory }}
""")
    return directory


def marked_processes(marker: str, session: int) -> list[str]:
    """``pid cmdline`` of every live process of ``session`` or whose environment carries ``MARKER=marker``
    (Ray's setproctitle may overwrite part of a process's environment: both ways)."""
    found = []
    needle = f"{MARKER}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] in ("Z", "X"):
                continue
            if int(fields[3]) != session and needle not in (entry / "environ").read_bytes():
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append(f"{entry.name} {cmdline[:120]}")
    return found


def one_line_failure(args: list[str], **extra_env: str) -> str:
    """Run the CLI, expect exit 1 with exactly one line on stderr (and nothing on stdout); return that line."""
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env(**extra_env))
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert result.stdout == ""
    assert lines[0].startswith("routr-ray: ")
    return lines[0]


@pytest.fixture
def ports() -> dict[str, int]:
    return {"health": free_port(), "location": free_port(), "grpc": free_port()}


def test_missing_config_dir_is_one_line(tmp_path: Path) -> None:
    line = one_line_failure(cli("run", "--no-dashboard", "--config", str(tmp_path / "nowhere")))
    assert f"config directory {tmp_path / 'nowhere'} not found" in line


def test_invalid_config_names_file_and_field(tmp_path: Path, ports: dict[str, int]) -> None:
    config = write_config(tmp_path / "config", [("ep1", free_udp_port())], health_port=ports["health"],
                          location_port=ports["location"], grpc_port=ports["grpc"])
    (config / "location.yaml").write_text("apiVersion: v2beta1\nkind: Location\nspec: {shards: zero}\n")
    line = one_line_failure(cli("run", "--no-dashboard"), ROUTR_RAY_CONFIG=str(config))  # the env lookup
    assert "location.yaml" in line and "/spec/shards" in line


def test_taken_udp_port_is_one_line(tmp_path: Path, ports: dict[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "config", [("ep1", port)], health_port=ports["health"],
                              location_port=ports["location"], grpc_port=ports["grpc"])
        started = time.monotonic()
        line = one_line_failure(cli("run", "--no-dashboard", "--config", str(config)))
    assert line == f"routr-ray: cannot listen on UDP 127.0.0.1:{port} (UDP of EdgePort ep1): address already in use"
    assert time.monotonic() - started < 20  # found before Ray starts


@pytest.mark.parametrize(("which", "variable"), [("dispatcher", "ROUTR_RAY_DISPATCHER_TOKEN"),
                                                 ("location", "ROUTR_RAY_LOCATION_TOKEN")])
def test_a_grpc_port_open_to_the_network_without_a_token_is_one_line(
        tmp_path: Path, ports: dict[str, int], which: str, variable: str) -> None:
    hosts = {"grpc_host": "0.0.0.0"} if which == "dispatcher" else {"location_host": "0.0.0.0"}
    config = write_config(tmp_path / "config", [("ep1", free_udp_port())], health_port=ports["health"],
                          location_port=ports["location"], grpc_port=ports["grpc"], **hosts)
    started = time.monotonic()
    line = one_line_failure(cli("run", "--no-dashboard", "--config", str(config)))
    assert "0.0.0.0" in line and "without a token" in line and variable in line
    assert time.monotonic() - started < 20  # refused before Ray starts


def test_unreachable_redis_is_one_line(tmp_path: Path, ports: dict[str, int]) -> None:
    config = write_config(tmp_path / "config", [("ep1", free_udp_port())], health_port=ports["health"],
                          location_port=ports["location"], grpc_port=ports["grpc"])
    closed = free_port()
    line = one_line_failure(cli("run", "--no-dashboard", "--config", str(config), "--redis",
                                f"redis://user:secret@127.0.0.1:{closed}/0"))
    assert "secret" not in line
    assert line.startswith(f"routr-ray: Redis is unreachable at redis://127.0.0.1:{closed}/0: ")


class Server:
    """`routr-ray run` in its own session; stdout is collected by a thread."""

    def __init__(self, config: Path, marker: str, log_dir: Path) -> None:
        self.marker = marker
        self.proc = subprocess.Popen(  # dashboard on: the most processes to stop
            cli("run", "--config", str(config), "--num-cpus", "4", "--log-dir", str(log_dir)),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
            env=env(**{MARKER: marker}))
        self.out: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()
        self.err: list[str] = []
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out.append(line.rstrip("\n"))
            if "Press Ctrl-C to stop." in line:
                self.ready.set()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.err.append(line.rstrip("\n"))

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while not self.ready.wait(0.5):
            assert self.proc.poll() is None, f"exited {self.proc.returncode}: {self.err[-5:]}"
            assert time.monotonic() < deadline, f"not ready in {READY_TIMEOUT}s: {self.err[-5:]}"

    def value(self, label: str) -> str:
        return next(line.split()[-1] for line in self.out if line.strip().startswith(label))

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        for line in marked_processes(self.marker, self.proc.pid):
            os.kill(int(line.split()[0]), signal.SIGKILL)


@pytest.fixture
def server(tmp_path: Path, ports: dict[str, int]) -> Iterator[tuple[Server, dict[str, int]]]:
    health = ports["health"]
    while True:  # the second EdgePort's health port is health + 1: it must be free too
        try:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", health + 1))
            break
        except OSError:
            health = free_port()
    ports = {**ports, "health": health, "udp_a": free_udp_port(), "udp_b": free_udp_port(),
             "udp_c": free_udp_port(), "health_c": free_port()}
    config = write_config(tmp_path / "config", [("ep-a", ports["udp_a"]), ("ep-b", ports["udp_b"])],
                          health_port=health, location_port=ports["location"], grpc_port=ports["grpc"])
    # what `routr-ray deploy` adds to the running cluster: a third EdgePort (same dispatcher and Location)
    write_config(tmp_path / "config-c", [("ep-c", ports["udp_c"])], health_port=ports["health_c"],
                 location_port=ports["location"], grpc_port=ports["grpc"])
    running = Server(config, uuid.uuid4().hex, tmp_path / "kept-logs")
    try:
        yield running, ports
    finally:
        running.kill()


def grpc_options(port: int) -> int:
    """An OPTIONS through the dispatcher's gRPC port: its SIP status."""
    import grpc

    from routr_ray.proto.convert import make_message_request, read_message_response
    from routr_ray.proto.gen import processor_pb2_grpc
    from routr_ray.sip import parse

    raw = (b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5999;branch=z9hG4bK-grpc\r\n"
           b"Max-Forwards: 70\r\nFrom: <sip:probe@127.0.0.1>;tag=g\r\nTo: <sip:127.0.0.1>\r\n"
           b"Call-ID: cli-run-grpc@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
    request = make_message_request(parse(raw), edge_port_ref="probe", sender=("127.0.0.1", 5999, "UDP"))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = processor_pb2_grpc.ProcessorStub(channel).ProcessMessage(request, timeout=30)
    return read_message_response(reply).status


def sip_options(port: int, n: int) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        local = sock.getsockname()[1]
        sock.sendto((
            "OPTIONS sip:127.0.0.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK-cli{n};rport\r\n"
            "Max-Forwards: 70\r\n"
            "From: <sip:probe@127.0.0.1>;tag=cli\r\n"
            "To: <sip:127.0.0.1>\r\n"
            f"Call-ID: cli-run-{n}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", port))
        return sock.recv(65536)


def test_run_deploy_status_locate_then_sigterm_leaves_nothing(
        server: tuple[Server, dict[str, int]], tmp_path: Path) -> None:
    running, ports = server
    running.wait_ready()
    address = running.value("Ray address")
    logs_line = next(line for line in running.out if line.strip().startswith("Logs"))
    session_logs = Path(logs_line.split()[1])
    temp_dir = session_logs.parents[1]
    assert temp_dir.name.startswith("routr-ray-") and session_logs.is_dir()

    deployed = subprocess.run(cli("deploy", "--address", address, str(tmp_path / "config-c")), capture_output=True,
                              text=True, timeout=120, env=env())
    assert deployed.returncode == 0, deployed.stderr
    assert f"EdgePort ep-c         UDP  127.0.0.1:{ports['udp_c']}" in deployed.stdout
    # the same dispatcher.yaml and code: the deploy keeps the replicas run started (no new deployment version, no
    # rolling restart for nothing; issue 18: a deploy used to add a runtime_env the run's replicas lacked)
    controller = "\n".join(p.read_text(errors="replace") for p in session_logs.glob("serve/controller_*.log"))
    for name in ("dispatcher", "processor-echo"):
        assert controller.count(f"Deploying new version of Deployment(name='{name}'") == 1, controller[-3000:]

    for n, port in enumerate((ports["udp_a"], ports["udp_b"], ports["udp_c"])):
        assert sip_options(port, n).startswith(b"SIP/2.0 200 ")
    assert grpc_options(ports["grpc"]) == 200  # the dispatcher's gRPC port, ours, on exactly 127.0.0.1
    with urllib.request.urlopen(f"http://127.0.0.1:{ports['health'] + 1}/healthz", timeout=10) as response:
        assert response.status == 200

    status = subprocess.run(cli("status", "--address", address, "--json"), capture_output=True, text=True,
                            timeout=120, env=env())
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["healthy"] is True
    edges = {e["name"]: e for e in report["edgeports"]}
    assert set(edges) == {"edgeport-ep-a", "edgeport-ep-b", "edgeport-ep-c"}
    assert {e["health_port"] for e in edges.values()} == {ports["health"], ports["health"] + 1, ports["health_c"]}
    assert ["udp", "127.0.0.1", ports["udp_b"]] in edges["edgeport-ep-b"]["listeners"]
    assert report["applications"] == {"routr": "RUNNING"}
    deployments = {d["name"]: d for d in report["deployments"]}
    assert set(deployments) == {"dispatcher", "processor-echo"}
    assert all(d["replicas"].get("RUNNING") == 1 for d in deployments.values())
    assert [s["name"] for s in report["shards"]] == ["location-shard-0", "location-shard-1"]
    assert all(s["healthy"] and s["bindings"] == 0 for s in report["shards"])
    assert report["location_api"] == {"healthy": True, "port": ports["location"], "error": None}

    locate = subprocess.run(cli("locate", "sip:nobody@sip.local", "--location", f"127.0.0.1:{ports['location']}"),
                            capture_output=True, text=True, timeout=30, env=env())
    assert (locate.returncode, locate.stdout.strip()) == (3, "sip:nobody@sip.local: no routes")

    assert marked_processes(running.marker, running.proc.pid), "the marker must find the running processes"
    running.proc.send_signal(signal.SIGTERM)
    stopping = time.monotonic()
    assert running.proc.wait(timeout=15) == 0
    assert time.monotonic() - stopping <= 15
    assert "routr-ray: stopping" in running.out
    assert marked_processes(running.marker, running.proc.pid) == []
    # issue 13 item 6: the run's temporary directory is gone; the logs asked for are kept in --log-dir
    assert not temp_dir.exists()
    kept = tmp_path / "kept-logs"
    assert (kept / "routr-ray.log").is_file()
    assert (kept / session_logs.parent.name / "raylet.out").is_file()
    assert any((kept / session_logs.parent.name).glob("worker-*")), "every actor's output is kept"


def test_status_of_an_unreachable_cluster_is_one_line() -> None:
    closed = free_port()
    line = one_line_failure(cli("status", "--address", f"127.0.0.1:{closed}"))
    assert line == f"routr-ray: cannot connect to the Ray cluster (127.0.0.1:{closed}) at 127.0.0.1:{closed}: " \
                   "Connection refused"
