"""WebRTC to SIP with media (issue 19): JsSIP in Debian's headless Chromium (fake microphone) calls a SIPp UAS on
UDP through the media server (the shipped config with the rtpengine middleware on, tests/acceptance/media/config)
and RTPEngine (Debian's rtpengine-daemon on 127.0.0.1).

* the UAS receives an offer pointing at RTPEngine with plain RTP/AVP (no ICE, no DTLS);
* the browser receives an answer pointing at RTPEngine with DTLS-SRTP and ICE (UDP/TLS/RTP/SAVPF, a fingerprint,
  ICE credentials, RTPEngine as the only candidate);
* while the call lasts, RTPEngine's statistics (ng ``list`` and ``query``) show packets from both parties: the
  browser's audio, and the UAS's echo of what RTPEngine relayed to it (SIPp ``-rtp_echo``); the browser's own
  getStats() shows audio packets received over a connected DTLS transport;
* the BYE deletes the call in RTPEngine.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.acceptance import CONTACT_PORTS, MEDIA, MEDIA_RTPENGINES, PROXY_HOST, Server, Sipp
from tests.support.rtpengine import RtpEngineServer, packets_by_tag

HERE = Path(__file__).resolve().parent
CHROMIUM = Path("/usr/bin/chromium")
DRIVER_TIMEOUT_S = 90
HOLD_MS = 4000


@pytest.fixture(scope="module")
def driver() -> Path:
    missing = []
    if not CHROMIUM.exists():
        missing.append("Debian chromium (apt-get install -y chromium)")
    if not (HERE / "node_modules" / "playwright-core").is_dir() or not (HERE / "node_modules" / "jssip").is_dir():
        missing.append("the npm packages (npm ci --prefix tests/acceptance/webrtc)")
    if missing:
        pytest.fail(f"WebRTC acceptance needs {', '.join(missing)}: run scripts/install-test-deps")
    return HERE / "driver.mjs"


def sample(engines: list[RtpEngineServer], seen: dict[str, dict[str, int]]) -> None:
    for server in engines:
        for call_id in server.calls():
            try:
                seen[call_id] = packets_by_tag(server.query(call_id))
            except (OSError, AssertionError):
                pass


def test_browser_and_sip_phone_hear_each_other_through_rtpengine(  # type: ignore[no-untyped-def]
        driver: Path, media_server: Server, media_rtpengines: list[RtpEngineServer], sipp_media: Sipp,
        tmp_path: Path) -> None:
    peer_port = CONTACT_PORTS["asterisk"]
    sipp_media.assert_ok(sipp_media.register("asterisk"))
    uas = sipp_media.uas("media/uas_echo.xml", peer_port, keys={"me": "asterisk", "sdp_addr": PROXY_HOST},
                         extra=("-rtp_echo",), timeout_s=60)
    spec = {"scenario": "call", "outDir": str(tmp_path), "stepTimeoutMs": 15000, "holdMs": HOLD_MS,
            "mediaStats": True, "callee": None, "target": "sip:conference@sip.local",
            "caller": {"name": "1001", "uri": "sip:1001@sip.local", "password": MEDIA.passwords["1001"],
                       "wsUrl": f"ws://{PROXY_HOST}:{MEDIA.ws_port}"}}
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    process = subprocess.Popen(["node", str(driver), str(spec_path)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=HERE, text=True,
                               start_new_session=True)
    seen: dict[str, dict[str, int]] = {}
    deadline = time.monotonic() + DRIVER_TIMEOUT_S
    while process.poll() is None and time.monotonic() < deadline:
        sample(media_rtpengines, seen)  # while the call lasts: RTPEngine's own view of the relayed packets
        time.sleep(0.25)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    output = process.communicate()[0]
    answered = uas.result(timeout=20)

    result_path = tmp_path / "result.json"
    assert result_path.exists(), f"the driver wrote no result:\n{output}\n{media_server.log_tail()}"
    result: dict[str, Any] = json.loads(result_path.read_text())

    def events(kind: str) -> list[dict[str, Any]]:
        return [e for e in result["events"] if e["agent"] == "1001" and e["type"] == kind]

    report = (f"--- driver: {output}\n--- result: {json.dumps(result)[:4000]}\n{answered.report()}\n"
              f"--- routr-ray log:\n{media_server.log_tail(40)}\n--- RTPEngine seen: {seen}\n"
              + "".join(f"--- RTPEngine {e.addr} log:\n{e.log_tail(60)}\n" for e in media_rtpengines))
    assert result.get("error") is None, report
    sipp_media.assert_ok(answered)

    (invite,) = answered.received("INVITE")
    offer = invite.split("v=0", 1)[1]
    media = re.search(r"^m=audio (\d+) (\S+)", offer, re.MULTILINE)
    assert media and media.group(2) == "RTP/AVP", invite  # plain RTP toward the SIP phone
    assert any(low <= int(media.group(1)) <= high for _, low, high in MEDIA_RTPENGINES), invite
    assert re.search(r"^c=IN IP4 127\.0\.0\.1", offer, re.MULTILINE), invite
    assert "a=ice-ufrag" not in offer and "a=fingerprint" not in offer and "a=candidate" not in offer, invite

    (accepted,) = events("accepted")
    answer = accepted["response"].split("v=0", 1)[1]
    media = re.search(r"^m=audio (\d+) UDP/TLS/RTP/SAVPF ", answer, re.MULTILINE)
    assert media, answer  # DTLS-SRTP toward the browser
    port = int(media.group(1))
    assert any(low <= port <= high for _, low, high in MEDIA_RTPENGINES), answer
    assert "a=fingerprint:sha-256" in answer and "a=ice-ufrag:" in answer and "a=rtcp-mux" in answer, answer
    candidates = re.findall(r"^a=candidate:\S+ 1 UDP \d+ (\S+) (\d+) typ host", answer, re.MULTILINE)
    assert candidates == [("127.0.0.1", str(port))], answer  # RTPEngine is the only candidate

    call_id = re.search(r"^Call-ID:\s*(\S+)", invite, re.MULTILINE | re.IGNORECASE).group(1)  # type: ignore[union-attr]
    assert call_id in seen, report
    assert len(seen[call_id]) == 2 and all(n >= 25 for n in seen[call_id].values()), report  # >= 0.5 s each way
    (stats,) = events("mediaStats")
    assert stats["dtlsState"] == "connected" and stats["inboundPackets"] >= 25, stats  # the echo reached the page
    assert stats["pair"].startswith(f"127.0.0.1:{port} "), stats
    for server in media_rtpengines:
        assert call_id not in server.calls(), "the BYE deletes the call"
    print(f"relayed in {HOLD_MS} ms: RTPEngine packets received per party {seen[call_id]}; browser getStats {stats}")
    (ended,) = events("ended")
    assert ended["originator"] == "local" and ended["cause"] == "Terminated", report
