"""Acceptance harness: the real server (`routr-ray run`) driven by real SIP clients (SIPp, Debian `sip-tester`).

Two servers per session, each started on first use and stopped with SIGTERM at the end (it must exit within 20 s):

* `routr_server`: **`config/` as shipped** (issue 13: the suite tests what users run), copied with only its ports
  rewritten (:data:`SHIPPED_PORTS`, checked by tests/unit/test_acceptance_config.py: the rewrite changes nothing
  else) so that it never clashes with the other tests: SIP 25060-25063, health 28080, dispatcher gRPC 25901,
  Location API 25902; the example trunk's provider listens on 25080. The main scenarios run here.
* `extras_server`: the shipped config with the files of `tests/acceptance/config` laid over it (each says why:
  a processor that is down, an agent that never registers, TEST-NET phones on a LAN behind a NAT-ed server), on
  15060-15063 (health 18080, dispatcher 51911, Location 51912, trunk provider 15080).
* `media_server`: the shipped config with the rtpengine middleware on (`tests/acceptance/media/config`), on
  16060-16063 (health 18090, dispatcher 51921, Location 51922, trunk provider 16080), with two RTPEngines
  (Debian's rtpengine-daemon) started first on 127.0.0.1: ng 22301 and 22302 (`media_rtpengines`).

The suite must run inside `scripts/in-netns` (Ray binds every interface). Every scenario folder holds its SIPp
XML; `sipp` runs one SIPp process per call leg over UDP with `-trace_msg`, so a failure shows the SIP messages
each side saw.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.support.redis_server import free_port
from tests.support.rtpengine import RTPENGINE, RtpEngineServer

REPO = Path(__file__).resolve().parents[2]
ACCEPTANCE = REPO / "tests" / "acceptance"
ATTACK = REPO / "tests" / "attack"
SHIPPED_CONFIG_DIR = REPO / "config"
CONFIG_DIR = ACCEPTANCE / "config"  # the extras server's overlay on the shipped config
PROXY_HOST = "127.0.0.1"
# SIPp binds its media sockets at -mp and a few ports above it. Ports handed out by the kernel (free_port) are
# ephemeral and a concurrent SIPp may take one of the neighbours, so media ports come from below Linux's
# ephemeral range (32768-60999), 10 apart per SIPp of a test.
MEDIA_PORT_BASE = 20000
READY_TIMEOUT = 180.0  # Ray + Serve start in 15-90 s on a loaded 2-core box
STOP_TIMEOUT = 20.0

# The shipped config's ports -> the ones the acceptance copy uses (SIP, health, dispatcher, Location, trunk, Ray's
# metrics export).
SHIPPED_PORTS = {5060: 25060, 5061: 25061, 5062: 25062, 5063: 25063, 8080: 28080, 51901: 25901, 51902: 25902,
                 5080: 25080, 9464: 29464}


@dataclass(frozen=True)
class Profile:
    """One server under test: where its config comes from, how its ports are rewritten, how to reach it."""

    name: str
    source: Path
    ports: Mapping[int, int]
    sip_port: int
    tls_port: int
    ws_port: int
    wss_port: int
    trunk_port: int  # trunk-01's outbound URI: where a SIPp UAS plays the provider
    passwords: Mapping[str, str] = field(default_factory=dict)
    host: str = PROXY_HOST
    overlay: Path | None = None  # files that replace (same name) or join those of `source`, before the rewrite
    env: Mapping[str, str] = field(default_factory=dict)  # more environment for `routr-ray run`


EXTRAS_PORTS = {5060: 15060, 5061: 15061, 5062: 15062, 5063: 15063, 8080: 18080, 51901: 51911, 51902: 51912,
                5080: 15080, 9464: 19464, 6060: 17060, 6062: 17062}  # 6060/6062: its second EdgePort (config/edgeport2.yaml)
SHIPPED = Profile("shipped", SHIPPED_CONFIG_DIR, SHIPPED_PORTS, 25060, 25061, 25062, 25063, 25080,
                  {"1001": "1234", "1002": "1234", "asterisk": "1234"})
EXTRAS = Profile("extras", SHIPPED_CONFIG_DIR, EXTRAS_PORTS, 15060, 15061, 15062, 15063, 15080,
                 {"1001": "1234", "1002": "1234", "1003": "secret1003", "asterisk": "1234"}, overlay=CONFIG_DIR)

MEDIA_CONFIG_DIR = ACCEPTANCE / "media" / "config"  # the media server's overlay
MEDIA_PORTS = {5060: 16060, 5061: 16061, 5062: 16062, 5063: 16063, 8080: 18090, 9464: 18464, 51901: 51921, 51902: 51922,
               5080: 16080}
MEDIA = Profile("media", SHIPPED_CONFIG_DIR, MEDIA_PORTS, 16060, 16061, 16062, 16063, 16080,
                {"1001": "1234", "1002": "1234", "asterisk": "1234"}, overlay=MEDIA_CONFIG_DIR)
# (ng port, media port range) of the media server's RTPEngines, as tests/acceptance/media/config/media.yaml names
# them. Media ports below Linux's ephemeral range and above the SIPp media ports (20000-29000).
MEDIA_RTPENGINES = ((22301, 31000, 31499), (22302, 31500, 31999))

# The main scenarios' server (config/ as shipped)
PROXY_PORT = SHIPPED.sip_port
PROXY_TLS_PORT = SHIPPED.tls_port
TRUNK_UAS_PORT = SHIPPED.trunk_port
PASSWORDS = SHIPPED.passwords
# Fixed source ports for REGISTER and fixed Contact ports (where each AOR's SIPp UAS listens), one per AOR, so
# a re-registration replaces its binding instead of adding one (Location matches bindings by Contact URI).
REGISTER_PORTS = {"1001": 15071, "1002": 15072, "1003": 15073, "mediaserver": 15074, "1010": 15075,
                  "asterisk": 15076}
CONTACT_PORTS = {"1001": 15081, "1002": 15082, "1003": 15083, "mediaserver": 15084, "1010": 15085,
                 "asterisk": 15086, "tcp-1001": 15087, "sipsak-1002": 15088}
# Development only: ROUTR_ACCEPTANCE_ATTACH=<config dir of a `routr-ray run` already started from a copy of
# config/ with SHIPPED_PORTS, inside the same network namespace> runs the scenarios against it (no 15-90 s start).
ATTACH_ENV = "ROUTR_ACCEPTANCE_ATTACH"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parents = Path(str(item.fspath)).parents
        if ACCEPTANCE in parents or ATTACK in parents:
            item.add_marker(pytest.mark.acceptance)
            item.add_marker(pytest.mark.timeout(READY_TIMEOUT + 30))  # the first one also starts the server


# ---- config copies --------------------------------------------------------------------------------------------


def rewrite_ports(node: object, ports: Mapping[int, int]) -> object:
    """A YAML document with every ``port: N`` and every ``bindAddr: host:N`` whose N is in ``ports`` moved."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "port" and isinstance(value, int) and value in ports:
                value = ports[value]
            elif key == "bindAddr" and isinstance(value, str) and ":" in value:
                host, _, port = value.rpartition(":")
                if port.isdigit() and int(port) in ports:
                    value = f"{host}:{ports[int(port)]}"
            else:
                value = rewrite_ports(value, ports)
            out[key] = value
        return out
    if isinstance(node, list):
        return [rewrite_ports(item, ports) for item in node]
    return node


