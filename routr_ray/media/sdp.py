"""What the media relay reads in an SDP body (RFC 8866): connection addresses, media protocols, ICE and DTLS.

Only reads; RTPEngine rewrites. Pure and stdlib-only; anything unreadable is skipped (an SDP RTPEngine cannot
parse is refused by RTPEngine, with its reason).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

__all__ = ["SdpSummary", "is_sdp", "is_private_address", "summarize"]

WEBRTC_PROTOCOLS = ("UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP", "TCP/TLS/RTP/SAVPF")
_NOT_PUBLIC = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",  # RFC 1918
    "100.64.0.0/10",  # RFC 6598 carrier-grade NAT
    "169.254.0.0/16", "fe80::/10",  # link-local
    "fc00::/7",  # RFC 4193 unique local
))


@dataclass(frozen=True)
class SdpSummary:
    addresses: tuple[str, ...]  # every c= address (session and media level), in order, without duplicates
    protocols: tuple[str, ...]  # the proto of every m= line
    ice: bool  # a=ice-ufrag anywhere
    dtls: bool  # a=fingerprint anywhere

    @property
    def webrtc(self) -> bool:
        """A WebRTC offer or answer: DTLS-SRTP over ICE (RFC 8829 §5.1.1 / RFC 8842)."""
        return any(p.upper() in WEBRTC_PROTOCOLS for p in self.protocols) or (self.ice and self.dtls)


def is_sdp(content_type: str | None, body: str) -> bool:
    """``application/sdp`` (RFC 3261 §13.2.1), or a body that starts like one when Content-Type is missing."""
    if content_type:
        return content_type.split(";", 1)[0].strip().lower() == "application/sdp" and bool(body.strip())
    return body.lstrip().startswith("v=0")


def summarize(body: str) -> SdpSummary:
    addresses: list[str] = []
    protocols: list[str] = []
    ice = dtls = False
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith("c="):
            parts = line[2:].split()
            if len(parts) >= 3:
                address = parts[2].split("/", 1)[0]  # multicast TTL/count
                if address not in addresses:
                    addresses.append(address)
        elif line.startswith("m="):
            parts = line[2:].split()
            if len(parts) >= 3:
                protocols.append(parts[2])
        elif line.startswith("a=ice-ufrag:"):
            ice = True
        elif line.startswith("a=fingerprint:"):
            dtls = True
    return SdpSummary(tuple(addresses), tuple(protocols), ice, dtls)


def is_private_address(text: str) -> bool:
    """A literal address that cannot be reached from the Internet (RFC 1918, RFC 6598, link-local, ULA); names
    and unparsable text are not."""
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return any(address in network for network in _NOT_PUBLIC if network.version == address.version)
