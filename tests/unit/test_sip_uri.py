"""SIP/SIPS/TEL and opaque URIs (RFC 3261 §19.1, RFC 3966, RFC 5118)."""

from __future__ import annotations

import pytest

from routr_ray.sip import URI, ParseError, parse_uri, unescape


def test_full_sip_uri() -> None:
    u = parse_uri("sips:alice:secret@Example.COM:5061;transport=TLS;lr;maddr=10.0.0.1?Subject=hi&Priority=urgent")
    assert (u.scheme, u.user, u.password, u.host, u.port) == ("sips", "alice", "secret", "Example.COM", 5061)
    assert u.params == {"transport": "TLS", "lr": None, "maddr": "10.0.0.1"}
    assert u.headers == {"Subject": "hi", "Priority": "urgent"}
    assert u.transport == "tls" and u.is_secure and u.is_sip
    assert u.host_port() == "Example.COM:5061" and u.aor() == "sips:alice@example.com"
    assert str(u) == "sips:alice:secret@Example.COM:5061;transport=TLS;lr;maddr=10.0.0.1?Subject=hi&Priority=urgent"


@pytest.mark.parametrize(
    "text",
    [
        "sip:example.com",
        "sip:alice@192.0.2.1:5060",
        "sip:[2001:db8::10]:5070;lr",
        "sip:user@[::ffff:192.0.2.10]",
        "sip:%61lice@example.com;x=%41",
        "sip:+1-212-555-1212;phone-context=example.com@gw.example.com;user=phone",
        "tel:+1-201-555-0123",
        "tel:7042;phone-context=example.com",
        "urn:service:sos",
        "mailto:alice@example.com",
    ],
)
def test_round_trip(text: str) -> None:
    assert str(parse_uri(text)) == text


def test_ipv6() -> None:
    u = parse_uri("sip:[2001:db8::10]:5070")
    assert u.host == "2001:db8::10" and u.port == 5070 and u.host_port() == "[2001:db8::10]:5070"
    assert str(URI("sip", None, "::1", 5060)) == "sip:[::1]:5060"


def test_escapes_are_kept_raw_and_unescaped_once() -> None:
    u = parse_uri("sip:null-%00-null@example.com")
    assert u.user == "null-%00-null" and u.user_unescaped == "null-\x00-null"
    assert unescape("value%2541") == "value%41"


def test_opaque_and_tel() -> None:
    t = parse_uri("TEL:+1-201-555-0123;phone-context=x")
    assert t.scheme == "tel" and t.opaque == "+1-201-555-0123" and t.host == "" and t.user is None
    o = parse_uri("http://www.example.com/x")
    assert o.scheme == "http" and o.opaque == "//www.example.com/x" and not o.is_sip


@pytest.mark.parametrize(
    "text",
    [
        "", "sip", "sip:", ":x", "1sip:a@b", "sip:2001:db8::10", "sip:[2001:db8:::1]", "sip:[::1",
        "sip:a@b:99999", "sip:a@b:x", "sip:a b@c", "sip:a@b;=x", "sip:a@b?x",
        "sip:a@b?=1", "sip:%zz@b", "sip:a@", "sip:a@b c", "tel:", "tel:+1 2", "<sip:a@b>",
        "sip:a@b;p=v w", "http:a b",
    ],
)
def test_invalid(text: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_uri(text)
    assert info.value.status == 400


def test_empty_parameters_are_accepted_as_kamailio_does() -> None:
    """Issue 13 item 5: SIPp scenarios send ``;transport=``; an empty value names nothing, an empty piece is
    skipped, and the URI text is what was received."""
    u = parse_uri("sip:1002@127.0.0.1:5099;transport=")
    assert u.params == {"transport": ""} and u.transport is None and str(u) == "sip:1002@127.0.0.1:5099;transport="
    assert parse_uri("sip:a@b;").params == {}
    assert parse_uri("sip:a@b;;lr;").params == {"lr": None}
    assert parse_uri("sip:a@b;maddr=;foo").params == {"maddr": "", "foo": None}
    assert parse_uri("tel:+123;phone-context=").params == {"phone-context": ""}


def test_copy_is_independent() -> None:
    u = parse_uri("sip:a@b;lr")
    c = u.copy()
    c.params["transport"] = "tcp"
    assert u.params == {"lr": None} and c == parse_uri("sip:a@b;lr;transport=tcp")
