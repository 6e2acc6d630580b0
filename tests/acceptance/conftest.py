"""Acceptance harness: the real server (`routr-ray run`) driven by real SIP clients (SIPp, Debian `sip-tester`).

One server per session, started from a copy of `tests/acceptance/config` (so a scenario may edit its resources;
SIP on 127.0.0.1:15060-15063, health 18080,
dispatcher gRPC 51911, Location API 51912: no clash with the other tests), stopped with SIGTERM at the end
(it must exit within 20 s). The suite must run inside `scripts/in-netns` (Ray binds every interface).

Every scenario folder holds its SIPp XML; `sipp` runs one SIPp process per call leg over UDP on 127.0.0.1 with
`-trace_msg`, so a failure shows the SIP messages each side saw.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.redis_server import free_port

ACCEPTANCE = Path(__file__).resolve().parent
CONFIG_DIR = ACCEPTANCE / "config"
PROXY_HOST = "127.0.0.1"
PROXY_PORT = 15060
READY_TIMEOUT = 180.0  # Ray + Serve start in 15-90 s on a loaded 2-core box
STOP_TIMEOUT = 20.0

# Test credentials (tests/acceptance/config/resources/credentials.yaml)
PASSWORDS = {"1001": "secret1001", "1002": "secret1002", "1003": "secret1003", "mediaserver": "peersecret",
             "1010": "secret1010"}
# Fixed source ports for REGISTER and fixed Contact ports (where each AOR's SIPp UAS listens), one per AOR, so
# a re-registration replaces its binding instead of adding one (Location matches bindings by Contact URI).
REGISTER_PORTS = {"1001": 15071, "1002": 15072, "1003": 15073, "mediaserver": 15074, "1010": 15075}
CONTACT_PORTS = {"1001": 15081, "1002": 15082, "1003": 15083, "mediaserver": 15084, "1010": 15085}
TRUNK_UAS_PORT = 15080  # trunk-01's outbound URI


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if ACCEPTANCE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.acceptance)
            item.add_marker(pytest.mark.timeout(READY_TIMEOUT + 30))  # the first one also starts the server


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    log_path: Path
    config_dir: Path  # the server's own copy of tests/acceptance/config

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="session")
def routr_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.environ.get("ROUTR_RAY_IN_NETNS") != "1":
        pytest.fail("the acceptance suite starts Ray, which binds every interface: run it inside scripts/in-netns")
    if shutil.which("sipp") is None:
        pytest.fail("sipp not found: apt-get install -y sip-tester")
    work = tmp_path_factory.mktemp("routr-server")
    config_dir = work / "config"
    shutil.copytree(CONFIG_DIR, config_dir)
    log_path = work / "routr-ray.log"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "routr_ray.cli", "run", "--config", str(config_dir), "--no-dashboard"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    server = Server(process, log_path, config_dir)
    deadline = time.monotonic() + READY_TIMEOUT
    while "ready in" not in log_path.read_text(errors="replace"):
        if process.poll() is not None:
            pytest.fail(f"routr-ray run exited with {process.returncode} before it was ready:\n{server.log_tail()}")
        if time.monotonic() > deadline:
            _kill_group(process)
            pytest.fail(f"routr-ray run not ready within {READY_TIMEOUT:.0f}s:\n{server.log_tail()}")
        time.sleep(0.2)
    try:
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            pytest.fail(f"routr-ray run did not exit within {STOP_TIMEOUT:.0f}s of SIGTERM:\n{server.log_tail()}")
        if process.returncode != 0:
            pytest.fail(f"routr-ray run exited with {process.returncode} after SIGTERM:\n{server.log_tail()}")


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """Kill the server and everything it started (it runs in its own session: its group id is its pid)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


# ---- SIPp ---------------------------------------------------------------------------------------------------