def copy_config(profile: Profile, destination: Path) -> Path:
    """The profile's config directory copied to ``destination`` with its overlay, ports rewritten (YAML files)."""
    shutil.copytree(profile.source, destination)
    if profile.overlay is not None:
        shutil.copytree(profile.overlay, destination, dirs_exist_ok=True)
    if profile.ports:
        for path in sorted(destination.rglob("*.yaml")):
            documents = list(yaml.safe_load_all(path.read_text()))
            rewritten = [rewrite_ports(document, profile.ports) for document in documents]
            path.write_text(yaml.safe_dump_all(rewritten, sort_keys=False))
    return destination


# ---- servers --------------------------------------------------------------------------------------------------


@dataclass
class Server:
    process: subprocess.Popen[bytes] | None  # None when attached to a running server (ATTACH_ENV)
    log_path: Path
    config_dir: Path  # the server's own copy of its config
    profile: Profile = SHIPPED

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def _serve(profile: Profile, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if os.environ.get("ROUTR_RAY_IN_NETNS") != "1":
        pytest.fail("the acceptance suite starts Ray, which binds every interface: run it inside scripts/in-netns")
    if shutil.which("sipp") is None:
        pytest.fail("sipp not found: apt-get install -y sip-tester")
    attached = os.environ.get(ATTACH_ENV)
    if attached and profile is SHIPPED:
        yield Server(None, Path(attached).parent / "log", Path(attached), profile)
        return
    work = tmp_path_factory.mktemp(f"routr-{profile.name}")
    config_dir = copy_config(profile, work / "config")
    log_path = work / "routr-ray.log"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
           **profile.env}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "routr_ray.cli", "run", "--config", str(config_dir), "--no-dashboard",
             "--state-dir", str(work / "state")],  # its nonce/dialog key, not in the user's ~/.local/state
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    server = Server(process, log_path, config_dir, profile)
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


