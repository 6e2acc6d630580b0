"""Web agents with tokens (issue 20 item 6): JsSIP in Debian's headless Chromium (driver.mjs) authenticates with an
`X-Connect-Token` JWT instead of digest, against the extras server (the shipped config plus
tests/acceptance/config/connect-tokens.yaml: the public half of tokens/test-signing-key.pem, audience
`routr-ray-acceptance`).

1. A browser registers with a valid token over WS: 200 at once, never a challenge; the un-REGISTER too.
2. Two token browsers call each other (INVITE with the caller's token, no digest); the callee's INVITE carries no
   token.
3. A token browser calls a SIPp UAS on UDP (Peer `asterisk`, sip:conference@sip.local).
4. An expired token, one for another audience, and one signed by another key are refused with 403 (never a 401),
   and nothing is registered; a token without INVITE in its allowedMethods registers but cannot call (403).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from test_webrtc import DriverRun, assert_r2_pair, driver_ready, record_routes  # noqa: F401 - driver_ready: a fixture

from tests.support.acceptance import CONTACT_PORTS, EXTRAS, PROXY_HOST, Server, Sipp, SippResult

HERE = Path(__file__).resolve().parent
SIGNING_KEY = (HERE / "tokens" / "test-signing-key.pem").read_bytes()  # for these tests only (tokens/README.md)
AUDIENCE = "routr-ray-acceptance"
WS_URL = f"ws://{PROXY_HOST}:{EXTRAS.ws_port}"
DOMAIN = "sip.local"
DRIVER_TIMEOUT_S = 90


def token(user: str, *, key: bytes | object = SIGNING_KEY, **claims: object) -> str:
    now = int(time.time())
    payload = {"aor": f"sip:{user}@{DOMAIN}", "domain": DOMAIN, "allowedMethods": ["REGISTER", "INVITE"],
               "aud": AUDIENCE, "iat": now, "exp": now + 600, **claims}
    return jwt.encode(payload, key, algorithm="ES256")  # type: ignore[arg-type]


def web_agent(user: str, value: str | None = None) -> dict[str, str]:
    return {"name": user, "uri": f"sip:{user}@{DOMAIN}", "token": value or token(user), "wsUrl": WS_URL}


@pytest.fixture
def browser(extras_server: Server, driver_ready: Path, tmp_path: Path):  # type: ignore[no-untyped-def]  # noqa: F811
    """Runs one driver scenario (a fresh headless Chromium) against the extras server; returns its DriverRun."""
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
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            output += f"\n(driver killed after {DRIVER_TIMEOUT_S}s)"
        result_path = out_dir / "result.json"
        if not result_path.exists():
            pytest.fail(f"the WebRTC driver wrote no result (exit {process.returncode}):\n{output}\n"
                        f"{extras_server.log_tail()}")
        return DriverRun(json.loads(result_path.read_text()), out_dir, output, extras_server)

    return run


def frames(run: DriverRun) -> str:
    path = run.out_dir / "ws-frames.log"
    return path.read_text(errors="replace") if path.exists() else ""


def never_challenged(run: DriverRun) -> None:
    seen = frames(run)
    assert "SIP/2.0 401" not in seen and "SIP/2.0 407" not in seen, run.report()


def test_a_browser_registers_with_a_token_and_no_digest(browser) -> None:  # type: ignore[no-untyped-def]
    run = browser({"scenario": "register", "agents": [web_agent("web-1")]})
    assert run.error is None, run.report()
    (registered,) = run.events("web-1", "registered")
    assert registered["response"].startswith("SIP/2.0 200"), run.report()
    assert run.events("web-1", "unregistered")[0]["status"] == 200, run.report()
    assert "X-Connect-Token: ey" in frames(run), run.report()  # JsSIP sent the token on its REGISTERs
    never_challenged(run)


def test_two_token_browsers_call_each_other(browser) -> None:  # type: ignore[no-untyped-def]
    run = browser({"scenario": "call", "caller": web_agent("web-1"), "callee": web_agent("web-2"),
                   "target": f"sip:web-2@{DOMAIN}", "hangupBy": "callee"})
    assert run.error is None, run.report()
    for name in ("web-1", "web-2"):
        assert run.events(name, "confirmed"), run.report()
        assert run.events(name, "ended")[0]["cause"] == "Terminated", run.report()
    (invite,) = [e["request"] for e in run.events("web-2", "newRTCSession") if e["originator"] == "remote"]
    assert invite.startswith("INVITE ") and "X-Call-Direction: agent-to-agent" in invite, run.report()
    assert "X-Connect-Token" not in invite, run.report()  # the caller's credential stays with Connect
    assert len(record_routes(invite)) == 1, run.report()  # WS to WS: one Record-Route
    never_challenged(run)


def test_a_token_browser_calls_a_sip_uas(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    sipp = Sipp(tmp_path, EXTRAS)
    peer_port = CONTACT_PORTS["asterisk"]
    sipp.assert_ok(sipp.register("asterisk"))
    try:
        uas = sipp.uas("webrtc/uas.xml", peer_port, keys={"me": "asterisk"}, timeout_s=60)
        run = browser({"scenario": "call", "caller": web_agent("web-1"), "callee": None,
                       "target": f"sip:conference@{DOMAIN}"})
        answered: SippResult = uas.result(timeout=20)
    finally:
        sipp.unregister("asterisk")
    assert run.error is None, run.report() + answered.report()
    sipp.assert_ok(answered)
    (invite,) = answered.received("INVITE")
    assert invite.startswith(f"INVITE sip:asterisk@127.0.0.1:{peer_port}"), invite
    assert "X-Call-Direction: agent-to-peer" in invite and "X-Connect-Token" not in invite, invite
    assert_r2_pair(record_routes(invite), {"ws", "udp"})
    never_challenged(run)


OTHER_KEY = ec.generate_private_key(ec.SECP256R1())


@pytest.mark.parametrize("bad", ["expired", "wrong audience", "another key"])
def test_a_bad_token_is_refused_with_403(browser, bad: str) -> None:  # type: ignore[no-untyped-def]
    now = int(time.time())
    value = {"expired": lambda: token("web-3", iat=now - 700, exp=now - 100),
             "wrong audience": lambda: token("web-3", aud="another-service"),
             "another key": lambda: token("web-3", key=OTHER_KEY)}[bad]()
    run = browser({"scenario": "register", "agents": [web_agent("web-3", value)]})
    assert run.error is not None and "registrationFailed" in run.error, run.report()
    (failed,) = run.events("web-3", "registrationFailed")
    assert failed["status"] == 403, run.report()
    assert not run.events("web-3", "registered"), run.report()
    never_challenged(run)


def test_a_token_without_invite_registers_but_cannot_call(browser) -> None:  # type: ignore[no-untyped-def]
    run = browser({"scenario": "call", "callee": None, "target": f"sip:conference@{DOMAIN}",
                   "caller": web_agent("web-4", token("web-4", allowedMethods=["REGISTER"]))})
    assert run.events("web-4", "registered"), run.report()
    (failed,) = run.events("web-4", "failed")
    assert failed["status"] == 403 and failed["originator"] == "remote", run.report()
    assert not run.events("web-4", "confirmed"), run.report()
    never_challenged(run)
