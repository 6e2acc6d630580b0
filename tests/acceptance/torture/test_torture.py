"""Every RFC 4475 torture message (tests/data/rfc4475) sent to the running server over UDP and over TCP: the
server survives all of them and keeps serving, checked after each message by an OPTIONS the EdgePort answers
itself and a REGISTER that goes through the dispatcher to Connect (401 challenge), over the same transport.

The suite runs in a network namespace where 192.0.2.0/24 is on loopback, so nothing reaches the addresses these
messages name. Over UDP a reply goes to the source address and the sent-by port of the top Via (RFC 3261
§18.2.2; to the source port with rport): catchers on ports 5050/5060/5070 and the sending socket collect them, matched to the message by Call-ID. Requests RFC 4475
says to reject must never get a 2xx, and a 400 is never the answer to one it says to accept.
"""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.acceptance import PROXY_HOST, PROXY_PORT

TORTURE = Path(__file__).resolve().parents[2] / "data" / "rfc4475"
MESSAGES = json.loads((TORTURE / "index.json").read_text())["messages"]
CATCHER_PORTS = (5050, 5060, 5070)  # sent-by ports named in the torture Vias (5060 when none)
PROBE_TIMEOUT = 2.0
TCP_READ_WINDOW = 0.3  # how long a TCP torture connection is read before it is closed


@dataclass
class Outcome:
    file: str
    kind: str  # request / response
    parser: str  # accept / reject / ... (index.json)
    expected: str  # expected_behaviour (index.json)
    replies: list[str] = field(default_factory=list)  # status lines of replies seen

    def statuses(self) -> list[int]:
        return [int(line.split()[1]) for line in self.replies if re.match(r"SIP/2\.0 \d{3} ", line)]


