"""Parsing, serialization, the Headers model and the typed views of routr_ray.sip."""

from __future__ import annotations

import pytest

from routr_ray.sip import (
    URI,
    CSeq,
    Headers,
    NameAddr,
    ParseError,
    Request,
    Response,
    Via,
    parse,
    parse_name_addr,
    parse_params,
    parse_uri,
    parse_via,
    split_list,
)

REGISTER = (
    b"REGISTER sip:sip.local SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-1;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'Contact: <sip:1001@192.168.1.10:5060;transport=udp>;expires=600;+sip.instance="<urn:uuid:1>"\r\n'
    b'To: "1001" <sip:1001@sip.local>\r\n'
    b"From: <sip:1001@sip.local>;tag=abc\r\n"
    b"Call-ID: call-1@host\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Expires: 600\r\n"
    b"X-Custom:   keep   this  \r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def _request(extra: bytes = b"", method: bytes = b"OPTIONS", body: bytes = b"", cl: bool = True) -> bytes:
    head = (
        method + b" sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP host.example.com;branch=z9hG4bK-x\r\n"
        b"From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c1\r\n"
        b"CSeq: 1 " + method + b"\r\n" + extra
    )
    if cl:
        head += b"Content-Length: " + str(len(body)).encode() + b"\r\n"
    return head + b"\r\n" + body


def test_parse_register_views() -> None:
    m = parse(REGISTER)
    assert isinstance(m, Request) and m.is_request
    assert m.method == "REGISTER" and m.uri == "sip:sip.local" and m.version == "SIP/2.0"
    assert m.request_uri.host == "sip.local"
    (via,) = m.via
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", "UDP", "192.168.1.10", 5060)
    assert via.branch == "z9hG4bK-1" and via.params["rport"] is None and "rport" in via.params
    assert m.from_ is not None and m.from_.tag == "abc" and m.from_.uri.user == "1001"
    assert m.to is not None and m.to.display_name == "1001" and m.to.tag is None
    assert m.call_id == "call-1@host"
    assert m.cseq == CSeq(2, "REGISTER")
    assert m.max_forwards == 70 and m.expires == 600 and m.content_length == 0
    (contact,) = m.contacts
    assert contact.uri.transport == "udp" and contact.params["expires"] == "600"
    assert contact.params["+sip.instance"] == '"<urn:uuid:1>"'
    assert m.headers.get("x-custom") == "keep   this"
    assert bytes(m) == REGISTER


def test_response_parse_and_serialize() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 5 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    r = parse(data)
    assert isinstance(r, Response) and not r.is_request
    assert (r.status, r.reason) == (180, "Ringing")
    assert bytes(r) == data
    r.reason = "Ringing Now"
    assert bytes(r).startswith(b"SIP/2.0 180 Ringing Now\r\n")


def test_compact_forms_and_case_insensitive_lookup() -> None:
    data = (
        b"INVITE sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/TCP h1;branch=z9hG4bK1\r\n"
        b"VIA: SIP/2.0/UDP h2;branch=z9hG4bK2, SIP/2.0/UDP h3;branch=z9hG4bK3\r\n"
        b"f: <sip:a@example.com>;tag=1\r\nt: sip:bob@example.com\r\ni: cid\r\n"
        b"CSeq: 1 INVITE\r\nm: <sip:a@h1>, <sip:a@h2>\r\nk: path, outbound\r\nK: gruu\r\n"
        b"c: application/sdp\r\ns: hi\r\ne: gzip\r\nl: 4\r\n\r\nbody"
    )
    m = parse(data)
    assert [v.host for v in m.via] == ["h1", "h2", "h3"]
    assert m.headers.get("Via") == "SIP/2.0/TCP h1;branch=z9hG4bK1"
    assert m.headers.get("v") == m.headers.get("VIA")
    assert m.headers.get_all("Supported") == ["path", "outbound", "gruu"]
    assert m.headers.get("Content-Type") == "application/sdp" and m.content_type == "application/sdp"
    assert m.headers.get("subject") == "hi" and m.headers.get("Content-Encoding") == "gzip"
    assert m.call_id == "cid" and len(m.contacts) == 2 and m.body == b"body"
    assert "call-id" in m.headers and "I" in m.headers and "Route" not in m.headers
    assert m.headers.items()[0] == ("v", "SIP/2.0/TCP h1;branch=z9hG4bK1")


def test_folding_is_unfolded_in_values_but_kept_on_the_wire() -> None:
    data = _request(b"Subject: first\r\n  second\r\n\tthird\r\n")
    m = parse(data)
    assert m.headers.get("Subject") == "first second third"
    assert bytes(m) == data
    m.headers.add("X-New", "1")  # forces a rebuild; the untouched folded header keeps its bytes
    assert b"Subject: first\r\n  second\r\n\tthird\r\n" in bytes(m)


def test_unknown_headers_order_and_body_survive_modification() -> None:
    body = b"\x00\x01binary\r\n\r\nstill body"
    data = _request(b"X-B: 2\r\nX-A: 1\r\nX-B: 3\r\nweird-Name!: ;;,,\r\n", method=b"MESSAGE", body=body)
    m = parse(data)
    m.headers.prepend("Via", "SIP/2.0/UDP proxy;branch=z9hG4bKp")
    out = bytes(m)
    assert out.startswith(b"MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP proxy;branch=z9hG4bKp\r\n")
    assert b"X-B: 2\r\nX-A: 1\r\nX-B: 3\r\nweird-Name!: ;;,,\r\n" in out
    assert out.endswith(b"\r\n\r\n" + body)
    again = parse(out)
    assert [v.host for v in again.via] == ["proxy", "host.example.com"]
    assert again.headers.get_all("X-B") == ["2", "3"]


def test_headers_api() -> None:
    h = Headers([("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"), ("Route", "<sip:r1;lr>")])
    h.add("Route", "<sip:r2;lr>, <sip:r3;lr>")
    assert h.get_all("route") == ["<sip:r1;lr>", "<sip:r2;lr>", "<sip:r3;lr>"]
    assert h.remove_first_value("Route") == "<sip:r1;lr>"
    assert h.get_all("Route") == ["<sip:r2;lr>", "<sip:r3;lr>"]
    assert h.remove_first_value("v") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert h.items()[0] == ("Via", "SIP/2.0/UDP b;branch=z9hG4bK2")
    h.prepend("Via", "SIP/2.0/TCP c;branch=z9hG4bK3")
    assert h.get("via") == "SIP/2.0/TCP c;branch=z9hG4bK3"
    h.prepend("Record-Route", "<sip:p;lr>")  # no such header yet: goes on top
    assert h.items()[0] == ("Record-Route", "<sip:p;lr>")
    h.set("route", "<sip:only;lr>")
    assert h.get_all("Route") == ["<sip:only;lr>"] and h.count("Route") == 1
    assert h.remove("Route") == 1 and h.remove("Route") == 0 and "Route" not in h
    assert h.remove_first_value("Route") is None
    assert h.replace_first_value("Via", "SIP/2.0/TCP c;branch=z9hG4bK3;received=1.2.3.4")
    assert h.get("Via") == "SIP/2.0/TCP c;branch=z9hG4bK3;received=1.2.3.4"
    assert not h.replace_first_value("Route", "x")
    h.add("Subject", "a, b")  # not a list header: commas are not separators
    assert h.get_all("Subject") == ["a, b"]


def test_quoted_commas_do_not_split_list_values() -> None:
    values = split_list('"Doe, John" <sip:j@d>;q=1, <sip:k@d;x="a,b">, sip:l@d')
    assert values == ['"Doe, John" <sip:j@d>;q=1', '<sip:k@d;x="a,b">', "sip:l@d"]


def test_views_are_refreshed_after_header_changes() -> None:
    m = parse(_request(b"Route: <sip:r1;lr>\r\n"))
    assert [r.uri.host for r in m.routes] == ["r1"]
    m.headers.remove_first_value("Route")
    assert m.routes == []
    m.headers.set("Max-Forwards", "9")
    assert m.max_forwards == 9
    m.headers.prepend("Via", str(Via("TLS", "2001:db8::1", 5061, {"branch": "z9hG4bKv6"})))
    assert m.via[0].host == "2001:db8::1" and m.via[0].port == 5061 and m.via[0].transport == "TLS"
    assert m.headers.get("Via") == "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bKv6"


def test_set_body_updates_content_length_and_copy_is_independent() -> None:
    m = parse(_request())
    clone = m.copy()
    clone.set_body(b"hello", "text/plain")
    assert clone.content_length == 5 and clone.headers.get("Content-Type") == "text/plain"
    assert parse(bytes(clone)).body == b"hello"
    assert m.body == b"" and m.content_length == 0 and bytes(m) == _request()
    clone.body = b"xy"
    assert clone.headers.get("Content-Length") == "2"


def test_built_messages_get_a_content_length_on_output() -> None:
    r = Request("OPTIONS", URI("sip", "bob", "example.com"), Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")]))
    r.headers.add("From", "<sip:a@b>;tag=1")
    r.headers.add("To", "<sip:bob@example.com>")
    r.headers.add("Call-ID", "x")
    r.headers.add("CSeq", "1 OPTIONS")
    out = bytes(r)
    assert out.endswith(b"Content-Length: 0\r\n\r\n")
    assert parse(out).request_uri.user == "bob"
    resp = Response(200, "OK", Headers([("Content-Length", "0")]))
    assert bytes(resp) == b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"


def test_request_uri_setter_updates_the_raw_text() -> None:
    m = parse(REGISTER)
    assert isinstance(m, Request)
    uri = m.request_uri.copy()
    uri.params["transport"] = "tcp"
    m.request_uri = uri
    assert m.uri == "sip:sip.local;transport=tcp"
    assert bytes(m).startswith(b"REGISTER sip:sip.local;transport=tcp SIP/2.0\r\n")
    m.uri = "sip:other.example.com"
    assert m.request_uri.host == "other.example.com"


def test_contact_wildcard_and_expires() -> None:
    m = parse(_request(b"Contact: *\r\nExpires: 0\r\n", method=b"REGISTER"))
    (star,) = m.contacts
    assert star.wildcard and str(star) == "*" and m.expires == 0
    with pytest.raises(ParseError):
        _ = star.uri
    assert parse(_request(b"Expires: 99999999999\r\n")).expires is None  # malformed: RFC 3261 §20.19
    assert parse(_request(b"Expires: soon\r\n")).expires is None


def test_leading_crlf_and_bare_lf_messages() -> None:
    data = _request()
    assert bytes(parse(b"\r\n\r\n" + data)) == data  # RFC 3261 §7.5
    lf = data.replace(b"\r\n", b"\n")
    m = parse(lf)
    assert m.call_id == "c1" and bytes(m) == lf
    m.headers.add("X", "1")
    assert b"\r\nX: 1\r\n" in bytes(m)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 400),
        (b"OPTIONS sip:a@b SIP/2.0\r\n", 400),  # never terminated
        (_request().replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505),
        (_request().replace(b"OPTIONS sip", b"OPTIONS  sip", 1), 400),
        (_request().replace(b"sip:bob@example.com SIP", b"<sip:bob@example.com> SIP", 1), 400),
        (_request().replace(b"Call-ID: c1\r\n", b""), 400),
        (_request().replace(b"Via: SIP/2.0/UDP host.example.com;branch=z9hG4bK-x\r\n", b""), 400),
        (_request(b"Call-ID: c2\r\n"), 400),
        (_request().replace(b"CSeq: 1 OPTIONS", b"CSeq: 1 INVITE"), 400),
        (_request().replace(b"CSeq: 1 OPTIONS", b"CSeq: 4294967296 OPTIONS"), 400),
        (_request(b"Max-Forwards: 256\r\n"), 400),
        (_request(b"Max-Forwards: -1\r\n"), 400),
        (_request(b"Content-Length: 0\r\n"), 400),
        (_request(body=b"abc").replace(b"Content-Length: 3", b"Content-Length: 4"), 400),
        (_request(b"Bad Header: x\r\n"), 400),
        (_request(b"NoColon\r\n"), 400),
        (_request(b"X: a\rb\r\n"), 400),
        (_request(b"X: a\nb\r\n"), 400),
        (_request(b"To: <sip:dup@example.com>\r\n"), 400),
        (_request().replace(b"Via: SIP/2.0/UDP host.example.com", b"Via: SIP/2.0/UDP", 1), 400),
        (_request().replace(b"To: <sip:bob@example.com>", b'To: "bob <sip:bob@example.com>'), 400),
        (b"OPTIONS sip:bob@example.com SIP/2.0\r\n x: continued\r\n\r\n", 400),
        (b"SIP/2.0 99 Bad\r\n\r\n", None),
        (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n", None),
        (b"SIP/3.0 200 OK\r\n\r\n", None),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        (_request().replace(b"sip:bob@example.com SIP", b"sip:2001:db8::10 SIP", 1), 400),
        (_request().replace(b"sip:bob@example.com SIP", b"sip:bob@example.com?Route=x SIP", 1), 400),
    ],
)
def test_parse_errors_carry_the_status_to_answer(data: bytes, status: int | None) -> None:
    with pytest.raises(ParseError) as info:
        parse(data)
    assert info.value.status == status
    assert isinstance(info.value, ValueError) and info.value.reason


