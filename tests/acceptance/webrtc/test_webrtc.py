"""WebRTC signalling (seed test criterion "signaling for popular WebRTC clients"): JsSIP in Debian's headless
Chromium, driven by playwright-core (driver.mjs), against the `routr-ray run` of the acceptance suite.

1. JsSIP registers with digest over WS (agent 1001) and over WSS (agent 1002, the self-signed dev certificate).
2. Two browsers call each other (1001 on WS calls 1002 on WSS): INVITE / 200 / ACK / BYE complete, JsSIP
   `confirmed` then `ended` on both sides.
3. A browser (1001 on WS) calls a SIPp UAS on UDP (Peer `mediaserver`, sip:conference@sip.local): the INVITE
   the UAS receives carries two Record-Route entries with r2=on, the WS side and the UDP side (RFC 5658 §4).

Needs `scripts/install-test-deps` (Debian `chromium`, `npm ci --prefix tests/acceptance/webrtc`). A failure
shows the driver's steps, the SIP messages each page sent and received on its WebSocket, the JsSIP debug
output, and the tail of the server's log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.acceptance import CONTACT_PORTS, PASSWORDS, PROXY_HOST, SHIPPED, Server, Sipp, SippResult

HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
WS_URL = f"ws://{PROXY_HOST}:{SHIPPED.ws_port}"
WSS_URL = f"wss://{PROXY_HOST}:{SHIPPED.wss_port}"
DRIVER_TIMEOUT_S = 90
DOMAIN = "sip.local"


def agent(user: str, ws_url: str) -> dict[str, str]:
    return {"name": user, "uri": f"sip:{user}@{DOMAIN}", "password": PASSWORDS[user], "wsUrl": ws_url}


@dataclass
class DriverRun:
    result: dict[str, Any]
    out_dir: Path
    stdout: str
    server: Server

    @property
    def error(self) -> str | None:
        return self.result.get("error")

    def events(self, agent_name: str, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.result["events"] if e["agent"] == agent_name and e["type"] == kind]

    def report(self) -> str:
        def tail(name: str, lines: int) -> str:
            path = self.out_dir / name
            text = path.read_text(errors="replace") if path.exists() else "(none)"
            return "\n".join(text.splitlines()[-lines:])

        return (f"--- driver: {self.stdout.strip()}\n--- error: {self.error}\n--- steps: {self.result.get('steps')}\n"
                f"--- WebSocket frames (SIP seen by the pages):\n{tail('ws-frames.log', 200)}\n"
                f"--- page console (JsSIP debug), last lines:\n{tail('console.log', 60)}\n"
                f"--- routr-ray log, last lines:\n{self.server.log_tail(60)}\n")


@pytest.fixture(scope="module")
def driver_ready() -> Path:
    missing = []
    if not CHROMIUM.exists():
        missing.append("Debian chromium (apt-get install -y chromium)")
    if not (HERE / "node_modules" / "playwright-core").is_dir() or not (HERE / "node_modules" / "jssip").is_dir():
        missing.append("the npm packages (npm ci --prefix tests/acceptance/webrtc)")
    if shutil.which("node") is None:
        missing.append("node")
    if missing:
        pytest.fail(f"WebRTC acceptance needs {', '.join(missing)}: run scripts/install-test-deps")
    return HERE / "driver.mjs"


@pytest.fixture
def browser(routr_server: Server, driver_ready: Path, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Runs one driver scenario (a fresh headless Chromium) and returns its DriverRun."""
    count = 0

    def run(spec: dict[str, Any]) -> DriverRun:
        nonlocal count
        count += 1
        out_dir = tmp_path / f"browser-{count:02d}-{spec['scenario']}"
        out_dir.mkdir()
        spec_path = out_dir / "spec.json"
        spec_path.write_text(json.dumps({**spec, "outDir": str(out_dir), "stepTimeoutMs": 15000}))
        process = subprocess.Popen(["node", str(driver_ready), str(spec_path)], stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=HERE, text=True,
                                   start_new_session=True)
        try:
            output, _ = process.communicate(timeout=DRIVER_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # node and the Chromium it started
            output, _ = process.communicate()
            output += f"\n(driver killed after {DRIVER_TIMEOUT_S}s)"
        result_path = out_dir / "result.json"
        if not result_path.exists():
            pytest.fail(f"the WebRTC driver wrote no result (exit {process.returncode}):\n{output}\n"
                        f"{routr_server.log_tail()}")
        return DriverRun(json.loads(result_path.read_text()), out_dir, output, routr_server)

    return run


def record_routes(message: str) -> list[str]:
    """Every Record-Route URI of a SIP message, in order, whether in one header line or several."""
    head = message.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
    values = [line.split(":", 1)[1] for line in head.splitlines() if line.lower().startswith("record-route:")]
    return [uri for value in values for uri in re.findall(r"<([^>]*)>", value)]


def assert_r2_pair(routes: list[str], transports: set[str]) -> None:
    """Two Record-Route entries with r2=on and lr, one per side (RFC 5658 §4 double record-routing)."""
    assert len(routes) == 2, routes
    assert all(";r2=on" in r and ";lr" in r for r in routes), routes
    seen = {m.group(1).lower() for r in routes if (m := re.search(r";transport=([a-z]+)", r, re.IGNORECASE))}
    assert seen == transports, routes


@pytest.mark.parametrize(("user", "ws_url"), [("1001", WS_URL), ("1002", WSS_URL)], ids=["ws", "wss"])
def test_jssip_registers(browser, user: str, ws_url: str) -> None:  # type: ignore[no-untyped-def]
    run = browser({"scenario": "register", "agents": [agent(user, ws_url)]})
    assert run.error is None, run.report()
    (registered,) = run.events(user, "registered")
    assert registered["response"].startswith("SIP/2.0 200"), run.report()
    assert re.search(r"^Contact:.*;expires=\d+", registered["response"], re.MULTILINE | re.IGNORECASE), run.report()
    assert run.events(user, "unregistered"), run.report()
    assert not run.events(user, "registrationFailed"), run.report()


@pytest.mark.parametrize("hangs_up", ["caller", "callee"])
def test_two_browsers_call_each_other(browser, hangs_up: str) -> None:  # type: ignore[no-untyped-def]
    run = browser({"scenario": "call", "caller": agent("1001", WS_URL), "callee": agent("1002", WSS_URL),
                   "target": f"sip:1002@{DOMAIN}", "hangupBy": hangs_up})
    assert run.error is None, run.report()
    for name in ("1001", "1002"):
        assert run.events(name, "confirmed"), run.report()
        (ended,) = run.events(name, "ended")
        assert ended["cause"] == "Terminated", run.report()
        assert not run.events(name, "failed"), run.report()
    bye_from, bye_to = ("1001", "1002") if hangs_up == "caller" else ("1002", "1001")
    assert run.events(bye_from, "ended")[0]["originator"] == "local", run.report()
    assert run.events(bye_to, "ended")[0]["originator"] == "remote", run.report()  # the BYE went through
    (invite,) = [e["request"] for e in run.events("1002", "newRTCSession") if e["originator"] == "remote"]
    assert invite.startswith("INVITE "), run.report()
    assert "X-Call-Direction: agent-to-agent" in invite, run.report()
    assert_r2_pair(record_routes(invite), {"ws", "wss"})


def test_browser_calls_sip_uas_over_udp(browser, sipp: Sipp) -> None:  # type: ignore[no-untyped-def]
    peer_port = CONTACT_PORTS["asterisk"]
    sipp.assert_ok(sipp.register("asterisk"))
    uas = sipp.uas("webrtc/uas.xml", peer_port, keys={"me": "asterisk"}, timeout_s=60)
    run = browser({"scenario": "call", "caller": agent("1001", WS_URL), "callee": None,
                   "target": f"sip:conference@{DOMAIN}"})
    answered: SippResult = uas.result(timeout=20)
    assert run.error is None, run.report() + answered.report()
    sipp.assert_ok(answered)
    (invite,) = answered.received("INVITE")
    assert invite.startswith(f"INVITE sip:asterisk@127.0.0.1:{peer_port}"), invite
    assert "X-Call-Direction: agent-to-peer" in invite, invite
    assert_r2_pair(record_routes(invite), {"ws", "udp"})
    assert answered.received("ACK") and answered.received("BYE"), answered.report()
    (ended,) = run.events("1001", "ended")
    assert ended["originator"] == "local" and ended["cause"] == "Terminated", run.report()


def test_a_browser_and_a_sip_phone_of_one_extension_both_ring(browser, sipp: Sipp) -> None:  # type: ignore[no-untyped-def]
    """Forking (issue 16): 1002 is a SIPp phone on UDP and a JsSIP browser on WSS; a call from 1001 (browser, WS)
    rings both; the browser answers, the SIP phone gets the proxy's CANCEL and answers 487."""
    phone_port = CONTACT_PORTS["1002"]
    sipp.assert_ok(sipp.unregister("1002"))  # only the phone and the browser: no binding of earlier tests
    sipp.assert_ok(sipp.register("1002"))
    try:
        phone = sipp.uas("cancel/uas_cancelled.xml", phone_port, keys={"me": "1002"}, timeout_s=60)
        run = browser({"scenario": "call", "caller": agent("1001", WS_URL), "callee": agent("1002", WSS_URL),
                       "target": f"sip:1002@{DOMAIN}", "hangupBy": "caller"})
        rang: SippResult = phone.result(timeout=20)
    finally:
        sipp.unregister("1002")
        sipp.register("1002")  # as the other tests expect it: one binding at CONTACT_PORTS["1002"]
    assert run.error is None, run.report() + rang.report()
    assert run.events("1002", "confirmed"), run.report()  # the browser answered
    sipp.assert_ok(rang)
    assert rang.received("INVITE") and rang.received("CANCEL"), rang.report()  # the phone rang, then was cancelled
    (cancel,) = rang.received("CANCEL")
    assert "Call completed elsewhere" in cancel
