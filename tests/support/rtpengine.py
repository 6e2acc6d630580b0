"""A throw-away RTPEngine (Debian's ``rtpengine-daemon``, userspace forwarding only) on loopback, for tests.

Like ``tests/support/redis_server.py``: explicit ports, foreground, logs to a file, stop() and start() again keep
the same ports. Media ports come from below Linux's ephemeral range (32768-60999) and above the SIPp media
ports of the acceptance harness (20000-29000), so nothing the kernel hands out collides with them.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from routr_ray.media.bencode import decode, encode

RTPENGINE = shutil.which("rtpengine")
HINT = "these tests need Debian's rtpengine-daemon: scripts/install-test-deps (apt-get install -y rtpengine-daemon)"


class RtpEngineServer:
    """``rtpengine --foreground`` on ``host``: ng control on ``ng_port`` (UDP), media on ``port_min``-``port_max``."""

    def __init__(self, ng_port: int, port_min: int, port_max: int, *, host: str = "127.0.0.1",
                 delete_delay: int = 0, timeout: int = 60) -> None:
        self.host = host
        self.ng_port = ng_port
        self.port_min = port_min
        self.port_max = port_max
        self.delete_delay = delete_delay
        self.timeout = timeout
        self._dir = Path(tempfile.mkdtemp(prefix="routr-rtpengine-"))
        self.log_path = self._dir / "rtpengine.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._cookie = 0

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.ng_port}"

    def start(self) -> None:
        if RTPENGINE is None:
            raise RuntimeError(HINT)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [RTPENGINE, "--foreground", "--log-stderr", "--config-file=none", "--table=-1",
                 f"--interface={self.host}", f"--listen-ng={self.host}:{self.ng_port}",
                 f"--port-min={self.port_min}", f"--port-max={self.port_max}",
                 f"--delete-delay={self.delete_delay}", f"--timeout={self.timeout}", "--num-threads=2",
                 "--media-num-threads=1", "--log-level=6", f"--pidfile={self._dir / 'rtpengine.pid'}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.command({"command": "ping"}, timeout=0.2).get("result") == "pong":
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self._process.poll() is not None:
                raise RuntimeError(f"rtpengine did not start on {self.addr}:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)

    def log_tail(self, lines: int = 40, *, commands_only: bool = True) -> str:
        """The last ``lines`` of RTPEngine's log; without the tests' own ``list``/``query`` and the pings."""
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        kept = [line for line in text.splitlines()
                if not commands_only or not any(f"'{c}'" in line for c in ("list", "query", "ping"))]
        return "\n".join(kept[-lines:])

    def command(self, command: dict[str, Any], timeout: float = 2.0) -> dict[str, Any]:
        """One ng command, blocking (the tests' own look at RTPEngine: list, query, statistics)."""
        self._cookie += 1
        cookie = f"test{self._cookie}".encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.sendto(cookie + b" " + encode(command), (self.host, self.ng_port))
            while True:
                data, _ = sock.recvfrom(65535)
                got, _, body = data.partition(b" ")
                if got == cookie:
                    reply = decode(body)
                    assert isinstance(reply, dict)
                    return reply

    def calls(self) -> list[str]:
        """The Call-IDs RTPEngine holds (ng ``list``)."""
        return list(self.command({"command": "list", "limit": 1000}).get("calls", []))

    def query(self, call_id: str) -> dict[str, Any]:
        return self.command({"command": "query", "call-id": call_id})


def packets_by_tag(query: dict[str, Any]) -> dict[str, int]:
    """RTP packets RTPEngine received from each call party (by SIP tag), from a ``query`` reply: what each side
    sent through the relay."""
    out: dict[str, int] = {}
    for tag, party in (query.get("tags") or {}).items():
        total = 0
        for media in party.get("medias", []):
            for stream in media.get("streams", []):
                if "RTP" in stream.get("flags", []) or "RTCP" not in stream.get("flags", []):
                    total += int((stream.get("stats") or {}).get("packets", 0))
        out[tag] = total
    return out