def test_size_limit_gives_413_for_requests_and_drop_for_responses() -> None:
    big = _request(body=b"x" * 70000)
    with pytest.raises(ParseError) as info:
        parse(big)
    assert info.value.status == 413
    assert parse(big, max_size=100_000).content_length == 70000
    with pytest.raises(ParseError) as info:
        parse(b"SIP/2.0 200 OK\r\n" + b"X: y\r\n" * 20000 + b"\r\n")
    assert info.value.status is None


def test_unsupported_scheme_and_extensions_parse() -> None:
    m = parse(_request(b"Require: foo\r\nProxy-Require: bar\r\n").replace(b"sip:bob@example.com SIP", b"urn:x:y SIP", 1))
    assert isinstance(m, Request) and m.request_uri.scheme == "urn" and m.headers.get_all("Require") == ["foo"]


def test_name_addr_forms() -> None:
    a = parse_name_addr('"Alice \\"A\\"" <sip:alice@example.com;transport=tcp>;tag=9;q=0.5')
    assert a.display_name == 'Alice "A"' and a.uri.params == {"transport": "tcp"}
    assert a.params == {"tag": "9", "q": "0.5"} and a.tag == "9"
    assert str(a) == '"Alice \\"A\\"" <sip:alice@example.com;transport=tcp>;tag=9;q=0.5'
    b = parse_name_addr("sip:bob@example.com;tag=x")
    assert b.display_name is None and b.uri.params == {} and b.tag == "x"
    c = parse_name_addr("Bob Smith<sip:bob@example.com>")
    assert c.display_name == "Bob Smith" and str(c) == "Bob Smith <sip:bob@example.com>"
    c.tag = "new"
    assert str(c).endswith(";tag=new")
    assert str(NameAddr(URI("sip", "x", "h"), "X Y", {"tag": "1"})) == "X Y <sip:x@h>;tag=1"
    for bad in ("<sip:a@b", "Bell, Alex <sip:a@b>", "<sip:a@b> junk", "sip:a@b?x=y", "<>", '"x" sip:a@b'):
        with pytest.raises(ParseError):
            parse_name_addr(bad)


