"""The README's run command on the default config (issue 7, "Done when"): `routr-ray run` from the repository
root (./config: local Ray, memory Location), a SIPp REGISTER with digest to the example agent 1001@sip.local gets
200, and SIGTERM leaves no process of that run behind.

Issue 13: ready means ready (item 4): from the moment the server starts, OPTIONS to the EdgePort is sent until it
answers 200; right after that first 200, a REGISTER with digest gets 200 at its first try (no 503); and "ready" is
printed only once a REGISTER succeeds. A stop removes the run's temporary directory (item 6)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.probes import options_ping, register_with_digest

REPO = Path(__file__).resolve().parents[3]
SCENARIO = REPO / "tests" / "acceptance" / "register" / "register.xml"
READY_TIMEOUT = 180.0


def _session_processes(sid: int) -> list[str]:
    """Command lines of live processes in session `sid` (the server was started in its own session)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[3]) == sid:
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue
    return found


def test_readme_run_registers_the_example_agent_and_stops_clean(tmp_path: Path) -> None:
    if os.environ.get("ROUTR_RAY_IN_NETNS") != "1":
        pytest.fail("starts Ray, which binds every interface: run it inside scripts/in-netns")
    log_path = tmp_path / "run.log"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1",
           "XDG_STATE_HOME": str(tmp_path / "state")}  # the default state directory, under the test's tmp
    env.pop("ROUTR_RAY_CONFIG", None)
    with log_path.open("wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "routr_ray.cli", "run", "--no-dashboard"], cwd=REPO,
                                  stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:  # OPTIONS to the EdgePort itself (503 until it is ready, ICMP unreachable before it listens)
            assert server.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "OPTIONS never got 200"
            printed = "ready in" in log_path.read_text(errors="replace")
            try:
                answer = options_ping(5060, timeout=0.2)
            except OSError:
                answer = None
            if answer is not None and answer.startswith(b"SIP/2.0 200 "):
                break
            assert not printed, f"'ready' was printed, then OPTIONS got {answer[:40] if answer else 'nothing'!r}"
            if answer is not None:
                assert answer.startswith(b"SIP/2.0 503 ") and b"Retry-After:" in answer, answer[:200]
            time.sleep(0.05)
        assert register_with_digest(5060) == 200  # right after the first 200 to OPTIONS: no 503
        while "ready in" not in log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, "not ready in time"
            time.sleep(0.2)
        logs_line = next(line for line in log_path.read_text(errors="replace").splitlines()
                         if line.strip().startswith("Logs "))
        temp_dir = Path(logs_line.split()[1]).parents[1]
        assert temp_dir.name.startswith("routr-ray-") and temp_dir.is_dir()
        sipp = subprocess.run(
            ["sipp", "127.0.0.1:5060", "-sf", str(SCENARIO), "-m", "1", "-t", "u1", "-i", "127.0.0.1", "-p", "0",
             "-au", "1001", "-ap", "1234", "-key", "aor_user", "1001", "-key", "contact_port", "5099", "-key", "contact_params", "", "-key", "contact_q", "",
             "-timeout", "15s", "-nostdin", "-trace_err", "-trace_msg"],
            cwd=tmp_path, capture_output=True, timeout=30,
        )
        messages = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_messages.log"))
        assert sipp.returncode == 0, messages[-3000:]
        assert "SIP/2.0 200" in messages
    finally:
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            pytest.fail("routr-ray run did not stop within 20 s of SIGTERM")
    assert server.returncode == 0, log_path.read_text(errors="replace")[-3000:]
    assert time.monotonic() - started < 15
    time.sleep(1.0)
    assert _session_processes(server.pid) == []
    assert not temp_dir.exists(), "a stop removes the run's temporary directory (issue 13 item 6)"
