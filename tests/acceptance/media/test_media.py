"""Media relay with RTPEngine on the real server (issue 19): the shipped config with the rtpengine middleware on
(tests/acceptance/media/config), two RTPEngines (Debian's rtpengine-daemon) on 127.0.0.1, SIPp phones.

* a SIPp-to-SIPp call whose SDPs name private addresses (phones behind NAT) is relayed: each side's SDP points at
  RTPEngine, RTPEngine's own statistics (ng ``list``/``query``) show packets from both parties (the callee only
  echoes what RTPEngine relayed to it), and BYE deletes the call;
* one RTPEngine stopped: the other takes the call; both stopped: the caller gets 503 with Retry-After at once,
  and the callee never rings;
* the middleware's metrics (ng commands by instance and result, instance health) reach Ray's metrics export.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.support.acceptance import CONTACT_PORTS, MEDIA_RTPENGINES, Sipp, SippResult
from tests.support.probes import metric_value, scrape
from tests.support.rtpengine import RtpEngineServer, packets_by_tag

RANGES = [(low, high) for _, low, high in MEDIA_RTPENGINES]


def sdp_media(message: str) -> tuple[str, int, str]:
    """(c= address, m=audio port, protocol) of a SIP message's SDP as SIPp logged it."""
    address = re.search(r"^c=IN IP4 (\S+)", message, re.MULTILINE)
    media = re.search(r"^m=audio (\d+) (\S+)", message, re.MULTILINE)
    assert address and media, message
    return address.group(1), int(media.group(1)), media.group(2)


def call_id_of(message: str) -> str:
    found = re.search(r"^Call-ID:\s*(\S+)", message, re.MULTILINE | re.IGNORECASE)
    assert found, message
    return found.group(1)


@pytest.fixture
def engines(media_rtpengines: list[RtpEngineServer]) -> Iterator[list[RtpEngineServer]]:
    """Both RTPEngines running after the test, and seen as up by the middleware again (it pings every 0.5 s)."""
    yield media_rtpengines
    restarted = False
    for server in media_rtpengines:
        if not server.running:
            server.start()
            restarted = True
    if restarted:
        time.sleep(1.5)


@pytest.fixture
def callee_1002(sipp_media: Sipp) -> Iterator[int]:
    """1002 registered at its SIPp UAS port, removed afterwards (a binding left behind rings in later calls)."""
    sipp_media.assert_ok(sipp_media.register("1002"))
    yield CONTACT_PORTS["1002"]
    sipp_media.unregister("1002")


def relayed_call(sipp_media: Sipp, engines: list[RtpEngineServer], port: int
                 ) -> tuple[SippResult, SippResult, dict[str, dict[str, int]], dict[str, str]]:
    """1001 (SDP: 10.0.0.5) calls 1002 (SDP: 192.168.1.20, echoing RTP); while the call lasts, every RTPEngine's
    calls and their per-party packet counts are sampled. Returns both SIPp results, the last counts by Call-ID and
    the instance that held each Call-ID."""
    callee = sipp_media.uas("media/uas_echo.xml", port, keys={"me": "1002", "sdp_addr": "192.168.1.20"},
                            extra=("-rtp_echo",), timeout_s=30)
    caller = sipp_media.start("media/uac_nat.xml", service="1002", keys={"caller": "1001", "sdp_addr": "10.0.0.5"},
                              auth=("1001", sipp_media.password("1001")), timeout_s=30)
    counts: dict[str, dict[str, int]] = {}
    holders: dict[str, str] = {}
    deadline = time.monotonic() + 30
    while caller.process.poll() is None and time.monotonic() < deadline:
        for server in engines:
            if not server.running:
                continue
            for call_id in server.calls():
                try:
                    counts[call_id] = packets_by_tag(server.query(call_id))
                    holders[call_id] = server.addr
                except (OSError, AssertionError):
                    pass
        time.sleep(0.2)
    return caller.result(timeout=30), callee.result(timeout=30), counts, holders


