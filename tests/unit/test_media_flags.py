"""The ng parameters per direction (routr_ray/media/flags.py) and what is read from an SDP (sdp.py)."""

from __future__ import annotations

import pytest

from routr_ray.media.flags import Leg, Side, leg_of_transport, ng_parameters
from routr_ray.media.sdp import is_private_address, is_sdp, summarize

PLAIN = ("v=0\r\no=- 1 1 IN IP4 {a}\r\ns=-\r\nc=IN IP4 {a}\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 8\r\n"
         "a=rtpmap:0 PCMU/8000\r\n")
BROWSER = ("v=0\r\no=- 46 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
           "m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r\nc=IN IP4 0.0.0.0\r\na=ice-ufrag:abcd\r\na=ice-pwd:x\r\n"
           "a=fingerprint:sha-256 AA:BB\r\na=setup:actpass\r\na=mid:0\r\na=rtcp-mux\r\n")


def side(transport: str, source: str, body: str) -> Side:
    return Side(transport, source, summarize(body))


def test_legs_by_transport() -> None:
    assert leg_of_transport("WSS") is Leg.WEBRTC and leg_of_transport("ws") is Leg.WEBRTC
    for transport in ("UDP", "TCP", "TLS", "SCTP", ""):
        assert leg_of_transport(transport) is Leg.PLAIN


def test_sdp_summary() -> None:
    plain = summarize(PLAIN.format(a="10.0.0.5"))
    assert plain.addresses == ("10.0.0.5",) and plain.protocols == ("RTP/AVP",) and not plain.webrtc
    browser = summarize(BROWSER)
    assert browser.webrtc and browser.ice and browser.dtls and browser.addresses == ("0.0.0.0",)
    assert summarize("v=0\r\nc=IN IP4 224.2.1.1/127/3\r\nm=audio 1 RTP/AVP 0\r\n").addresses == ("224.2.1.1",)
    assert summarize("garbage\r\nc=IN\r\nm=\r\n").addresses == ()


@pytest.mark.parametrize(("content_type", "body", "expected"), [
    ("application/sdp", "v=0\r\n", True), ("Application/SDP; charset=x", "v=0", True),
    ("application/sdp", "  ", False), ("text/plain", "v=0", False), (None, "v=0\r\n", True), (None, "hello", False),
    ("multipart/mixed;boundary=x", "--x", False)])
def test_what_is_an_sdp_body(content_type: str | None, body: str, expected: bool) -> None:
    assert is_sdp(content_type, body) is expected


@pytest.mark.parametrize(("address", "private"), [
    ("10.1.2.3", True), ("172.20.0.1", True), ("192.168.1.20", True), ("100.64.0.9", True), ("169.254.1.1", True),
    ("fd00::1", True), ("fe80::1", True), ("[fd00::1]", True),
    ("203.0.113.5", False), ("127.0.0.1", False), ("0.0.0.0", False), ("2001:db8::1", False), ("host.example", False)])
def test_private_addresses(address: str, private: bool) -> None:
    assert is_private_address(address) is private


def test_a_phone_behind_nat_gets_the_sip_source_address() -> None:
    params = ng_parameters(side("UDP", "203.0.113.7", PLAIN.format(a="192.168.1.20")), Leg.PLAIN)
    assert params["flags"] == ["SIP-source-address"]
    assert params["received-from"] == ["IP4", "203.0.113.7"]
    assert params["replace"] == ["origin", "session-connection"]
    v6 = ng_parameters(side("UDP", "[2001:db8::7]", PLAIN.format(a="10.0.0.5")), Leg.PLAIN)
    assert v6["received-from"] == ["IP6", "2001:db8::7"]


@pytest.mark.parametrize(("source", "sdp_address"), [
    ("192.168.1.20", "192.168.1.20"),  # a phone on the server's LAN: reachable as written
    ("203.0.113.7", "198.51.100.9"),  # a public media address other than the signalling one (a carrier)
    ("203.0.113.7", "0.0.0.0"),  # hold
])
def test_reachable_addresses_are_trusted(source: str, sdp_address: str) -> None:
    params = ng_parameters(side("UDP", source, PLAIN.format(a=sdp_address)), Leg.PLAIN)
    assert params["flags"] == ["trust-address"] and "received-from" not in params


def test_toward_a_browser_dtls_srtp_over_ice_with_rtpengine_as_the_only_candidate() -> None:
    params = ng_parameters(side("UDP", "203.0.113.7", PLAIN.format(a="192.168.1.20")), Leg.WEBRTC)
    assert params["transport-protocol"] == "UDP/TLS/RTP/SAVPF"
    assert params["ICE"] == "force" and params["DTLS"] == "passive" and params["SDES"] == ["off"]
    assert params["rtcp-mux"] == ["require"] and "generate-mid" in params["flags"]
    assert "SIP-source-address" in params["flags"]  # the NAT-ed phone is still handled on its side


def test_toward_a_phone_or_trunk_plain_rtp_without_ice_or_encryption() -> None:
    params = ng_parameters(side("WSS", "203.0.113.7", BROWSER), Leg.PLAIN)
    assert params["transport-protocol"] == "RTP/AVP"
    assert params["ICE"] == "remove" and params["DTLS"] == "off" and params["SDES"] == ["off"]
    assert params["rtcp-mux"] == ["demux"]
    # a browser's SDP: ICE finds the path (never the SIP source), and RTPEngine waits for its DTLS handshake
    assert params["flags"] == ["trust-address"] and params["DTLS-reverse"] == "passive"


def test_a_webrtc_sdp_over_a_plain_transport_is_still_webrtc() -> None:
    gateway = side("UDP", "10.9.9.9", BROWSER.replace("0.0.0.0", "10.0.0.5"))
    assert gateway.webrtc and not gateway.behind_nat
    assert ng_parameters(gateway, Leg.PLAIN)["DTLS-reverse"] == "passive"
    assert "DTLS-reverse" not in ng_parameters(side("UDP", "10.9.9.9", PLAIN.format(a="10.9.9.9")), Leg.PLAIN)
