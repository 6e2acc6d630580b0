"""SIP trunks as providers expect them (issue 15), with SIPp playing the provider.

* Registration (SIP Connect 1.1 registration mode, RFC 6140 GIN), on the extras server's ``trunk-reg``: setup
  (REGISTER -> 401 -> REGISTER with credentials -> 200), a DID call from the provider to the registered Contact
  reaching agent 1002, the refresh of a 30 s grant on the wire (due at half the grant, 15 s: the provider gives
  up after 25 s), answered with a 401 carrying a new nonce and re-registered. The refresh rule for 60 and 120 s
  grants is proven on a fake clock (tests/unit/test_trunk_registration.py): waiting 30 or 60 s here would prove
  nothing more and make CI slower.
* Failover: ``trunk-fo``'s first URI answers 503, its second 200: one call, through Connect.
* Load share: ``trunk-ls``'s two URIs of one priority, weights 3 and 1, over 400 calls: within 4 sigma of 3:1.
* DOD (shipped config): from Agent 1002 (privacy None) and from the Peer asterisk with X-DOD-Privacy id / none.
* Keepalive and E.164, on the extras server's ``trunk-ka`` (OPTIONS every second, down after 2 failures, up after
  1 answer; ``uriFormat: e164``): both URIs answer the pings; the first stops answering (a SIPp that takes the
  pings and says nothing) and is marked down (``routr_trunk_target_up`` 0, ``routr-ray status``): a call goes to
  the second URI, with ``sip:+<digits>@...;user=phone``, and none to the first; the first answers again and is
  marked up: the next call goes to it.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import yaml

from tests.support.acceptance import CONTACT_PORTS, TRUNK_UAS_PORT, SippResult

FAILOVER_PORTS = (15091, 15092)  # trunk-fo's URIs (tests/acceptance/config/resources/trunks-extra.yaml)
LOAD_SHARE_PORTS = (15093, 15094)  # trunk-ls's URIs, weights 3 and 1
KEEPALIVE_PORTS = (15095, 15096)  # trunk-ka's URIs, priorities 10 and 20


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def point_trunk_at(config_dir: Path, trunk_ref: str, port: int) -> None:
    """Edit the running server's resource files: the trunk's outbound URI gets ``port`` (a reload; the
    registrar re-registers a changed trunk at once)."""
    path = config_dir / "resources" / "trunks-extra.yaml"
    documents = yaml.safe_load(path.read_text())
    for document in documents:
        if document.get("ref") == trunk_ref:
            document["spec"]["outbound"]["uris"][0]["uri"]["port"] = port
    path.write_text(yaml.safe_dump(documents, sort_keys=False))


def received_at(result: SippResult, start: str) -> list[datetime]:
    """When this SIPp received each message whose first line starts with ``start`` (from its -trace_msg log)."""
    times = []
    stamp = None
    for line in result.messages.splitlines():
        found = re.match(r"^-+ (\d{4}-\d\d-\d\d\t?\s?\d\d:\d\d:\d\d\.\d+)", line)
        if found:
            stamp = datetime.fromisoformat(found.group(1).replace("\t", " ").strip())
        elif line.startswith(start) and stamp is not None:
            times.append(stamp)
    return times


def metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return response.read().decode()


def test_registration_did_call_and_refresh_after_a_new_nonce(sipp_extras, extras_server) -> None:  # type: ignore[no-untyped-def]
    callee = sipp_extras.uas("agent_call/uas.xml", CONTACT_PORTS["1002"], keys={"me": "1002"}, timeout_s=45)
    sipp_extras.assert_ok(sipp_extras.register("1002"))
    provider_port = free_udp_port()
    provider = sipp_extras.uas("trunks/provider_register.xml", provider_port, timeout_s=45)
    point_trunk_at(extras_server.config_dir, "trunk-reg", provider_port)
    served = provider.result(timeout=60)
    answered = callee.result(timeout=5)
    sipp_extras.assert_ok(served, answered)
    setup, answer, refresh, answer_b = served.received("REGISTER")
    assert "Authorization" not in setup and 'nonce="nonce-A-' in answer
    assert 'nonce="nonce-A-' in refresh  # the refresh carries the last credentials (nc + 1)
    assert 'nonce="nonce-B-' in answer_b  # the 401 with a new nonce was answered
    _, first_ok, refreshed, _ = received_at(served, "REGISTER")
    assert 10 <= (refreshed - first_ok).total_seconds() <= 20  # at half the 30 s grant
    (invite,) = answered.received("INVITE")
    assert invite.startswith("INVITE sip:1002@") and "X-Call-Direction: from-pstn" in invite
    text = metrics(extras_server.profile.ports[8080])
    assert 'routr_trunk_registration_state{trunk="trunk-reg"} 1.0' in text


def test_failover_from_a_503_uri_to_the_next(sipp_extras) -> None:  # type: ignore[no-untyped-def]
    down = sipp_extras.uas("trunks/uas_503.xml", FAILOVER_PORTS[0])
    up = sipp_extras.uas("agent_call/uas.xml", FAILOVER_PORTS[1], keys={"me": "provider"})
    caller = sipp_extras.run("trunks/peer_dod_uac.xml", service="17065550100",
                             keys={"caller": "asterisk", "dod": "+17066041491", "privacy": "none"},
                             auth=("asterisk", sipp_extras.password("asterisk")))
    refused, answered = down.result(), up.result()
    sipp_extras.assert_ok(caller, refused, answered)
    (first,) = refused.received("INVITE")
    (second,) = answered.received("INVITE")
    assert first.startswith(f"INVITE sip:17065550100@127.0.0.1:{FAILOVER_PORTS[0]} ")
    assert second.startswith(f"INVITE sip:17065550100@127.0.0.1:{FAILOVER_PORTS[1]} ")
    assert not caller.received("SIP/2.0 503")  # the caller never saw the 503


def test_load_share_3_to_1_over_400_calls(sipp_extras) -> None:  # type: ignore[no-untyped-def]
    calls = 400
    uas = [sipp_extras.start("agent_call/uas.xml", port=port, server=True, keys={"me": "provider"}, calls=calls,
                             timeout_s=120) for port in LOAD_SHARE_PORTS]
    time.sleep(0.3)
    caller = sipp_extras.start("trunks/peer_dod_uac.xml", service="17065550100", calls=calls, timeout_s=120,
                               keys={"caller": "asterisk", "dod": "+17066041492", "privacy": "none"},
                               auth=("asterisk", sipp_extras.password("asterisk")),
                               extra=("-r", "40", "-l", "40")).result(timeout=150)
    heavy, light = (process.result(timeout=2) for process in uas)  # they wait for more calls: stopped here
    assert caller.ok, caller.report()[-3000:]
    shares = len(heavy.received("INVITE")), len(light.received("INVITE"))
    assert sum(shares) == calls
    sigma = (calls * 0.75 * 0.25) ** 0.5  # binomial, p = 3/4
    assert abs(shares[0] - calls * 0.75) <= 4 * sigma, shares


def test_dod_from_an_agent_without_privacy(sipp) -> None:  # type: ignore[no-untyped-def]
    trunk = sipp.uas("agent_call/uas.xml", TRUNK_UAS_PORT, keys={"me": "trunk01"})
    caller = sipp.run("agent_call/uac.xml", service="17065550100", keys={"caller": "1002"},
                      auth=("1002", sipp.password("1002")))
    answered = trunk.result()
    sipp.assert_ok(caller, answered)
    (invite,) = answered.received("INVITE")
    assert "Privacy: none" in invite  # agent 1002 is `privacy: None` (RFC 3323)
    assert re.search(r"^From: <sip:1002@sip\.local>", invite, re.M)
    assert "P-Asserted-Identity: <sip:+17066041487@127.0.0.1;user=phone>" in invite


def test_dod_from_a_peer_with_each_privacy(sipp) -> None:  # type: ignore[no-untyped-def]
    for privacy in ("id", "none"):
        trunk = sipp.uas("agent_call/uas.xml", TRUNK_UAS_PORT, keys={"me": "trunk01"})
        caller = sipp.run("trunks/peer_dod_uac.xml", service="17065550100",
                          keys={"caller": "asterisk", "dod": "+17066041487", "privacy": privacy},
                          auth=("asterisk", sipp.password("asterisk")))
        answered = trunk.result()
        sipp.assert_ok(caller, answered)
        (invite,) = answered.received("INVITE")
        assert f"Privacy: {privacy}" in invite
        assert "P-Asserted-Identity: <sip:+17066041487@127.0.0.1;user=phone>" in invite
        assert "X-DOD-" not in invite  # our internal headers never reach the provider
        anonymous = re.search(r"^From: \"?Anonymous\"? <sip:anonymous@anonymous\.invalid>", invite, re.M)
        assert bool(anonymous) == (privacy == "id")
        assert "X-Call-Direction: peer-to-pstn" in invite


def target_up(port: int, target_port: int) -> float | None:
    """``routr_trunk_target_up`` of one trunk-ka URI on the extras server's /metrics (None: not there yet)."""
    line = f'routr_trunk_target_up{{target="udp:127.0.0.1:{target_port}",trunk="trunk-ka"}} '
    found = re.search("^" + re.escape(line) + r"(\S+)$", metrics(port), re.M)
    return float(found.group(1)) if found else None


