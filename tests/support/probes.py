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


def options_ping(port: int, timeout: float = 1.0) -> bytes | None:
    """OPTIONS sip:127.0.0.1:<port> (no user part: the EdgePort answers it itself) from a fresh source port;
    the raw reply, or None after ``timeout``."""
    branch = "z9hG4bK" + uuid.uuid4().hex[:12]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        local = s.getsockname()[1]
        message = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
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