def test_phones_behind_nat_are_relayed_both_ways_and_bye_deletes(sipp_media, engines, callee_1002) -> None:  # type: ignore[no-untyped-def]
    caller, callee, counts, _ = relayed_call(sipp_media, engines, callee_1002)
    sipp_media.assert_ok(caller, callee)
    (invite,) = callee.received("INVITE")
    host, port, proto = sdp_media(invite)
    assert host == "127.0.0.1" and proto == "RTP/AVP", invite  # RTPEngine, plain RTP
    assert any(low <= port <= high for low, high in RANGES), invite
    assert "10.0.0.5" not in invite, "the caller's private address must not reach the callee"
    (ok,) = [m for m in caller.received("SIP/2.0 200") if re.search(r"^CSeq: \d+ INVITE", m, re.MULTILINE)]
    host, port, proto = sdp_media(ok)
    assert host == "127.0.0.1" and proto == "RTP/AVP" and any(low <= port <= high for low, high in RANGES), ok
    assert "192.168.1.20" not in ok
    call_id = call_id_of(invite)
    assert call_id in counts, counts
    sent = counts[call_id]
    assert len(sent) == 2 and all(n > 0 for n in sent.values()), sent  # the caller's pcap, the callee's echo
    for server in engines:
        assert call_id not in server.calls(), "BYE deletes the call"
    print(f"NAT call relayed: RTPEngine packets received per party {sent}")


def test_a_second_rtpengine_takes_over(sipp_media, engines, callee_1002) -> None:  # type: ignore[no-untyped-def]
    first, second = engines
    first.stop()
    caller, callee, counts, holders = relayed_call(sipp_media, engines, callee_1002)
    sipp_media.assert_ok(caller, callee)
    call_id = call_id_of(callee.received("INVITE")[0])
    assert holders.get(call_id) == second.addr, holders
    assert all(n > 0 for n in counts[call_id].values()), counts


def test_no_rtpengine_new_calls_get_503_at_once(sipp_media, engines, callee_1002) -> None:  # type: ignore[no-untyped-def]
    for server in engines:
        server.stop()
    callee = sipp_media.uas("media/uas_echo.xml", callee_1002, keys={"me": "1002", "sdp_addr": "127.0.0.1"},
                           timeout_s=5)
    started = time.monotonic()
    caller = sipp_media.run("media/uac_503.xml", service="1002", keys={"caller": "1001", "sdp_addr": "127.0.0.1"},
                            auth=("1001", sipp_media.password("1001")))
    took = time.monotonic() - started
    sipp_media.assert_ok(caller)
    (refused,) = caller.received("SIP/2.0 503")
    assert re.search(r"^Retry-After: 5\b", refused, re.MULTILINE), refused
    assert "media relay" in refused
    # 2 instances x 0.5 s at most (ICMP port unreachable says "nothing listens" at once), plus SIPp's own start
    assert took < 3.0, f"503 after {took:.1f}s"
    print(f"no RTPEngine: 503 after {took:.2f}s (SIPp start, INVITE, 407, ACK, INVITE included)")
    never_rang = callee.result(timeout=10)
    assert not never_rang.received("INVITE"), "the callee must not ring for a call without its media relay"


def test_the_relays_metrics_reach_rays_metrics_export(sipp_media, engines, callee_1002, media_server) -> None:  # type: ignore[no-untyped-def]
    """Offers, answers, deletes and errors per RTPEngine instance, on Ray's metrics export port (the middleware's
    deployment mirrors its registry there, with the ``ray_`` prefix, as the EdgePorts' series)."""
    caller, callee, _, _ = relayed_call(sipp_media, engines, callee_1002)
    sipp_media.assert_ok(caller, callee)
    address = re.search(r"Ray address\s+(\S+)", media_server.log_path.read_text())
    assert address, media_server.log_tail()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    script = (f"import ray; ray.init(address={address.group(1)!r}, logging_level='ERROR', log_to_driver=False); "
              "print(ray.nodes()[0]['MetricsExportPort'])")
    found = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90, env=env)
    assert found.returncode == 0, found.stderr[-2000:]
    url = f"http://127.0.0.1:{int(found.stdout.strip().splitlines()[-1])}/metrics"
    counts: dict[str, float] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        samples = scrape(url)
        counts = {command: metric_value(samples, "ray_routr_media_commands_total", command=command, result="ok")
                  for command in ("offer", "answer", "delete", "ping")}
        up = {ref: metric_value(samples, "ray_routr_media_instance_up", instance=ref)
              for ref in ("rtpengine-01", "rtpengine-02")}
        if all(counts[c] >= 1 for c in ("offer", "answer", "delete")) and all(up.values()):
            break
        time.sleep(2.0)
    assert all(counts[c] >= 1 for c in ("offer", "answer", "delete", "ping")), counts
    assert up == {"rtpengine-01": 1.0, "rtpengine-02": 1.0}, up
    names = {n for n, _ in samples}
    assert {"ray_routr_media_calls_total", "ray_routr_media_command_seconds_bucket"} <= names, sorted(names)
    # the instances are labelled by their refs from media.yaml (a closed set), never by Call-ID
    instances = {dict(lbls).get("instance") for n, lbls in samples if n == "ray_routr_media_commands_total"}
    assert instances <= {"rtpengine-01", "rtpengine-02"}, instances
