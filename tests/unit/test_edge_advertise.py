"""Issue 13 item 1: what a wildcard EdgePort advertises. The fill-in of the processor's wildcard Via/Record-Route
(edge/advertise.py), the routing table's source address (edge/source_address.py), the IP_PKTINFO ancillary data
(edge/transports/pktinfo.py), the host's networks (edge/host_networks.py), the default localnets and the SDK's
address toward the previous hop."""

from __future__ import annotations

import ipaddress
import socket

import pytest
from test_processor_support import message_request, sip_request

from routr_ray.config.values import PRIVATE_NETWORKS, to_localnets
from routr_ray.edge.advertise import fill_own_address, has_wildcard_via
from routr_ray.edge.host_networks import host_networks
from routr_ray.edge.nat import LocalAddresses, own_address_of
from routr_ray.edge.source_address import SourceAddresses
from routr_ray.edge.transports import pktinfo
from routr_ray.processors.alterations import Interface, OwnAddresses
from routr_ray.processors.sdk import Context
from routr_ray.proto.gen import common_pb2
from routr_ray.sip import Request, parse

WILD_VIA = "SIP/2.0/UDP 0.0.0.0:5060;rport"
RR_TARGET = "<sip:0.0.0.0:5060;transport=udp;r2=on;rrk=tok;lr>"
RR_ORIGIN = "<sip:0.0.0.0:5060;transport=udp;r2=on;rrk=tok;lr>"


def forwarded(*record_routes: str, via: str = WILD_VIA) -> Request:
    msg = parse(sip_request("INVITE", extra="".join(f"Record-Route: {rr}\r\n" for rr in record_routes)))
    assert isinstance(msg, Request)
    msg.headers.prepend("Via", via)
    return msg


def test_the_wildcard_via_and_both_record_route_entries_are_filled() -> None:
    msg = forwarded(RR_TARGET, RR_ORIGIN, "<sip:proxy.example.com;lr>")
    assert has_wildcard_via(msg)
    fill_own_address(msg, "192.0.2.1", "127.0.0.1")
    assert msg.top_via is not None and msg.top_via.host == "192.0.2.1" and msg.top_via.port == 5060
    assert not has_wildcard_via(msg)
    assert [str(na.uri) for na in msg.record_routes] == [
        "sip:192.0.2.1:5060;transport=udp;r2=on;rrk=tok;lr",
        "sip:127.0.0.1:5060;transport=udp;r2=on;rrk=tok;lr",
        "sip:proxy.example.com;lr",
    ]
    assert len(msg.via) == 3  # the caller's Vias are untouched


def test_two_entries_naming_the_same_address_become_one_without_r2() -> None:
    msg = forwarded(RR_TARGET, RR_ORIGIN)
    fill_own_address(msg, "10.0.0.5", "10.0.0.5")
    assert [str(na.uri) for na in msg.record_routes] == ["sip:10.0.0.5:5060;transport=udp;rrk=tok;lr"]


def test_an_ipv6_address_is_bracketed_and_a_concrete_entry_is_kept() -> None:
    msg = forwarded("<sip:203.0.113.1:5060;transport=udp;r2=on;lr>", RR_ORIGIN)  # external toward the target
    fill_own_address(msg, "2001:db8::1", "2001:db8::1")
    assert [str(na.uri) for na in msg.record_routes] == [
        "sip:203.0.113.1:5060;transport=udp;r2=on;lr", "sip:[2001:db8::1]:5060;transport=udp;r2=on;rrk=tok;lr"]
    assert msg.top_via is not None and str(msg.top_via).startswith("SIP/2.0/UDP [2001:db8::1]:5060;")


def test_nothing_changes_without_a_wildcard() -> None:
    msg = forwarded("<sip:198.51.100.1;lr>", via="SIP/2.0/UDP 198.51.100.1:5060;rport")
    before = bytes(msg)
    fill_own_address(msg, "192.0.2.1", "192.0.2.1")
    assert bytes(msg) == before


