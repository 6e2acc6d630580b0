"""Restarting `routr-ray run` keeps live calls (issue 14 item 10): the nonce/dialog key is kept in the state
directory (`--state-dir`), so the dialog token recorded before the restart still verifies after it. SIPp caller
(tests/attack/restart/uac_restart.xml) and SIPp callee (tests/acceptance/agent_call/uas.xml) set up an answered
call through the proxy; the server is stopped (SIGTERM) and started again with the same state directory; then the
caller's BYE, along the route set recorded before the restart, reaches the callee and is answered.

Its own server (two starts, not the shared session server): config/ as shipped on ports of its own (SIP 15160-15163,
health 18180, dispatcher 51931, Location 51932) so it never clashes with the session servers."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.acceptance import (
    ACCEPTANCE,
    PASSWORDS,
    READY_TIMEOUT,
    SHIPPED,
    STOP_TIMEOUT,
    Sipp,
    SippProcess,
    copy_config,
)
from tests.support.redis_server import free_port

PORTS = {5060: 15160, 5061: 15161, 5062: 15162, 5063: 15163, 8080: 18180, 9464: 15464, 51901: 51931, 51902: 51932,
         5080: 15180}
PROXY = ("127.0.0.1", 15160)
SCENARIO = Path(__file__).resolve().parent / "restart" / "uac_restart.xml"


def own_config(work: Path) -> Path:
    """config/ as shipped with its ports moved (the harness's rewrite, checked to change nothing else)."""
    return copy_config(dataclasses.replace(SHIPPED, ports=PORTS), work / "config")


class Server:
    def __init__(self, config: Path, state: Path, log: Path) -> None:
        self.config, self.state, self.log = config, state, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}
        env.pop("ROUTR_RAY_NONCE_KEY", None)
        offset = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "routr_ray.cli", "run", "--config", str(self.config), "--no-dashboard",
                 "--state-dir", str(self.state)],
                stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while "ready in" not in self.log.read_bytes()[offset:].decode(errors="replace"):
            assert self.process.poll() is None, f"routr-ray run exited:\n{self.tail()}"
            assert time.monotonic() < deadline, f"routr-ray run not ready in time:\n{self.tail()}"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            pytest.fail(f"routr-ray run did not stop within {STOP_TIMEOUT:.0f}s:\n{self.tail()}")
        assert self.process.returncode == 0, self.tail()

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-60:])


def start_caller(work: Path, port: int) -> tuple[subprocess.Popen[bytes], Path]:
    """SIPp caller 1001 → 1002 with a Call-ID the test knows (`-cid_str`)."""
    work.mkdir()
    args = ["sipp", "-sf", str(SCENARIO), "-t", "u1", "-i", "127.0.0.1", "-p", str(port), "-mp", "20990", "-m", "1",
            "-nostdin", "-timeout", f"{int(READY_TIMEOUT) + 120}s", "-timeout_error", "-cid_str", "restart-%u@attack",
            "-s", "1002", "-key", "caller", "1001", "-au", "1001", "-ap", PASSWORDS["1001"],
            "-trace_msg", "-message_file", str(work / "messages.log"), "-trace_err", "-error_file",
            str(work / "errors.log"), f"{PROXY[0]}:{PROXY[1]}"]
    with (work / "screen.log").open("wb") as screen:
        process = subprocess.Popen(args, stdout=screen, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=work)
    return process, work


def wait_for(predicate, what: str, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.timeout(2 * READY_TIMEOUT + 120)  # two server starts (closer than the suite's per-item timeout)
def test_a_call_answered_before_a_restart_hangs_up_after_it(tmp_path: Path) -> None:
    if os.environ.get("ROUTR_RAY_IN_NETNS") != "1":
        pytest.fail("starts Ray, which binds every interface: run it inside scripts/in-netns")
    state = tmp_path / "state"
    server = Server(own_config(tmp_path), state, tmp_path / "routr-ray.log")
    sipp = Sipp(tmp_path / "sipp")
    (tmp_path / "sipp").mkdir()
    callee: SippProcess | None = None
    caller: subprocess.Popen[bytes] | None = None
    try:
        server.start()
        key_file = state / "nonce-key"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        key = key_file.read_text()
        callee_port = free_port()
        sipp.assert_ok(sipp.run("register/register.xml", port=free_port(), remote=PROXY,
                                keys={"aor_user": "1002", "contact_port": str(callee_port), "contact_params": "",
                                      "contact_q": ""},
                                auth=("1002", PASSWORDS["1002"])))
        callee = sipp.uas("agent_call/uas.xml", callee_port, keys={"me": "1002"}, timeout_s=int(READY_TIMEOUT) + 120)
        caller_port = free_port()
        caller, caller_work = start_caller(tmp_path / "caller", caller_port)
        callee_log = callee.work / "messages.log"
        wait_for(lambda: callee_log.exists() and "ACK sip:" in callee_log.read_text(errors="replace"),
                 "the answered call's ACK at the callee")

        server.stop()
        server.start()  # same config, same state directory: the same key
        assert key_file.read_text() == key

        trigger = (f"INFO sip:1001@127.0.0.1:{caller_port} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP 127.0.0.1:{caller_port + 1};branch=z9hG4bKrestarted\r\n"
                   f"From: <sip:1002@sip.local>;tag=test\r\nTo: <sip:1001@sip.local>;tag={caller.pid}caller1\r\n"
                   f"Call-ID: restart-1@attack\r\nCSeq: 1 INFO\r\nContent-Length: 0\r\n\r\n").encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(trigger, ("127.0.0.1", caller_port))
        caller.wait(timeout=30)
        answered = callee.result(timeout=30)
        caller_messages = (caller_work / "messages.log").read_text(errors="replace")
        assert caller.returncode == 0, caller_messages[-4000:] + server.tail()
        sipp.assert_ok(answered)
        (bye,) = answered.received("BYE")
        assert "restart-1@attack" in bye
    finally:
        if caller is not None and caller.poll() is None:
            caller.kill()
        if callee is not None and callee.process.poll() is None:
            callee.process.kill()
        server.stop()


def test_the_scenarios_exist() -> None:
    assert SCENARIO.exists() and (ACCEPTANCE / "agent_call" / "uas.xml").exists()
