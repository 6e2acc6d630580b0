"""Resources reload while the server runs (issue 6 item 1): an Agent added to the resource files can register
a moment later (the files are polled every 2 s); a bad edit is refused and the last good set stays."""

from __future__ import annotations

import time
from pathlib import Path

NEW_AGENT = """\
- apiVersion: v2beta1
  kind: Credentials
  ref: credentials-1010
  metadata: { name: "1010" }
  spec:
    credentials: { username: "1010", password: secret1010 }
- apiVersion: v2beta1
  kind: Agent
  ref: agent-1010
  metadata: { name: Added while running }
  spec:
    username: "1010"
    domainRef: domain-01
    credentialsRef: credentials-1010
"""
BAD_EDIT = """\
- apiVersion: v2beta1
  kind: Agent
  ref: agent-1011
  metadata: { name: Names a domain that does not exist }
  spec:
    username: "1011"
    domainRef: no-such-domain
    credentialsRef: credentials-1010
"""


def _registers(sipp) -> bool:  # type: ignore[no-untyped-def]
    return sipp.register("1010", "secret1010").ok


def _wait_until(condition, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return False


def test_added_agent_registers_after_reload_and_bad_edit_keeps_it(sipp, routr_server) -> None:  # type: ignore[no-untyped-def]
    resources: Path = routr_server.config_dir / "resources"
    added, bad = resources / "reload-agent.yaml", resources / "reload-bad.yaml"
    unknown = sipp.run("wrong_password/register_wrong_password.xml", keys={"aor_user": "1010"},
                       auth=("1010", "secret1010"))
    sipp.assert_ok(unknown)  # not an Agent yet: challenged again, like a wrong password
    try:
        added.write_text(NEW_AGENT)
        assert _wait_until(lambda: _registers(sipp), 10.0), "agent 1010 still refused 10 s after it was added"
        bad.write_text(BAD_EDIT)
        time.sleep(3.0)  # more than one poll interval: the bad set has been seen and refused
        assert _registers(sipp), "a bad edit replaced the last good resource set"
    finally:
        bad.unlink(missing_ok=True)
        added.unlink(missing_ok=True)
    assert _wait_until(lambda: not _registers(sipp), 10.0), "agent 1010 still registers after its file was removed"
