"""Alterations: pure functions over routr_ray.sip messages (routr.md §3.6, DESIGN §4)."""

from __future__ import annotations

from functools import partial

import pytest
from test_processor_support import VIA_1, message_request, sip_request

from routr_ray.processors.alterations import (
    Interface,
    NoInterface,
    OwnAddresses,
    TooManyHops,
    add_record_route,
    add_route,
    add_self_via,
    decrease_max_forwards,
    edge_interface,
    edge_interface_for,
    fix_invalid_contact,
    pipe,
    remove_authorization,
    remove_own_routes,
    remove_top_via,
    set_request_uri,
)
from routr_ray.proto.gen import common_pb2
from routr_ray.sip import Request, parse, parse_uri

LPS = [Interface("0.0.0.0", 5060, "UDP"), Interface("0.0.0.0", 5061, "TLS"), Interface("0.0.0.0", 5062, "WS")]


def request(method: str = "INVITE", extra: str = "", **kw: object) -> Request:
    msg = parse(sip_request(method, extra=extra, **kw))  # type: ignore[arg-type]
    assert isinstance(msg, Request)
    return msg


def test_decrease_max_forwards_is_pure_and_adds_70_when_absent() -> None:
    req = request()
    out = decrease_max_forwards(req)
    assert out.max_forwards == 69 and req.max_forwards == 70
    req.headers.remove("Max-Forwards")
    assert decrease_max_forwards(req).max_forwards == 70  # RFC 3261 §16.6 step 3
    req.headers.set("Max-Forwards", "0")
    with pytest.raises(TooManyHops):
        decrease_max_forwards(req)


def test_add_self_via_has_rport_and_no_branch() -> None:
    req = request()
    out = add_self_via(req, Interface("203.0.113.1", 5060, "UDP"))
    assert out.headers.get_all("Via")[0] == "SIP/2.0/UDP 203.0.113.1:5060;rport"
    top = out.via[0]
    assert top.branch is None and "rport" in top.params
    assert out.headers.get_all("Via")[1] == VIA_1
    assert len(req.via) == 2  # input unchanged
    v6 = add_self_via(req, Interface("2001:db8::1", 5062, "WS"))
    assert v6.headers.get_all("Via")[0] == "SIP/2.0/WS [2001:db8::1]:5062;rport"


def test_remove_top_via() -> None:
    req = request()
    out = remove_top_via(req)
    assert [v.transport for v in out.via] == ["TCP"] and len(req.via) == 2


@pytest.mark.parametrize(
    ("lps", "localnets", "external", "target", "transport", "expected"),
    [
        # inside a localnet, concrete listening point -> its own address
        ([Interface("10.0.0.1", 5060, "UDP")], ["10.0.0.0/8"], ["203.0.113.1"], "10.2.3.4", "UDP",
         Interface("10.0.0.1", 5060, "UDP")),
        # inside a localnet, wildcard listening point -> the localnet entry's address (Routr's convention)
        (LPS, ["10.0.0.1/8"], ["203.0.113.1"], "10.2.3.4", "UDP", Interface("10.0.0.1", 5060, "UDP")),
        # outside -> first external address, port/transport of the target transport's listening point
        (LPS, ["10.0.0.1/8"], ["203.0.113.1", "203.0.113.2"], "198.51.100.7", "ws",
         Interface("203.0.113.1", 5062, "WS")),
        # a domain name is never inside a localnet
        (LPS, ["10.0.0.1/8"], ["203.0.113.1"], "pbx.example.com", "TLS", Interface("203.0.113.1", 5061, "TLS")),
        # no NAT config: a concrete listening point is advertised as it is
        ([Interface("127.0.0.1", 5060, "UDP")], [], [], "127.0.0.1", "UDP", Interface("127.0.0.1", 5060, "UDP")),
        # IPv6 localnet
        ([Interface("::", 5060, "UDP")], ["fd00::1/64"], ["2001:db8::1"], "fd00::99", "UDP",
         Interface("fd00::1", 5060, "UDP")),
    ],
)
def test_edge_interface(lps, localnets, external, target, transport, expected) -> None:  # type: ignore[no-untyped-def]
    assert edge_interface(target, transport, listening_points=lps, localnets=localnets,
                          external_addrs=external) == expected