def test_via_forms() -> None:
    v = parse_via("SIP / 2.0 / tcp [2001:db8::1]:5070 ; branch = z9hG4bKx ; received=10.0.0.1;rport=5070")
    assert (v.transport, v.host, v.port) == ("TCP", "2001:db8::1", 5070)
    assert v.params == {"branch": "z9hG4bKx", "received": "10.0.0.1", "rport": "5070"}
    assert str(v) == "SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bKx;received=10.0.0.1;rport=5070"
    assert parse_via("SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bK1").transport == "WSS"
    for bad in ("SIP/2.0/UDP", "SIP/2.0 host", "SIP/2.0/UDP host:99999", "SIP/2.0/UDP host;branch=1;=x",
                "SIP/2.0/UDP [::1", "SIP/2.0/UDP host junk", "SIP/2.0/UDP host;branch=a b"):
        with pytest.raises(ParseError):
            parse_via(bad)
    # liberal where the meaning is plain (issue 13 item 5): empty pieces skipped, empty values kept as ""
    assert parse_via("SIP/2.0/UDP host;;branch=1;").params == {"branch": "1"}
    assert parse_via("SIP/2.0/UDP host;branch=1;received=;x=").params == {"branch": "1", "received": "", "x": ""}
    assert parse_via("SIP/2.0/UDP host;branch=1;rport=").rport is None  # "rport=" asks as a bare rport does


