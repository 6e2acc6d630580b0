"""The RTPEngine ng parameters of an offer or an answer, chosen per direction (docs/media.md "Flags").

An SDP passes RTPEngine on its way from one *side* (who wrote it) to one *leg* (who will read it):

* the leg decides what RTPEngine writes: a **WebRTC** leg (a browser on WS/WSS) gets DTLS-SRTP over ICE with
  RTPEngine as the only candidate (``UDP/TLS/RTP/SAVPF``, ``ICE=force``, ``DTLS=passive``: the browser starts the
  handshake, which also works behind its NAT; ``rtcp-mux=require``, ``generate mid`` for BUNDLE); a **plain** leg
  (a phone, a PBX, a trunk: UDP/TCP/TLS) gets ``RTP/AVP`` without ICE, DTLS or SDES (``rtcp-mux=demux``: RTCP on
  its own port again, which every phone understands).
* the side decides which address RTPEngine sends to: a plain side whose SDP names a private address that is not
  the address its SIP came from is **behind NAT** (the phone wrote its LAN address): RTPEngine uses the SIP
  source address instead (``SIP-source-address`` + ``received-from``) and then learns the real media port from the
  first packets (symmetric RTP, RTPEngine's default). Any other side is trusted (``trust-address``): a WebRTC side
  because ICE finds the path, a public or same-LAN address because it is reachable as written.
* a WebRTC side (its SDP offers DTLS) gets ``DTLS-reverse=passive``: RTPEngine waits for the browser's DTLS
  handshake instead of starting one as soon as ICE connects. Without it RTPEngine takes the client role as soon
  as the browser's offer arrives, the answer then tells the browser to be the client too (``DTLS=passive``), and
  the handshake never completes when ICE connects before the browser has the answer (seen on loopback).
* always ``replace: origin, session-connection``: the o= and c= lines name RTPEngine, not the party behind it.

The same table serves offers and answers: an answer goes back to the offerer's leg (RTPEngine keeps the protocol it
negotiated with each side, the flags only restate it).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum
from typing import Any

from routr_ray.media.sdp import SdpSummary, is_private_address

__all__ = ["Leg", "Side", "leg_of_transport", "ng_parameters"]

WEBRTC_TRANSPORTS = frozenset({"WS", "WSS"})


class Leg(Enum):
    WEBRTC = "webrtc"
    PLAIN = "plain"


def leg_of_transport(transport: str) -> Leg:
    """A signalling transport's leg: WS/WSS (RFC 7118) are browsers, everything else plain SIP."""
    return Leg.WEBRTC if transport.strip().upper() in WEBRTC_TRANSPORTS else Leg.PLAIN


@dataclass(frozen=True)
class Side:
    """Who wrote the SDP: the transport its SIP came over, the address it came from, what its SDP says."""

    transport: str
    source: str  # the SIP packet's source address
    sdp: SdpSummary

    @property
    def webrtc(self) -> bool:
        return leg_of_transport(self.transport) is Leg.WEBRTC or self.sdp.webrtc

    @property
    def behind_nat(self) -> bool:
        """A plain side whose SDP names a private address other than the one its SIP came from."""
        if self.webrtc:
            return False
        return any(is_private_address(a) and a != self.source for a in self.sdp.addresses)


def _family(address: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(address.strip("[]")).version == 6 else "IP4"
    except ValueError:
        return "IP4"


def ng_parameters(side: Side, leg: Leg) -> dict[str, Any]:
    """The ng keys (besides command, call-id, tags and sdp) for an SDP from ``side`` to ``leg``."""
    flags: list[str] = []
    params: dict[str, Any] = {"replace": ["origin", "session-connection"]}
    if side.behind_nat:
        flags.append("SIP-source-address")
        params["received-from"] = [_family(side.source), side.source.strip("[]")]
    else:
        flags.append("trust-address")
    if side.webrtc:
        params["DTLS-reverse"] = "passive"
    if leg is Leg.WEBRTC:
        params.update({
            "transport-protocol": "UDP/TLS/RTP/SAVPF",
            "ICE": "force",
            "DTLS": "passive",
            "SDES": ["off"],
            "rtcp-mux": ["require"],
        })
        flags.append("generate-mid")
    else:
        params.update({
            "transport-protocol": "RTP/AVP",
            "ICE": "remove",
            "DTLS": "off",
            "SDES": ["off"],
            "rtcp-mux": ["demux"],
        })
    params["flags"] = flags
    return params