def test_edge_interface_errors() -> None:
    with pytest.raises(NoInterface, match="TCP"):
        edge_interface("10.2.3.4", "TCP", listening_points=LPS, localnets=["10.0.0.1/8"])


@pytest.mark.parametrize(
    ("localnets", "external", "target"),
    [
        (["10.0.0.1/8"], [], "198.51.100.7"),  # wildcard, outside every localnet, nothing external
        (["10.0.0.0/8"], ["203.0.113.1"], "10.2.3.4"),  # a local target on a network that names no address of ours
    ],
)
def test_edge_interface_leaves_the_wildcard_for_the_edgeport(localnets, external, target) -> None:  # type: ignore[no-untyped-def]
    """Issue 13: behind a wildcard listening point, where nothing names our address toward the target, the
    wildcard is advertised and the EdgePort that sends the request fills in its source address (edge/advertise.py)
    instead of the request failing with 500."""
    intf = edge_interface(target, "UDP", listening_points=LPS, localnets=localnets, external_addrs=external)
    assert intf == Interface("0.0.0.0", 5060, "UDP") and intf.is_wildcard


def test_a_wildcard_record_route_always_has_both_sides() -> None:
    """The EdgePort may find two different addresses toward the two sides: both entries are written (it merges
    them into one when they are the same)."""
    wildcard = Interface("0.0.0.0", 5060, "UDP")
    out = add_record_route(request(), wildcard, wildcard)
    assert out.headers.get_all("Record-Route") == ["<sip:0.0.0.0:5060;transport=udp;r2=on;lr>"] * 2


def test_edge_interface_for_reads_the_message_request() -> None:
    req = message_request(sip_request("INVITE"))  # lps 0.0.0.0 UDP/WS, localnet 10.0.0.1/8, external 203.0.113.1
    assert edge_interface_for(req, "10.9.9.9", common_pb2.WS) == Interface("10.0.0.1", 5062, "WS")
    assert edge_interface_for(req, "198.51.100.7", "UDP") == Interface("203.0.113.1", 5060, "UDP")


def test_record_route_single_when_both_sides_share_the_interface() -> None:
    req = request(extra="Record-Route: <sip:p1.example.com;lr>\r\n")
    same = Interface("203.0.113.1", 5060, "UDP")
    out = add_record_route(req, same, same)
    assert out.headers.get_all("Record-Route") == ["<sip:203.0.113.1:5060;transport=udp;lr>",
                                                   "<sip:p1.example.com;lr>"]
    assert req.headers.get_all("Record-Route") == ["<sip:p1.example.com;lr>"]


def test_record_route_double_with_r2_when_transport_or_network_changes() -> None:
    origin = Interface("203.0.113.1", 5060, "UDP")
    target = Interface("10.0.0.1", 5062, "WS")
    out = add_record_route(request(), origin, target)
    assert out.headers.get_all("Record-Route") == [
        "<sip:10.0.0.1:5062;transport=ws;r2=on;lr>",
        "<sip:203.0.113.1:5060;transport=udp;r2=on;lr>",
    ]
    uris = [na.uri for na in out.record_routes]
    assert all("lr" in u.params and u.params["r2"] == "on" for u in uris)


