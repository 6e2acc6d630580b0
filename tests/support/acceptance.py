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

ACCEPTANCE = Path(__file__).resolve().parents[1] / "acceptance"
ATTACK = Path(__file__).resolve().parents[1] / "attack"
CONFIG_DIR = ACCEPTANCE / "config"
PROXY_HOST = "127.0.0.1"
PROXY_PORT = 15060
# SIPp binds its media sockets at -mp and a few ports above it. Ports handed out by the kernel (free_port) are
# ephemeral and a concurrent SIPp may take one of the neighbours, so media ports come from below Linux's
# ephemeral range (32768-60999), 10 apart per SIPp of a test.
MEDIA_PORT_BASE = 20000
READY_TIMEOUT = 180.0  # Ray + Serve start in 15-90 s on a loaded 2-core box
STOP_TIMEOUT = 20.0

# Test credentials (tests/acceptance/config/resources/credentials.yaml)
PASSWORDS = {"1001": "secret1001", "1002": "secret1002", "1003": "secret1003", "mediaserver": "peersecret",
             "1010": "secret1010", "1004": "secret1004", "1005": "secret1005"}
# Fixed source ports for REGISTER and fixed Contact ports (where each AOR's SIPp UAS listens), one per AOR, so
# a re-registration replaces its binding instead of adding one (Location matches bindings by Contact URI).
REGISTER_PORTS = {"1001": 15071, "1002": 15072, "1003": 15073, "mediaserver": 15074, "1010": 15075}
CONTACT_PORTS = {"1001": 15081, "1002": 15082, "1003": 15083, "mediaserver": 15084, "1010": 15085,
                 "1004": 15086, "1005": 15087}  # 1004: tcp_tls_register, 1005: sipsak (config/resources/agents-extra.yaml)
TRUNK_UAS_PORT = 15080  # trunk-01's outbound URI
PROXY_TLS_PORT = 15061
# Development only: ROUTR_ACCEPTANCE_ATTACH=<config dir of a `routr-ray run` already started from a copy of
# tests/acceptance/config, inside the same network namespace> runs the scenarios against it (no 15-90 s start).
ATTACH_ENV = "ROUTR_ACCEPTANCE_ATTACH"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parents = Path(str(item.fspath)).parents
        if ACCEPTANCE in parents or ATTACK in parents:
            item.add_marker(pytest.mark.acceptance)
            item.add_marker(pytest.mark.timeout(READY_TIMEOUT + 30))  # the first one also starts the server


@dataclass
class Server:
    process: subprocess.Popen[bytes] | None  # None when attached to a running server (ATTACH_ENV)
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
    attached = os.environ.get(ATTACH_ENV)
    if attached:
        yield Server(None, Path(attached).parent / "log", Path(attached))
        return
    work = tmp_path_factory.mktemp("routr-server")
    config_dir = work / "config"
    shutil.copytree(CONFIG_DIR, config_dir)
    log_path = work / "routr-ray.log"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "routr_ray.cli", "run", "--config", str(config_dir), "--no-dashboard",
             "--state-dir", str(work / "state")],  # its nonce/dialog key, not in the user's ~/.local/state
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
        transport: str = "u1", remote: tuple[str, int] = (PROXY_HOST, PROXY_PORT),
    ) -> SippProcess:
        """`transport` is SIPp's -t (u1 UDP, t1 TCP); `remote` where a UAC sends (e.g. a TLS bridge)."""
        self.count += 1
        name = f"{self.count:02d}-{Path(scenario).stem}"
        work = self.work / name
        work.mkdir()
        args = [
            "sipp", "-sf", str(ACCEPTANCE / scenario), "-t", transport, "-i", PROXY_HOST, "-p", str(port or free_port()),
            "-mp", str(MEDIA_PORT_BASE + (self.count % 900) * 10), "-m", "1", "-nostdin", "-timeout", f"{timeout_s}s", "-timeout_error",
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
            args.append(f"{remote[0]}:{remote[1]}")
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


# ---- sipsak -------------------------------------------------------------------------------------------------


@dataclass
class SipsakResult:
    args: list[str]
    returncode: int  # 0 ok; 1 a non-2xx final answer (or a failed check); 2 local error or nothing received
    output: str  # stdout and stderr (with -vvv: every request sent and reply received)

    def report(self) -> str:
        return f"--- sipsak {' '.join(self.args)}: exit {self.returncode}\n{self.output.strip()}\n"


class Sipsak:
    """Runs Debian's `sipsak` against the proxy. `-p 127.0.0.1:<port>` (the outbound proxy) must come before
    `-s`, and the target URI carries no port: sipsak 0.9.8 cuts a five-digit port in a URI to four digits.

    Over TLS sipsak is held to TLS 1.2 (a GnuTLS priority file): sipsak 0.9.8.1 takes the TLS 1.3
    NewSessionTicket record a server sends after the handshake for the answer, fails to read it and gives up
    ("nothing received, select returned error") before the real answer arrives."""

    def __init__(self, work: Path) -> None:
        self.gnutls_priority = work / "gnutls-tls12.conf"
        self.gnutls_priority.write_text("[overrides]\ndisabled-version = tls1.3\n")

    def run(self, *args: str, transport: str = "udp", timeout: float = 15.0) -> SipsakResult:
        if shutil.which("sipsak") is None:
            pytest.fail("sipsak not found: apt-get install -y sipsak")
        port = PROXY_TLS_PORT if transport == "tls" else PROXY_PORT
        argv = ["sipsak", "-vvv", "-E", transport, "-p", f"{PROXY_HOST}:{port}", "-H", PROXY_HOST, *args]
        if transport == "tls":
            argv.insert(1, "--tls-ignore-cert-failure")  # the server's self-signed development certificate
        env = {**os.environ, "GNUTLS_SYSTEM_PRIORITY_FILE": str(self.gnutls_priority)}
        completed = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                                   stdin=subprocess.DEVNULL, env=env)
        return SipsakResult(argv[1:], completed.returncode, completed.stdout + completed.stderr)

    def register(self, user: str, password: str, contact: str, expires: int, transport: str = "udp") -> SipsakResult:
        """REGISTER `contact` for sip:<user>@sip.local with digest (usrloc mode, -U); `expires` 0 removes it."""
        return self.run("-U", "-i", "-C", contact, "-x", str(expires), "-u", user, "-a", password,
                        "-s", f"sip:{user}@sip.local", transport=transport)

    def bindings(self, user: str, password: str, transport: str = "udp") -> SipsakResult:
        """REGISTER without Contact: the 200 lists the current bindings of the AOR (RFC 3261 §10.2.3)."""
        return self.run("-U", "-i", "-C", "empty", "-u", user, "-a", password, "-s", f"sip:{user}@sip.local",
                        transport=transport)


@pytest.fixture
def sipsak(routr_server: Server, tmp_path: Path) -> Sipsak:
    return Sipsak(tmp_path)
