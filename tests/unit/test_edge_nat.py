"""Via received/rport (RFC 3261 §18.2.1, RFC 3581 §4), response addresses and the EdgePort's own addresses."""

from __future__ import annotations

from routr_ray.edge.nat import (
    LocalAddresses,
    apply_received_rport,
    default_port,
    is_ip_literal,
    response_address,
)
from routr_ray.edge.transports import Flow, TransportName
from routr_ray.sip import Request, parse


def req(via: str) -> Request:
    msg = parse(
        (
            f"OPTIONS sip:bob@example.com SIP/2.0\r\nVia: {via}\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bKlower\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: n1\r\nCSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
    )
    assert isinstance(msg, Request)
    return msg


FLOW = Flow(TransportName.UDP, "203.0.113.7", 40000, "192.0.2.1", 5060)


def test_received_added_when_the_source_differs_from_sent_by() -> None:
    request = req("SIP/2.0/UDP 10.1.1.1:5060;branch=z9hG4bK1")
    via = apply_received_rport(request, FLOW)
    assert via is not None and via.params["received"] == "203.0.113.7" and "rport" not in via.params
    assert "received=203.0.113.7" in bytes(request).decode()
    assert request.via[1].params.get("received") is None  # only the top Via


def test_nothing_changes_when_sent_by_is_the_source_and_no_rport() -> None:
    request = req("SIP/2.0/UDP 203.0.113.7:40000;branch=z9hG4bK1")
    before = bytes(request)
    via = apply_received_rport(request, FLOW)
    assert via is not None and "received" not in via.params
    assert bytes(request) == before


def test_rport_filled_and_received_added_even_when_the_host_matches() -> None:
    request = req("SIP/2.0/UDP 203.0.113.7:5060;rport;branch=z9hG4bK1")
    via = apply_received_rport(request, FLOW)
    assert via is not None and via.params["rport"] == "40000" and via.params["received"] == "203.0.113.7"


def test_ipv6_sent_by_in_brackets_matches_the_source() -> None:
    flow = Flow(TransportName.UDP, "2001:db8::7", 5060, "::", 5060)
    via = apply_received_rport(req("SIP/2.0/UDP [2001:DB8::7]:5060;branch=z9hG4bK1"), flow)
    assert via is not None and "received" not in via.params


def test_response_address_prefers_received_and_rport() -> None:
    request = req("SIP/2.0/UDP 10.1.1.1:5070;rport;branch=z9hG4bK1")
    via = apply_received_rport(request, FLOW)
    assert via is not None and response_address(via) == ("203.0.113.7", 40000)
    plain = req("SIP/2.0/UDP 10.1.1.1;branch=z9hG4bK1").top_via
    assert plain is not None and response_address(plain) == ("10.1.1.1", 5060)
    tls = req("SIP/2.0/TLS 10.1.1.1;branch=z9hG4bK1").top_via
    assert tls is not None and response_address(tls) == ("10.1.1.1", 5061)


def test_default_ports() -> None:
    assert [default_port(t) for t in ("udp", "TCP", "TLS", "ws", "WSS")] == [5060, 5060, 5061, 5060, 5061]


def test_local_addresses_know_listening_points_externals_and_localnets() -> None:
    local = LocalAddresses.build(
        [("192.0.2.1", 5060, "udp"), ("192.0.2.1", 5061, "tls")],
        external_addrs=["198.51.100.10"],
        localnets=["10.0.0.5/8"],
    )
    assert local.is_own("192.0.2.1", 5060) and local.is_own("192.0.2.1", None)
    assert not local.is_own("192.0.2.1", 5070)
    assert local.is_own("198.51.100.10", 5061) and local.is_own_host("10.0.0.5")
    assert not local.is_own_host("127.0.0.1")
    assert ("192.0.2.1", 5061, "TLS") in local.points


def test_wildcard_listeners_answer_to_loopback_names() -> None:
    local = LocalAddresses.build([("0.0.0.0", 5060, "udp")])
    assert local.is_own("127.0.0.1", 5060) and local.is_own("localhost", None) and local.is_own("[::1]", 5060)
    assert not local.is_own_host("0.0.0.0")


def test_is_ip_literal() -> None:
    assert is_ip_literal("127.0.0.1") and is_ip_literal("[::1]") and not is_ip_literal("localhost")


def test_a_received_written_by_the_client_is_replaced_by_the_source() -> None:
    # sent-by matches the source and no rport: the client's own received= must not survive (a reflection)
    request = req("SIP/2.0/UDP 203.0.113.7:40000;received=198.51.100.99;branch=z9hG4bK1")
    via = apply_received_rport(request, FLOW)
    assert via is not None and via.params["received"] == "203.0.113.7"
    assert response_address(via) == ("203.0.113.7", 40000)
    assert "198.51.100.99" not in bytes(request).decode()


def test_an_rport_value_written_by_the_client_is_replaced_by_the_source_port() -> None:
    request = req("SIP/2.0/UDP 203.0.113.7:40000;rport=9999;received=198.51.100.99;branch=z9hG4bK1")
    via = apply_received_rport(request, FLOW)
    assert via is not None and (via.params["received"], via.params["rport"]) == ("203.0.113.7", "40000")
    assert response_address(via) == ("203.0.113.7", 40000)
