"""The servers under test, each a subprocess tree this benchmark starts and stops: routr-ray, Kamailio, Redis."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from sipbench import procs
from sipbench.profile import role_of

BENCH_DIR = Path(__file__).resolve().parent.parent
KAMAILIO_CFG = BENCH_DIR / "kamailio" / "kamailio.cfg"


def sip_ping(port: int, timeout: float = 1.0) -> str | None:
    """One UDP OPTIONS to 127.0.0.1:`port`; the status line of any answer, or None."""
    branch = f"z9hG4bK-bench-{random.getrandbits(32):08x}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        local = sock.getsockname()[1]
        message = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
            f"From: <sip:ping@127.0.0.1>;tag={branch[-8:]}\r\nTo: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: {branch}@bench\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        sock.sendto(message.encode(), ("127.0.0.1", port))
        try:
            data, _ = sock.recvfrom(65535)
        except OSError:
            return None
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


class ServerProcess:
    """A server subprocess tree: CPU and memory of the whole tree, and a stop that leaves nothing behind."""

    name = "server"

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._seen: dict[int, procs.ProcId] = {}

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        pids = procs.tree_pids(self.pid)
        for proc in procs.proc_ids(pids):
            self._seen.setdefault(proc.pid, proc)
        return pids

    def cpu_seconds(self) -> float:
        return procs.cpu_seconds(self.pids())

    def memory_kib(self) -> tuple[int, int]:
        return procs.memory_kib(self.pids())

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 30.0) -> None:
        """SIGTERM to the main process (it stops what it started), then SIGKILL to every process of its tree
        ever seen (by pid and start time, so a recycled pid is spared)."""
        if self.proc is None:
            return
        self.pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        leftovers = procs.wait_gone(list(self._seen.values()), 2.0)
        if leftovers:
            procs.kill_ids(leftovers)
            procs.wait_gone(leftovers, 5.0)
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def wait_ready(self, port: int, timeout: float, marker: str | None = None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited during start; see {self.log_path}")
            if marker is None or marker in self.log_path.read_text(errors="replace"):
                if sip_ping(port, 0.5) is not None:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"{self.name} not ready on UDP {port} after {timeout:.0f}s; see {self.log_path}")


class RoutrServer(ServerProcess):
    name = "routr-ray"

    def __init__(self, workdir: Path, config: Path, port: int, redis_url: str | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        super().__init__(workdir / "routr-ray.log")
        self.config = config
        self.port = port
        self.redis_url = redis_url
        self.extra_args = extra_args

    def start(self, timeout: float = 240.0) -> None:
        command = shutil.which("routr-ray")
        args = [command] if command else ["python", "-m", "routr_ray.cli"]
        args += ["run", "--config", str(self.config), "--no-dashboard"]
        if self.redis_url:
            args += ["--redis", self.redis_url]
        args += list(self.extra_args)
        env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
        self._spawn(args, env)
        self.wait_ready(self.port, timeout, marker="routr-ray is ready")

    def ray_processes(self) -> dict[str, list[int]]:
        """The tree's worker processes by role (EdgePort, dispatcher, Connect, Location...) for profiling."""
        roles: dict[str, list[int]] = {}
        for pid in self.pids():
            cmd = procs.command_line(pid)
            if cmd.startswith("ray::") and not cmd.startswith("ray::IDLE"):
                roles.setdefault(role_of(cmd), []).append(pid)
        return roles


class KamailioServer(ServerProcess):
    """Debian's kamailio (``apt-get install kamailio``) with benchmarks/kamailio/kamailio.cfg (perf.md §9)."""

    name = "kamailio"

    def __init__(self, workdir: Path, port: int, children: int = 2) -> None:
        self.workdir = workdir / "kamailio"
        self.workdir.mkdir(parents=True, exist_ok=True)
        super().__init__(self.workdir / "kamailio.log")
        self.port = port
        self.children = children

    def start(self, timeout: float = 30.0) -> None:
        binary = shutil.which("kamailio") or "/usr/sbin/kamailio"
        if not Path(binary).exists():
            raise RuntimeError("--vs-kamailio needs Debian's kamailio: apt-get install -y kamailio")
        text = KAMAILIO_CFG.read_text().replace("<workdir>", str(self.workdir))
        text = text.replace("127.0.0.1:5060", f"127.0.0.1:{self.port}")
        cfg = self.workdir / "kamailio.cfg"
        cfg.write_text(text)
        self._spawn([binary, "-f", str(cfg), "-DD", "-E", "-m", "1024", "-M", "32", "-u", "root", "-g", "root",
                     "-A", f"CHILDREN={self.children}", "-A", "WITH_AUTH"])
        self.wait_ready(self.port, timeout)


class RedisProcess(ServerProcess):
    name = "redis-server"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir / "redis.log")
        self.port = procs.free_port(socket.SOCK_STREAM)
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("--redis needs Debian's redis-server: apt-get install -y redis-server")
        self._spawn([binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                     "--dir", str(self.dir)])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(64).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not start on {self.port}")

    def dbsize(self) -> int | None:
        """How many keys database 0 holds (the Location's bindings), or None if it does not answer."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
                conn.sendall(b"SELECT 0\r\nDBSIZE\r\n")
                data = b""
                while data.count(b"\r\n") < 2:
                    chunk = conn.recv(256)
                    if not chunk:
                        return None
                    data += chunk
        except OSError:
            return None
        reply = data.split(b"\r\n")[1]
        return int(reply[1:]) if reply.startswith(b":") else None