def test_remove_own_routes_only_the_leading_ones() -> None:
    own = OwnAddresses.build(LPS, ["10.0.0.1/8"], ["203.0.113.1"])
    routes = ("Route: <sip:203.0.113.1:5060;transport=udp;r2=on;lr>, <sip:10.0.0.1:5062;transport=ws;r2=on;lr>\r\n"
              "Route: <sip:proxy.example.com;lr>, <sip:203.0.113.1;lr>\r\n")
    req = request("BYE", extra=routes)
    out = remove_own_routes(req, own)
    assert out.headers.get_all("Route") == ["<sip:proxy.example.com;lr>", "<sip:203.0.113.1;lr>"]
    assert len(req.routes) == 4
    # our host but another port is not us; default port 5060 is
    assert not own.names_us(parse_uri("sip:203.0.113.1:5090;lr"))
    assert own.names_us(parse_uri("sip:203.0.113.1;lr"))
    assert own.names_us(parse_uri("sip:203.0.113.1:5062;transport=ws;lr"))
    assert not own.names_us(parse_uri("sip:203.0.113.1:5062;lr"))  # 5062 is our WS port, not UDP
    assert not own.names_us(parse_uri("sip:198.51.100.7:5060;lr"))
    own_req = OwnAddresses.of_request(message_request(sip_request("BYE")))
    assert own_req.names_us(parse_uri("sip:10.0.0.1:5060;lr"))


def test_set_request_uri_and_add_route() -> None:
    req = request()
    out = set_request_uri(req, "sip:1001@198.51.100.7:40000;transport=ws")
    assert out.uri == "sip:1001@198.51.100.7:40000;transport=ws" and out.request_uri.port == 40000
    assert req.uri == "sip:1001@sip.local"
    routed = add_route(req, "sip:10.0.0.2:5060;lr")
    assert routed.headers.get_all("Route") == ["<sip:10.0.0.2:5060;lr>"]


def test_remove_authorization_all_or_only_our_realms() -> None:
    extra = ('Authorization: Digest username="a", realm="sip.local", nonce="n", uri="sip:x", response="r"\r\n'
             'Proxy-Authorization: Digest username="a", realm="sip.local", nonce="n", uri="sip:x", response="r"\r\n'
             'Proxy-Authorization: Digest username="a", realm="carrier.net", nonce="m", uri="sip:x", response="s"\r\n')
    req = request(extra=extra)
    out = remove_authorization(req)
    assert "Authorization" not in out.headers and "Proxy-Authorization" not in out.headers
    assert "Authorization" in req.headers
    mine = remove_authorization(req, realms=["sip.local"])
    assert "Authorization" not in mine.headers
    left = mine.headers.get_all("Proxy-Authorization")
    assert len(left) == 1 and 'realm="carrier.net"' in left[0]


def test_fix_invalid_contact_from_via_received_rport_or_the_flow() -> None:
    via = "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKx;rport=53211;received=198.51.100.7"
    req = request("REGISTER", vias=(via,), extra="Contact: <sip:alice@df7jal23ls0d.invalid;transport=ws;ob>\r\n")
    out = fix_invalid_contact(req)
    contact = out.contacts[0]
    assert (contact.uri.host, contact.uri.port, contact.uri.params["transport"]) == ("198.51.100.7", 53211, "wss")
    assert "ob" in contact.uri.params
    assert req.contacts[0].uri.host == "df7jal23ls0d.invalid"
    flow = fix_invalid_contact(req, Interface("198.51.100.8", 6000, "WS")).contacts[0].uri
    assert (flow.host, flow.port, flow.params["transport"]) == ("198.51.100.8", 6000, "ws")
    normal = request("REGISTER", extra="Contact: <sip:alice@198.51.100.9:5060>\r\n")
    assert str(fix_invalid_contact(normal).contacts[0]) == "<sip:alice@198.51.100.9:5060>"


def test_pipe_composes_in_order() -> None:
    req = request()
    intf = Interface("203.0.113.1", 5060, "UDP")
    out = pipe(req, decrease_max_forwards, partial(add_self_via, intf=intf), remove_authorization)
    assert out.max_forwards == 69 and out.via[0].host == "203.0.113.1"
    assert req.max_forwards == 70 and len(req.via) == 2