@pytest.fixture(scope="session")
def routr_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """config/ as shipped (ports rewritten)."""
    yield from _serve(SHIPPED, tmp_path_factory)


@pytest.fixture(scope="session")
def extras_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """tests/acceptance/config: the shipped config plus what a few scenarios need."""
    yield from _serve(EXTRAS, tmp_path_factory)


@pytest.fixture(scope="session")
def media_rtpengines() -> Iterator[list[RtpEngineServer]]:
    """The media server's RTPEngines (userspace forwarding, loopback), running before the server starts."""
    if RTPENGINE is None:
        pytest.fail("rtpengine not found: scripts/install-test-deps installs Debian's rtpengine-daemon")
    servers = [RtpEngineServer(ng, low, high) for ng, low, high in MEDIA_RTPENGINES]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.cleanup()


@pytest.fixture(scope="session")
def media_server(media_rtpengines: list[RtpEngineServer], tmp_path_factory: pytest.TempPathFactory
                 ) -> Iterator[Server]:
    """tests/acceptance/media/config: the shipped config with the rtpengine middleware on."""
    yield from _serve(MEDIA, tmp_path_factory)


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
    """Runs SIPp scenarios of `tests/acceptance/<folder>/` against one server (its profile) over UDP."""

    def __init__(self, work: Path, profile: Profile = SHIPPED) -> None:
        self.work = work
        self.profile = profile
        self.count = 0

    @property
    def proxy(self) -> tuple[str, int]:
        return (self.profile.host, self.profile.sip_port)

    def start(
        self, scenario: str, *, port: int | None = None, server: bool = False, keys: dict[str, str] | None = None,
        service: str | None = None, auth: tuple[str, str] | None = None, timeout_s: int = 12,
        transport: str = "u1", remote: tuple[str, int] | None = None, local_ip: str = PROXY_HOST,
        calls: int = 1, extra: tuple[str, ...] = (),
    ) -> SippProcess:
        """`transport` is SIPp's -t (u1 UDP, t1 TCP); `remote` where a UAC sends (default: the server; e.g. a TLS
        bridge); `local_ip` SIPp's -i (its sockets and `[local_ip]`); `calls` SIPp's -m; `extra` more SIPp
        arguments (e.g. -r/-l for a UAC placing many calls, -rtp_echo)."""
        self.count += 1
        name = f"{self.count:02d}-{Path(scenario).stem}"
        work = self.work / name
        work.mkdir()
        args = [
            "sipp", "-sf", str(ACCEPTANCE / scenario), "-t", transport, "-i", local_ip, "-p", str(port or free_port()),
            "-mp", str(MEDIA_PORT_BASE + (self.count % 900) * 10), "-m", str(calls), "-nostdin", "-timeout", f"{timeout_s}s", "-timeout_error",
            "-trace_msg", "-message_file", str(work / "messages.log"),
            "-trace_err", "-error_file", str(work / "errors.log"),
        ]
        for key, value in (keys or {}).items():
            args += ["-key", key, value]
        args += list(extra)
        if service is not None:
            args += ["-s", service]
        if auth is not None:
            args += ["-au", auth[0], "-ap", auth[1]]
        if not server:
            host, remote_port = remote or self.proxy
            args.append(f"{host}:{remote_port}")
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

    def password(self, user: str) -> str:
        return self.profile.passwords[user]

    def register(self, user: str, password: str | None = None, *, local_ip: str = PROXY_HOST,
                 remote: tuple[str, int] | None = None, contact_transport: str | None = None,
                 contact_port: int | None = None, q: float | None = None) -> SippResult:
        """REGISTER `user`@sip.local with digest, Contact at local_ip:CONTACT_PORTS[user] (where its UAS listens;
        another `contact_port` for one more binding; with `;transport=` / `;q=` when given)."""
        params = f";transport={contact_transport}" if contact_transport else ""
        return self.run("register/register.xml", port=REGISTER_PORTS[user],
                        keys={"aor_user": user, "contact_port": str(contact_port or CONTACT_PORTS[user]),
                              "contact_params": params, "contact_q": "" if q is None else f";q={q}"},
                        auth=(user, password or self.password(user)), local_ip=local_ip, remote=remote)

    def unregister(self, user: str, contact: str = "*", *, local_ip: str = PROXY_HOST,
                   remote: tuple[str, int] | None = None) -> SippResult:
        """Remove `contact` (a `<sip:...>` name-addr) or, with "*", every binding of `user` (RFC 3261 §10.2.2):
        a binding left behind would ring, unanswered, in every later call to that user (forking, issue 16)."""
        return self.run("register/unregister.xml", keys={"aor_user": user, "contact": contact},
                        auth=(user, self.password(user)), local_ip=local_ip, remote=remote)

    @staticmethod
    def assert_ok(*results: SippResult) -> None:
        """Every SIPp process completed its call; else the SIP trace of every side."""
        failed = [r for r in results if not r.ok]
        assert not failed, "\n".join(r.report() for r in results)