def test_parse_params_is_reusable_for_digest() -> None:
    params = parse_params('username="bob", realm="a,b", nonce="n", uri="sip:x", response="r", qop=auth, nc=00000001',
                          sep=",")
    assert params["realm"] == '"a,b"' and params["qop"] == "auth" and params["nc"] == "00000001"
    assert parse_params("a=1;;b=2;c=") == {"a": "1", "b": "2", "c": ""}
    with pytest.raises(ParseError):
        parse_params("a=1;b=2 3")


def test_tel_uri_in_request_line() -> None:
    m = parse(_request().replace(b"sip:bob@example.com SIP", b"tel:+1-201-555-0123;phone-context=x SIP", 1))
    assert isinstance(m, Request)
    assert m.request_uri.scheme == "tel" and m.request_uri.opaque == "+1-201-555-0123"
    assert parse_uri("tel:+1-201-555-0123;phone-context=x").params == {"phone-context": "x"}


def test_make_response_copies_the_transaction_headers() -> None:
    data = _request(b"Via: SIP/2.0/UDP second;branch=z9hG4bK-2\r\nX-Other: 1\r\n", method=b"INVITE")
    request = parse(data)
    assert isinstance(request, Request)
    response = request.make_response(180, to_tag="tt")
    assert (response.status, response.reason) == (180, "Ringing")
    again = parse(bytes(response))
    assert [v.host for v in again.via] == ["host.example.com", "second"]
    assert again.to is not None and again.to.tag == "tt" and again.from_ is not None and again.from_.tag == "1"
    assert again.call_id == "c1" and again.cseq == CSeq(1, "INVITE") and "X-Other" not in again.headers
    trying = request.make_response(100, to_tag="ignored")
    assert trying.to is not None and trying.to.tag is None and trying.reason == "Trying"
    assert request.make_response(499).reason == ""