@dataclass
class SippResult:
    name: str
    returncode: int
    messages: str
    errors: str
    screen: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def received(self, start: str) -> list[str]:
        """The SIP messages this SIPp received whose first line starts with `start` (e.g. "INVITE", "SIP/2.0 200")."""
        blocks = re.split(r"^-{10,}.*$", self.messages, flags=re.MULTILINE)
        found = []
        for block in blocks:
            head, _, body = block.partition("\n\n")
            if "message received" in head:
                message = body.strip("\n")
                if message.startswith(start):
                    found.append(message)
        return found

    def report(self) -> str:
        return (f"--- {self.name}: sipp exit {self.returncode}\n--- errors:\n{self.errors.strip()}\n"
                f"--- messages:\n{self.messages.strip()}\n")


class SippProcess:
    def __init__(self, name: str, process: subprocess.Popen[bytes], work: Path) -> None:
        self.name, self.process, self.work = name, process, work

    def result(self, timeout: float = 15.0) -> SippResult:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        return SippResult(
            self.name,
            self.process.returncode,
            _read(self.work / "messages.log"),
            _read(self.work / "errors.log"),
            _read(self.work / "screen.log"),
        )


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


class Sipp:
    """Runs SIPp scenarios of `tests/acceptance/<folder>/` against the proxy over UDP on 127.0.0.1."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.count = 0

    def start(
        self, scenario: str, *, port: int | None = None, server: bool = False, keys: dict[str, str] | None = None,
        service: str | None = None, auth: tuple[str, str] | None = None, timeout_s: int = 12,
    ) -> SippProcess:
        self.count += 1
        name = f"{self.count:02d}-{Path(scenario).stem}"
        work = self.work / name
        work.mkdir()
        args = [
            "sipp", "-sf", str(ACCEPTANCE / scenario), "-t", "u1", "-i", PROXY_HOST, "-p", str(port or free_port()),
            "-mp", str(free_port()), "-m", "1", "-nostdin", "-timeout", f"{timeout_s}s", "-timeout_error",
            "-trace_msg", "-message_file", str(work / "messages.log"),
            "-trace_err", "-error_file", str(work / "errors.log"),
        ]
        for key, value in (keys or {}).items():
            args += ["-key", key, value]
        if service is not None:
            args += ["-s", service]
        if auth is not None:
            args += ["-au", auth[0], "-ap", auth[1]]
        if not server:
            args.append(f"{PROXY_HOST}:{PROXY_PORT}")
        with (work / "screen.log").open("wb") as screen:
            process = subprocess.Popen(args, stdout=screen, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       cwd=work)
        return SippProcess(name, process, work)

    def run(self, scenario: str, **kwargs: object) -> SippResult:
        return self.start(scenario, **kwargs).result()  # type: ignore[arg-type]

    def uas(self, scenario: str, port: int, **kwargs: object) -> SippProcess:
        """A SIPp UAS listening on `port`, given a moment to bind before the caller starts."""
        process = self.start(scenario, port=port, server=True, **kwargs)  # type: ignore[arg-type]
        time.sleep(0.3)
        if process.process.poll() is not None:
            raise AssertionError(process.result().report())
        return process

    def register(self, user: str, password: str | None = None) -> SippResult:
        """REGISTER `user`@sip.local with digest, Contact at 127.0.0.1:CONTACT_PORTS[user] (where its UAS listens)."""
        return self.run("register/register.xml", port=REGISTER_PORTS[user],
                        keys={"aor_user": user, "contact_port": str(CONTACT_PORTS[user])},
                        auth=(user, password or PASSWORDS[user]))


    @staticmethod
    def assert_ok(*results: SippResult) -> None:
        """Every SIPp process completed its call; else the SIP trace of every side."""
        failed = [r for r in results if not r.ok]
        assert not failed, "\n".join(r.report() for r in results)


@pytest.fixture
def sipp(routr_server: Server, tmp_path: Path) -> Sipp:
    return Sipp(tmp_path)