def test_the_routing_table_names_our_source_address_and_caches_it() -> None:
    now = [0.0]
    sources = SourceAddresses(ttl=10.0, clock=lambda: now[0])
    assert sources.toward("127.0.0.5") == "127.0.0.1"  # all of 127/8 is ours, 127.0.0.1 is the route's source
    assert sources.toward("127.0.0.1") is None  # an address of this host: the caller uses the arrival address
    assert sources.toward("not-an-ip") is None
    sources._cache["127.0.0.5"] = (5.0, "cached")
    assert sources.toward("127.0.0.5") == "cached"
    now[0] = 6.0  # expired: looked up again
    assert sources.toward("127.0.0.5") == "127.0.0.1"


def test_pktinfo_ancillary_data_round_trips() -> None:
    (level, kind, data), = pktinfo.source_ancillary(socket.AF_INET, "192.0.2.1")
    assert (level, kind) == (socket.IPPROTO_IP, pktinfo.IP_PKTINFO)
    assert pktinfo.destination_of([(level, kind, data[:4] + bytes(4) + socket.inet_aton("192.0.2.1"))]) == "192.0.2.1"
    (level, kind, data), = pktinfo.source_ancillary(socket.AF_INET6, "192.0.2.1")  # dual-stack: IPv4-mapped
    assert (level, kind) == (socket.IPPROTO_IPV6, pktinfo.IPV6_PKTINFO)
    assert pktinfo.destination_of([(level, kind, data)]) == "192.0.2.1"
    assert pktinfo.destination_of([]) is None


def test_host_networks_are_address_slash_prefix_loopback_last() -> None:
    entries = host_networks()
    assert entries, "every host has a loopback address"
    interfaces = [ipaddress.ip_interface(e) for e in entries]
    assert all(not i.ip.is_link_local for i in interfaces)
    loopback = [i.ip.is_loopback for i in interfaces]
    assert loopback == sorted(loopback)
    assert any(str(i) == "127.0.0.1/8" for i in interfaces)
    assert all(own_address_of(e) == str(i.ip) for e, i in zip(entries, interfaces, strict=True))


def test_localnets_default_to_the_private_ranges_and_keep_routr_host_bits() -> None:
    assert to_localnets(None) == PRIVATE_NETWORKS
    assert to_localnets([]) == ()
    assert to_localnets(["10.100.42.127/31", "10.0.0.0/8"]) == ("10.100.42.127/31", "10.0.0.0/8")
    # the defaults name no address of ours but loopback ::1 (a network of one: that address is ours)
    assert [own_address_of(text) for text in PRIVATE_NETWORKS] == [None] * 6 + ["::1"]


def test_local_addresses_take_only_the_addresses_a_localnet_names() -> None:
    local = LocalAddresses.build([("0.0.0.0", 5060, "UDP")], [], ["192.0.2.1/24", *PRIVATE_NETWORKS])
    assert local.is_own_host("192.0.2.1") and not local.is_own_host("10.0.0.0")


def _ctx(sender_host: str, received_on: str, external: tuple[str, ...] = ()) -> Context:
    req = message_request(sip_request("INVITE"), localnets=("192.0.2.1/24", *PRIVATE_NETWORKS),
                          external_addrs=external)
    req.sender.host = sender_host
    req.received_on.host, req.received_on.port, req.received_on.transport = received_on, 5060, common_pb2.UDP
    return Context(req)


def test_toward_the_previous_hop_the_address_the_request_arrived_on() -> None:
    # a caller on loopback that wrote to 127.0.0.5: not our first loopback address, but the one it reached
    assert _ctx("127.0.0.9", "127.0.0.5").origin_interface() == Interface("127.0.0.5", 5060, "UDP")


def test_toward_a_previous_hop_outside_the_localnets_the_external_address_wins() -> None:
    assert _ctx("198.51.100.7", "192.0.2.1", ("203.0.113.1",)).origin_interface() == Interface(
        "203.0.113.1", 5060, "UDP")


@pytest.mark.parametrize("host", ["127.0.0.5", "192.0.2.1"])
def test_the_arrival_address_names_us(host: str) -> None:
    own = OwnAddresses.of_request(_ctx("127.0.0.9", host).request)
    assert own.names_us(parse(sip_request("BYE", ruri=f"sip:{host}:5060")).request_uri)  # type: ignore[union-attr]
