"""Small probes the cluster tests share: a free UDP port, an OPTIONS ping to an EdgePort, a Prometheus scrape."""

from __future__ import annotations

import socket
import urllib.request
import uuid

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def options_ping(port: int, timeout: float = 1.0, source: str = "127.0.0.1") -> bytes | None:
    """OPTIONS sip:127.0.0.1:<port> (no user part: the EdgePort answers it itself) from a fresh source port of
    ``source``; the raw reply, or None after ``timeout``."""
    branch = "z9hG4bK" + uuid.uuid4().hex[:12]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        local = s.getsockname()[1]
        message = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source}:{local};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={branch[-6:]}\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: {branch}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        s.settimeout(timeout)
        s.sendto(message, ("127.0.0.1", port))
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def scrape(url: str) -> Samples:
    body = urllib.request.urlopen(url, timeout=5).read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def metric_value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def _register(sock: socket.socket, target: tuple[str, int], user: str, domain: str, call_id: str, cseq: int,
              authorization: str | None) -> bytes:
    local_host, local_port = sock.getsockname()[:2]
    branch = "z9hG4bK" + uuid.uuid4().hex[:12]
    auth = f"Authorization: {authorization}\r\n" if authorization else ""
    message = (
        f"REGISTER sip:{domain} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {local_host}:{local_port};branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{user}@{domain}>;tag={call_id[:8]}\r\n"
        f"To: <sip:{user}@{domain}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} REGISTER\r\n"
        f"Contact: <sip:{user}@{local_host}:{local_port}>\r\n"
        f"{auth}"
        "Expires: 60\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    sock.sendto(message, target)
    return sock.recv(65535)


def register_with_digest(port: int, user: str = "1001", password: str = "1234", domain: str = "sip.local",
                         host: str = "127.0.0.1", timeout: float = 2.0) -> int | None:
    """REGISTER over UDP, answering a 401 challenge once (RFC 3261 §22.2); the final status (200 when it
    worked), or None when an answer did not come within ``timeout``."""
    from routr_ray.sip import Response, parse
    from routr_ray.sip.digest import answer_challenge

    call_id = uuid.uuid4().hex
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        s.settimeout(timeout)
        try:
            first = parse(_register(s, (host, port), user, domain, call_id, 1, None))
            assert isinstance(first, Response)
            if first.status != 401:
                return first.status
            challenge = first.headers.get("WWW-Authenticate") or ""
            authorization = answer_challenge(challenge, method="REGISTER", uri=f"sip:{domain}", username=user,
                                             password=password)
            if authorization is None:
                return first.status
            second = parse(_register(s, (host, port), user, domain, call_id, 2, authorization))
        except TimeoutError:
            return None
    assert isinstance(second, Response)
    return second.status