def _call_id(data: bytes) -> str | None:
    match = re.search(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", data, flags=re.MULTILINE | re.IGNORECASE)
    return match.group(1).decode(errors="replace") if match else None


def _status_line(data: bytes) -> str:
    return data.split(b"\r\n", 1)[0].decode(errors="replace")


def _probe_requests(transport: str, local: tuple[str, int]) -> list[bytes]:
    """An OPTIONS to the proxy itself and a REGISTER for sip.local (answered 401 by Connect)."""
    host, port = local
    tag = uuid.uuid4().hex[:12]
    common = (f"Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK-{{kind}}-{tag};rport\r\n"
              f"Max-Forwards: 70\r\nCall-ID: probe-{{kind}}-{tag}\r\nContent-Length: 0\r\n")
    return [
        (f"OPTIONS sip:{PROXY_HOST}:{PROXY_PORT} SIP/2.0\r\n" + common.format(kind="options")
         + f"From: <sip:probe@sip.local>;tag={tag}\r\nTo: <sip:{PROXY_HOST}:{PROXY_PORT}>\r\n"
         "CSeq: 1 OPTIONS\r\n\r\n").encode(),
        ("REGISTER sip:sip.local SIP/2.0\r\n" + common.format(kind="register")
         + f"From: <sip:1001@sip.local>;tag={tag}\r\nTo: <sip:1001@sip.local>\r\n"
         f"Contact: <sip:1001@{host}:{port}>\r\nExpires: 0\r\nCSeq: 1 REGISTER\r\n\r\n").encode(),
    ]


EXPECTED_PROBE_STATUS = (200, 401)


def _probe_udp(after: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((PROXY_HOST, 0))
        sock.settimeout(PROBE_TIMEOUT)
        for request, expected in zip(_probe_requests("UDP", sock.getsockname()), EXPECTED_PROBE_STATUS, strict=True):
            sock.sendto(request, (PROXY_HOST, PROXY_PORT))
            _expect(lambda: sock.recvfrom(65535)[0], request, expected, after)


def _probe_tcp(after: str) -> None:
    with socket.create_connection((PROXY_HOST, PROXY_PORT), timeout=PROBE_TIMEOUT) as sock:
        buffer = bytearray()

        def read_one() -> bytes:
            while b"\r\n\r\n" not in buffer:
                chunk = sock.recv(65535)
                if not chunk:
                    raise ConnectionError("connection closed by the server")
                buffer.extend(chunk)
            head, _, _ = bytes(buffer).partition(b"\r\n\r\n")
            del buffer[: len(head) + 4]  # probe answers have no body
            return head

        for request, expected in zip(_probe_requests("TCP", sock.getsockname()), EXPECTED_PROBE_STATUS, strict=True):
            sock.sendall(request)
            _expect(read_one, request, expected, after)


def _expect(read, request: bytes, expected: int, after: str) -> None:  # type: ignore[no-untyped-def]
    method = request.split(b" ", 1)[0].decode()
    deadline = time.monotonic() + PROBE_TIMEOUT
    while True:
        try:
            data = read()
        except (TimeoutError, OSError) as exc:
            raise AssertionError(f"no answer to a {method} probe after {after}: {exc!r}") from exc
        if _call_id(data) != _call_id(request):
            continue  # a late answer to an earlier probe
        status = int(_status_line(data).split()[1])
        if status == 100 and time.monotonic() < deadline:
            continue
        assert status == expected, f"{method} probe after {after}: {_status_line(data)}"
        return


@contextmanager
def _catchers(wanted: bool) -> Iterator[list[socket.socket]]:
    sockets = []
    try:
        for port in CATCHER_PORTS if wanted else ():
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
            sock.setblocking(False)
            sockets.append(sock)
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def _drain(sockets: list[socket.socket], by_call_id: dict[str, Outcome]) -> None:
    for sock in sockets:
        while True:
            try:
                data = sock.recv(65535)
            except BlockingIOError:
                break
            outcome = by_call_id.get(_call_id(data) or "")
            if outcome is not None:
                outcome.replies.append(_status_line(data))


def _send_tcp(data: bytes) -> list[str]:
    """Write the message on a new connection, read what comes back until a final answer, the server closing
    the connection or a moment of silence, then close (RFC 3261 §18.2.2: answers come back on the connection)."""
    with socket.create_connection((PROXY_HOST, PROXY_PORT), timeout=PROBE_TIMEOUT) as sock:
        sock.sendall(data)
        sock.settimeout(TCP_READ_WINDOW)
        received = b""
        try:
            while chunk := sock.recv(65535):
                received += chunk
                if re.search(rb"SIP/2\.0 [2-6]\d\d [^\r\n]*\r\n", received):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
    return [head.decode(errors="replace") for head in re.findall(rb"SIP/2\.0 \d{3} [^\r\n]*", received)]


def _check(outcomes: list[Outcome]) -> None:
    table = "\n".join(f"  {o.file:15} {o.kind:8} {o.parser:32} {o.replies}" for o in outcomes)
    print(f"\nRFC 4475 outcomes:\n{table}")
    for outcome in outcomes:
        statuses = outcome.statuses()
        if outcome.kind == "response":
            assert not statuses, f"{outcome.file}: a stray response was answered: {outcome.replies}\n{table}"
        elif outcome.parser == "reject":
            assert not [s for s in statuses if 200 <= s < 300], f"{outcome.file}: accepted\n{table}"
        elif outcome.parser == "accept" and "400" not in outcome.expected:  # unksm2: a registrar's 400 is right
            assert 400 not in statuses, f"{outcome.file}: answered 400\n{table}"


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_server_survives_every_torture_message(routr_server, transport: str) -> None:  # type: ignore[no-untyped-def]
    outcomes = [Outcome(m["file"], m["message"], m["parser"], m["expected_behaviour"]) for m in MESSAGES]
    by_call_id: dict[str, Outcome] = {}  # a reply belongs to the last message sent with its Call-ID
    probe = _probe_udp if transport == "udp" else _probe_tcp
    probe("nothing")
    # over UDP answers go where the torture Via says (caught); over TCP they come back on the connection
    with _catchers(transport == "udp") as catchers, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.bind((PROXY_HOST, 0))
        sender.setblocking(False)
        catchers.append(sender)  # answers to a Via with rport come back to the source port
        for outcome in outcomes:
            data = (TORTURE / outcome.file).read_bytes()
            _drain(catchers, by_call_id)
            by_call_id[_call_id(data) or outcome.file] = outcome
            if transport == "udp":
                sender.sendto(data, (PROXY_HOST, PROXY_PORT))  # one datagram per file (dblreq relies on it)
            else:
                outcome.replies.extend(_send_tcp(data))
            probe(outcome.file)
            assert routr_server.process is None or routr_server.process.poll() is None, routr_server.log_tail()
            _drain(catchers, by_call_id)
        time.sleep(0.3)  # late replies (e.g. after a dispatcher hop)
        _drain(catchers, by_call_id)
    _check(outcomes)
