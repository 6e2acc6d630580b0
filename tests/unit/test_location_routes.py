"""Binding identity (routes.route_id) and the Contact URI key it uses."""

from __future__ import annotations

import pytest

from routr_ray.location.routes import address_id, canonical_contact, route_id
from routr_ray.proto.gen import common_pb2, location_pb2

Route = location_pb2.Route


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("sip:1001@10.0.0.5:5060", "<sip:1001@10.0.0.5:5060>"),
        ("SIP:1001@PC.Example", "sip:1001@pc.example"),
        ("sip:%31001@pc", "sip:1001@pc"),  # escapes decoded in the user part
        ("sip:1001@pc;transport=UDP;user=phone", "sip:1001@pc;user=phone;transport=udp"),
        ("sip:1001@pc;ob;rinstance=abc", "sip:1001@pc"),  # other parameters do not take part
        ("sip:1001:secret@pc", "sip:1001@pc"),
        ("sip:1001@[2001:DB8::0001]:5060", "sip:1001@[2001:db8::1]:5060"),
        ("sip:1001@pc?subject=x", "sip:1001@pc"),
    ],
)
def test_equivalent_contacts_share_a_key(left: str, right: str) -> None:
    assert canonical_contact(left) == canonical_contact(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ("sip:1001@pc", "sip:1001@pc:5060"),  # RFC 3261 §19.1.4: an explicit default port differs
        ("sip:1001@pc", "sip:1001@pc;transport=udp"),
        ("sip:alice@pc", "sip:ALICE@pc"),  # the user part is case-sensitive
        ("sip:1001@pc", "sips:1001@pc"),
        ("sip:1001@pc;maddr=10.0.0.1", "sip:1001@pc"),
    ],
)
def test_different_contacts_have_different_keys(left: str, right: str) -> None:
    assert canonical_contact(left) != canonical_contact(right)


def test_an_unparsable_contact_is_kept_verbatim() -> None:
    assert canonical_contact("  <not a uri>  ") == "not a uri"
    assert canonical_contact("sip:a%FF@h") == "sip:a%FF@h"  # not UTF-8 once decoded: left escaped


def test_route_id_prefers_outbound_then_contact_then_address() -> None:
    base = dict(host="10.0.0.5", port="5060", transport=common_pb2.TCP)
    assert route_id(Route(**base)) == "10.0.0.5|5060|1" == address_id(Route(**base))
    assert route_id(Route(**base, contact_uri="sip:a@pc")) == "ct:sip:a@pc"
    assert route_id(Route(**base, contact_uri="sip:a@pc", instance_id="<urn:uuid:AB>")) == "ct:sip:a@pc"
    assert route_id(Route(**base, contact_uri="sip:a@pc", instance_id="<urn:uuid:AB>", reg_id=2)) == (
        "ob:<urn:uuid:ab>|2"
    )
    assert route_id(Route(**base, instance_id="<urn:uuid:AB>", reg_id=1)) == "ob:<urn:uuid:ab>|1"


def test_identity_prefixes_cannot_collide_with_an_address_id() -> None:
    for host in ("c", "ct", "o", "ob", "::1", "c::1", "ct.example"):
        rid = route_id(Route(host=host, port="5060"))
        assert not rid.startswith(("ct:", "ob:")), rid