def wait_for_target(port: int, target_port: int, value: float, seconds: float = 12.0) -> float:
    started = time.monotonic()
    while target_up(port, target_port) != value:
        assert time.monotonic() - started < seconds, f"{target_port} not {value} within {seconds:.0f}s"
        time.sleep(0.25)
    return time.monotonic() - started


def ka_call(sipp_extras):  # type: ignore[no-untyped-def]
    return sipp_extras.run("trunks/peer_dod_uac.xml", service="17065550100",
                           keys={"caller": "asterisk", "dod": "+17066041493", "privacy": "none"},
                           auth=("asterisk", sipp_extras.password("asterisk")))


def test_keepalive_skips_a_provider_that_stops_answering_and_e164(sipp_extras, extras_server) -> None:  # type: ignore[no-untyped-def]
    health = extras_server.profile.ports[8080]
    first, second = KEEPALIVE_PORTS
    answering = sipp_extras.uas("trunks/provider_keepalive.xml", first, keys={"me": "provider"}, calls=1000,
                                timeout_s=60)
    backup = sipp_extras.uas("trunks/provider_keepalive.xml", second, keys={"me": "provider"}, calls=1000,
                             timeout_s=60)
    wait_for_target(health, first, 1.0)
    wait_for_target(health, second, 1.0)
    time.sleep(1.5)  # at least one ping answered since this SIPp listens (the URIs start up, as Kamailio's do)
    wait_for_target(health, first, 1.0)
    stopped = answering.result(timeout=0)  # stops answering: a silent provider takes its place on the port
    silent = sipp_extras.uas("trunks/provider_silent.xml", first, calls=1000, timeout_s=60)
    took = wait_for_target(health, first, 0.0)
    assert took < 8  # two pings of 1 s without an answer
    address = re.search(r"Ray address\s+(\S+)", extras_server.log_path.read_text(errors="replace"))
    assert address is not None
    status = subprocess.run([sys.executable, "-m", "routr_ray.cli", "status", "--address", address.group(1)],
                            capture_output=True, text=True, timeout=120, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    assert re.search(rf"BAD trunk trunk-ka\s+udp:127\.0\.0\.1:{first}\s+down for \d+ s", status.stdout), (
        status.stdout + status.stderr)
    assert re.search(rf"ok  trunk trunk-ka\s+udp:127\.0\.0\.1:{second}\s+up", status.stdout), status.stdout
    caller = ka_call(sipp_extras)
    sipp_extras.assert_ok(caller)
    ignored = silent.result(timeout=0)
    assert ignored.received("OPTIONS") and not ignored.received("INVITE")  # down: no call sent to it at all
    answering = sipp_extras.uas("trunks/provider_keepalive.xml", first, keys={"me": "provider"}, calls=1000,
                                timeout_s=60)
    wait_for_target(health, first, 1.0)  # one answer brings it back
    time.sleep(0.5)  # the metric and Connect's copy of the table change together; give the latter a moment
    sipp_extras.assert_ok(ka_call(sipp_extras))
    back, backed_up = answering.result(timeout=0), backup.result(timeout=0)
    (to_backup,) = backed_up.received("INVITE")
    assert to_backup.startswith(f"INVITE sip:+17065550100@127.0.0.1:{second};user=phone SIP/2.0")
    (to_first,) = back.received("INVITE")
    assert to_first.startswith(f"INVITE sip:+17065550100@127.0.0.1:{first};user=phone SIP/2.0")
    pings = stopped.received("OPTIONS")
    assert pings and pings[0].startswith(f"OPTIONS sip:127.0.0.1:{first} SIP/2.0")
    assert "Failed regexp" not in back.errors + backed_up.errors