@pytest.fixture
def sipp(routr_server: Server, tmp_path: Path) -> Sipp:
    """SIPp against config/ as shipped."""
    return Sipp(tmp_path, SHIPPED)


@pytest.fixture
def sipp_media(media_server: Server, tmp_path: Path) -> Sipp:
    """SIPp against the media server (tests/acceptance/media/config)."""
    return Sipp(tmp_path, MEDIA)


@pytest.fixture
def sipp_extras(extras_server: Server, tmp_path: Path) -> Sipp:
    """SIPp against tests/acceptance/config (the scenarios the shipped config cannot play)."""
    return Sipp(tmp_path, EXTRAS)


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

    def __init__(self, work: Path, profile: Profile = SHIPPED) -> None:
        self.profile = profile
        self.gnutls_priority = work / "gnutls-tls12.conf"
        self.gnutls_priority.write_text("[overrides]\ndisabled-version = tls1.3\n")

    def run(self, *args: str, transport: str = "udp", timeout: float = 15.0) -> SipsakResult:
        if shutil.which("sipsak") is None:
            pytest.fail("sipsak not found: apt-get install -y sipsak")
        port = self.profile.tls_port if transport == "tls" else self.profile.sip_port
        argv = ["sipsak", "-vvv", "-E", transport, "-p", f"{self.profile.host}:{port}", "-H", PROXY_HOST, *args]
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
