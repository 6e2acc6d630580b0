"""SIP <-> Routr SIPMessage conversion: Routr semantics, routr-ray extensions and the merge rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from routr_ray.proto import convert
from routr_ray.proto.convert import ConversionError, from_proto, to_proto
from routr_ray.proto.gen import processor_pb2, sipmessage_pb2
from routr_ray.sip.headers import header_key
from routr_ray.sip.message import Request, Response
from routr_ray.sip.parser import parse
from routr_ray.sip.syntax import split_list

DATA = Path(__file__).resolve().parents[1] / "data"

REGISTER = (
    b"REGISTER sip:sip.local;transport=ws SIP/2.0\r\n"
    b"Via: SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKnashds7;rport;alias;keep\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: \"Alice\" <sip:1001@sip.local>\r\n"
    b"From: \"Alice\" <sip:1001@sip.local>;tag=456248\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"Contact: <sip:1001@df7jal23ls0d.invalid;transport=ws;ob>;reg-id=1;"
    b"+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";expires=600;q=0.7\r\n"
    b"Authorization: Digest username=\"1001\", realm=\"sip.local\", nonce=\"abc\", uri=\"sip:sip.local\", "
    b"response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"xyz\"\r\n"
    b"Supported: path, outbound, gruu\r\n"
    b"User-Agent: test/1.0\r\n"
    b"Content-Length: 0\r\n\r\n"
)

SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)
INVITE = (
    b"INVITE sip:1002@sip.local;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK776asdhds;rport=5060;received=203.0.113.7\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.10:5070;branch=z9hG4bKa1;x-ext=1\r\n"
    b"Record-Route: <sip:10.0.0.1;r2=on;lr>, <sip:203.0.113.1;transport=tcp;r2=on;lr>\r\n"
    b"Route: <sip:proxy.sip.local;lr>\r\n"
    b"Max-Forwards: 69\r\n"
    b"From: \"Alice\" <sip:1001@sip.local>;tag=1928301774\r\n"
    b"To: <sip:1002@sip.local>\r\n"
    b"Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:1001@192.0.2.10:5070;transport=tcp;ob>;+sip.instance=\"<urn:uuid:1>\"\r\n"
    b"Contact: <sip:1001@198.51.100.2>;q=0.1\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS\r\n"
    b"X-Room-Id: jsa-shqm-iyo\r\n"
    b"X-Room-Id: second\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP
)

LIST_KINDS = {"via", "route", "record-route", "contact"}


def roundtrip(data: bytes) -> tuple[Request | Response, sipmessage_pb2.SIPMessage]:
    pm = to_proto(parse(data))
    wire = sipmessage_pb2.SIPMessage.FromString(pm.SerializeToString())
    return from_proto(wire), wire


def normalized_items(msg: Request | Response) -> list[tuple[str, object]]:
    """Header lines with the documented normalization applied (see convert's docstring)."""
    out: list[tuple[str, object]] = []
    for name, value in msg.headers.items():
        key = header_key(name)
        if key in LIST_KINDS:
            out.append((name, [v for v in split_list(value) if v]))
        elif key in ("max-forwards", "content-length"):
            out.append((name, int(value)))
        else:
            out.append((name, value.strip(" \t")))
    return out


def typed_view(msg: Request | Response, name: str) -> object:
    """str() of a typed view, or the exception type when the view does not parse (liberal accepts)."""
    try:
        value = getattr(msg, name)
    except ValueError as exc:
        return type(exc)
    return [str(v) for v in value] if isinstance(value, list) else str(value)


def strip_extensions(message) -> None:  # type: ignore[no-untyped-def]
    """What a Routr (protobuf-js) processor does: forget every field it does not know (numbers >= 100)."""
    for field, value in message.ListFields():
        if field.number >= 100:
            message.ClearField(field.name)
        elif field.message_type is not None and not field.message_type.GetOptions().map_entry:
            if field.is_repeated:
                for item in value:
                    strip_extensions(item)
            else:
                strip_extensions(value)


# ---------------------------------------------------------------------------------------------------
# Lossless round trips

def _accepted_torture_messages() -> list[tuple[str, bytes]]:
    out = []
    for suite in ("rfc4475", "rfc5118"):
        index = json.loads((DATA / suite / "index.json").read_text())
        for entry in index["messages"]:
            data = (DATA / suite / entry["file"]).read_bytes()
            try:
                parse(data)
            except ValueError:
                continue
            out.append((f"{suite}/{entry['file']}", data))
    return out


TORTURE = _accepted_torture_messages()


def test_torture_corpus_is_present() -> None:
    names = {name for name, _ in TORTURE}
    assert len(TORTURE) >= 30
    assert {"rfc4475/wsinv.dat", "rfc4475/esc01.dat", "rfc4475/mpart01.dat", "rfc4475/unksm2.dat"} <= names


@pytest.mark.parametrize(("name", "data"), TORTURE, ids=[n for n, _ in TORTURE])
def test_accepted_torture_messages_round_trip(name: str, data: bytes) -> None:
    original = parse(data)
    back, _ = roundtrip(data)
    assert type(back) is type(original)
    if isinstance(original, Request):
        assert (back.method, back.uri) == (original.method, original.uri)
    else:
        assert (back.status, back.reason) == (original.status, original.reason)
    assert back.body == original.body
    got, want = normalized_items(back), normalized_items(original)
    if "content-length" not in {header_key(n) for n, _ in want} and original.body:
        want.append(("Content-Length", len(original.body)))  # documented: always written when there is a body
    assert got == want
    again = parse(bytes(back))  # the result is a valid SIP message with the same typed views
    for view in ("via", "contacts", "from_", "to", "routes", "record_routes", "call_id", "cseq", "expires"):
        assert typed_view(again, view) == typed_view(original, view), view


@pytest.mark.parametrize("data", [REGISTER, INVITE], ids=["register", "invite"])
def test_clean_messages_round_trip_byte_for_byte(data: bytes) -> None:
    back, _ = roundtrip(data)
    assert bytes(back) == data


def test_header_layout_keeps_compact_names_and_grouping() -> None:
    data = (b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h1;branch=z9hG4bK1, SIP/2.0/UDP h2;branch=z9hG4bK2\r\n"
            b"f: <sip:x@y>;tag=1\r\nt: <sip:a@b>\r\ni: cid\r\nCSeq: 1 OPTIONS\r\nk: path\r\nl: 0\r\n\r\n")
    back, pm = roundtrip(data)
    assert bytes(back) == data
    assert [e.name for e in pm.extensions] == ["CSeq", "Supported"]  # compact names expanded for processors


# ---------------------------------------------------------------------------------------------------
# Routr's typed fields

def test_register_typed_fields() -> None:
    pm = to_proto(parse(REGISTER))
    assert pm.WhichOneof("message_type") == "request_uri"
    assert pm.request_uri.host == "sip.local" and pm.request_uri.transport_param == "ws"
    assert pm.request_uri.port == -1 and not pm.request_uri.secure
    via = pm.via[0]
    assert (via.host, via.port, via.transport, via.branch) == ("df7jal23ls0d.invalid", -1, "WS", "z9hG4bKnashds7")
    assert via.r_port_flag and via.r_port == -1
    assert list(via.params) == ["branch=z9hG4bKnashds7", "rport", "alias", "keep"]
    frm = getattr(pm, "from")
    assert frm.tag == "456248" and frm.address.display_name == "Alice" and frm.address.uri.user == "1001"
    assert pm.call_id.call_id == "843817637684230@998sdasdh09" and pm.max_forwards.max_forwards == 70
    assert pm.contact.expires == 600 and pm.contact.q_value == pytest.approx(0.7)
    auth = pm.authorization
    assert (auth.username, auth.realm, auth.nonce, auth.uri) == ("1001", "sip.local", "abc", "sip:sip.local")
    assert (auth.qop, auth.c_nonce, auth.nonce_count, auth.method) == ("auth", "xyz", 1, "REGISTER")
    assert [(e.name, e.value) for e in pm.extensions] == [
        ("CSeq", "1826 REGISTER"), ("Supported", "path, outbound, gruu"), ("User-Agent", "test/1.0")]
    assert pm.content_length.content_length == 0 and pm.body == ""


def test_invite_typed_fields_and_repeated_extensions() -> None:
    pm = to_proto(parse(INVITE))
    assert [v.host for v in pm.via] == ["10.0.0.1", "192.0.2.10"]
    assert pm.via[0].r_port == 5060 and pm.via[0].received == "203.0.113.7"
    assert [r.address.uri.host for r in pm.record_route] == ["10.0.0.1", "203.0.113.1"]
    assert all(r.address.uri.lr_param for r in pm.record_route)
    assert list(pm.record_route[0].address.uri.params) == ["r2=on", "lr"]
    assert pm.route[0].address.uri.host == "proxy.sip.local"
    assert [e.value for e in pm.extensions if e.name == "X-Room-Id"] == ["jsa-shqm-iyo", "second"]
    assert pm.body == SDP.decode()


# ---------------------------------------------------------------------------------------------------
# Extensions and the merge rule

def test_processor_changing_request_uri_user_wins() -> None:
    pm = to_proto(parse(REGISTER))
    pm.request_uri.user = "1002"
    back = from_proto(pm)
    assert isinstance(back, Request)
    assert back.uri == "sip:1002@sip.local;transport=ws"
    assert back.request_uri.user == "1002"


def test_changed_typed_via_field_keeps_other_params_in_order() -> None:
    pm = to_proto(parse(REGISTER))
    pm.via[0].received = "198.51.100.7"
    pm.via[0].r_port = 40000
    back = from_proto(pm)
    assert back.headers.get("Via") == (
        "SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKnashds7;rport=40000;alias;keep;received=198.51.100.7")


def test_changed_from_tag_keeps_the_uri_text() -> None:
    pm = to_proto(parse(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                        b"From: <sip:%61lice@b;x=1>;tag=1;foo\r\nTo: <sip:a@b>\r\nCall-ID: c\r\n"
                        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"))
    getattr(pm, "from").tag = "2"
    pm.to.tag = "totag"
    back = from_proto(pm)
    assert back.headers.get("From") == "<sip:%61lice@b;x=1>;tag=2;foo"
    assert back.to is not None and back.to.tag == "totag"


def test_routr_processor_dropping_extensions_still_gives_a_valid_message() -> None:
    for data in (REGISTER, INVITE):
        pm = to_proto(parse(data))
        strip_extensions(pm)
        assert not pm.header_names and not pm.contacts and not pm.via[0].raw
        back = from_proto(pm)
        again = parse(bytes(back))
        original = parse(data)
        assert isinstance(again, Request) and again.method == original.method  # method from CSeq
        assert again.request_uri.host == original.request_uri.host
        assert [v.branch for v in again.via] == [v.branch for v in original.via]
        assert again.call_id == original.call_id and str(again.cseq) == str(original.cseq)
        assert again.from_ is not None and again.from_.tag == original.from_.tag  # type: ignore[union-attr]
        assert again.contacts[0].uri.host == original.contacts[0].uri.host
        assert len(again.contacts) == 1  # Routr carries the first Contact only
        assert again.body == original.body
        assert again.content_length == len(original.body)


def test_routr_processor_changing_typed_field_after_dropping_extensions() -> None:
    pm = to_proto(parse(INVITE))
    strip_extensions(pm)
    pm.request_uri.host = "192.0.2.99"
    pm.request_uri.port = 5080
    back = from_proto(pm)
    assert isinstance(back, Request) and back.uri == "sip:1002@192.0.2.99:5080;transport=udp"


def test_typed_field_changed_while_raw_still_holds_the_old_value() -> None:
    pm = to_proto(parse(INVITE))
    assert pm.contact.raw  # raw present and stale after the change below
    pm.contact.address.uri.host = "192.0.2.200"
    pm.max_forwards.max_forwards = 68
    back = from_proto(pm)
    assert back.contacts[0].uri.host == "192.0.2.200"
    assert back.contacts[0].params == {"+sip.instance": '"<urn:uuid:1>"'}
    assert back.contacts[0].uri.params == {"transport": "tcp", "ob": None}
    assert back.contacts[1].uri.host == "198.51.100.2"
    assert back.max_forwards == 68


def test_status_422_survives_and_degrades_to_its_class() -> None:
    data = (b"SIP/2.0 422 Session Interval Too Small\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n"
            b"Min-SE: 1800\r\nContent-Length: 0\r\n\r\n")
    back, pm = roundtrip(data)
    assert isinstance(back, Response) and back.status == 422 and bytes(back) == data
    assert pm.response_type == sipmessage_pb2.CLIENT_ERROR and pm.status_code == 422
    strip_extensions(pm)
    degraded = from_proto(pm)
    assert isinstance(degraded, Response) and degraded.status == 400
    assert degraded.reason == "Session Interval Too Small"


def test_changed_response_type_wins_over_status_code() -> None:
    pm = to_proto(parse(b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: x\r\n"
                        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n"
                        b"CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
    assert pm.response_type == sipmessage_pb2.RINGING
    pm.response_type = sipmessage_pb2.BUSY_HERE
    pm.reason_phrase = "Busy Here"
    back = from_proto(pm)
    assert isinstance(back, Response) and (back.status, back.reason) == (486, "Busy Here")


def test_unknown_1xx_without_status_code_is_an_error() -> None:
    pm = to_proto(parse(b"SIP/2.0 199 Early Dialog Terminated\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                        b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\n"
                        b"Call-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"))
    assert from_proto(pm).status == 199  # type: ignore[union-attr]
    pm.ClearField("status_code")
    with pytest.raises(ConversionError):
        from_proto(pm)


def test_response_type_table() -> None:
    assert convert.response_type_for(200) == sipmessage_pb2.OK
    assert convert.response_type_for(487) == sipmessage_pb2.REQUEST_TERMINATED
    assert convert.response_type_for(606) == sipmessage_pb2.SESSION_NOT_ACCEPTABLE
    assert convert.response_type_for(429) == sipmessage_pb2.CLIENT_ERROR
    assert convert.response_type_for(199) == sipmessage_pb2.UNKNOWN


def test_tel_uris_survive() -> None:
    data = (b"INVITE tel:+17066041487;phone-context=example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
            b"From: <tel:+15551234>;tag=1\r\nTo: <tel:+17066041487>\r\nCall-ID: t\r\nCSeq: 1 INVITE\r\n"
            b"Content-Length: 0\r\n\r\n")
    back, pm = roundtrip(data)
    assert bytes(back) == data
    assert pm.request_uri.scheme == "tel" and pm.request_uri.user == "+17066041487"
    assert pm.to.address.uri.user == "+17066041487"
    pm.request_uri.user = "+17066040000"  # typed change on a tel: URI keeps its parameters
    assert isinstance(changed := from_proto(pm), Request)
    assert changed.uri == "tel:+17066040000;phone-context=example.com"
    pm.request_uri.host = "trunk.example.net"  # routing it to a SIP target
    routed = from_proto(pm)
    assert isinstance(routed, Request) and routed.uri == "sip:+17066040000@trunk.example.net;phone-context=example.com"


def test_opaque_uri_scheme_survives() -> None:
    data = (b"INVITE urn:service:sos SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
            b"To: <urn:service:sos>\r\nCall-ID: u\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n")
    back, pm = roundtrip(data)
    assert bytes(back) == data and pm.request_uri.scheme == "urn"


def test_outbound_and_instance_params_survive() -> None:
    back, pm = roundtrip(REGISTER)
    contact = back.contacts[0]
    assert contact.uri.params == {"transport": "ws", "ob": None}
    assert contact.params["+sip.instance"] == '"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"'
    assert contact.params["reg-id"] == "1"
    assert list(pm.contact.params) == [
        "reg-id=1", '+sip.instance="<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>"', "expires=600", "q=0.7"]
    assert list(pm.contact.address.uri.params) == ["transport=ws", "ob"]


def test_multiple_contacts_survive() -> None:
    data = (b"REGISTER sip:b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
            b"To: <sip:a@b>\r\nCall-ID: m\r\nCSeq: 1 REGISTER\r\n"
            b"Contact: <sip:a@1.1.1.1>;expires=60, <sip:a@2.2.2.2>;q=0.5\r\nContact: <sip:a@3.3.3.3>\r\n"
            b"Content-Length: 0\r\n\r\n")
    back, pm = roundtrip(data)
    assert bytes(back) == data
    assert len(pm.contacts) == 3 and pm.contact.address.uri.host == "1.1.1.1"
    assert [c.uri.host for c in back.contacts] == ["1.1.1.1", "2.2.2.2", "3.3.3.3"]
    del pm.contacts[1]  # a processor removing one binding: the others keep their text
    assert [c.uri.host for c in from_proto(pm).contacts] == ["1.1.1.1", "3.3.3.3"]


def test_wildcard_contact() -> None:
    data = (b"REGISTER sip:b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
            b"To: <sip:a@b>\r\nCall-ID: w\r\nCSeq: 2 REGISTER\r\nContact: *\r\nExpires: 0\r\n"
            b"Content-Length: 0\r\n\r\n")
    back, pm = roundtrip(data)
    assert bytes(back) == data and pm.contact.address.wildcard and pm.expires.expires == 0
    strip_extensions(pm)
    assert from_proto(pm).headers.get("Contact") == "*"


def test_processor_added_headers_are_placed_and_rendered() -> None:
    pm = to_proto(parse(INVITE))
    new_via = sipmessage_pb2.Via(host="10.0.0.2", port=5060, transport="UDP", branch="z9hG4bKnew", r_port=-1)
    vias = [new_via, *pm.via]
    del pm.via[:]
    pm.via.extend(vias)
    rr = sipmessage_pb2.RecordRoute()
    rr.address.uri.host = "10.0.0.2"
    rr.address.uri.port = 5060
    rr.address.uri.lr_param = True
    rr.parameters["r2"] = "on"  # a header parameter here, to exercise Routr's map
    records = [rr, *pm.record_route]
    del pm.record_route[:]
    pm.record_route.extend(records)
    pm.extensions.add(name="X-Added", value="1")
    back = from_proto(pm)
    assert back.via[0].branch == "z9hG4bKnew" and back.via[0].sent_by() == "10.0.0.2:5060"
    assert [v.branch for v in back.via[1:]] == ["z9hG4bK776asdhds", "z9hG4bKa1"]
    assert str(back.record_routes[0]) == "<sip:10.0.0.2:5060;lr>;r2=on"
    assert len(back.record_routes) == 3
    assert back.headers.get_all("X-Added") == ["1"]
    assert parse(bytes(back)).body == SDP


def test_binary_body_survives() -> None:
    body = bytes(range(256))
    data = (b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n"
            b"To: <sip:a@b>\r\nCall-ID: b\r\nCSeq: 1 MESSAGE\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Length: 256\r\n\r\n" + body)
    back, pm = roundtrip(data)
    assert bytes(back) == data and pm.body_bytes == body
    pm.body = "replaced"
    changed = from_proto(pm)
    assert changed.body == b"replaced" and changed.headers.get("Content-Length") == "8"


def test_unparsable_typed_header_travels_as_extension() -> None:
    data = (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n"
            b"To: <sip:a@b>\r\nCall-ID: e\r\nCSeq: 1 OPTIONS\r\nExpires: Thu, 01 Dec 1994 16:00:00 GMT\r\n"
            b"Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\nContent-Length: 0\r\n\r\n")
    back, pm = roundtrip(data)
    assert bytes(back) == data
    assert not pm.HasField("expires")
    assert ("Expires", "Thu, 01 Dec 1994 16:00:00 GMT") in [(e.name, e.value) for e in pm.extensions]


def test_from_proto_requires_a_start_line() -> None:
    with pytest.raises(ConversionError):
        from_proto(sipmessage_pb2.SIPMessage())
    pm = sipmessage_pb2.SIPMessage()
    pm.request_uri.host = "b"
    with pytest.raises(ConversionError):
        from_proto(pm)  # no method and no CSeq


# ---------------------------------------------------------------------------------------------------
# A client generated from Routr's own protos (no extension fields) reads our messages

def _routr_only_classes() -> tuple[type, type]:
    """Rebuild sipmessage/processor descriptors without routr-ray's extension fields (numbers >= 100)."""
    pool = descriptor_pool.DescriptorPool()
    from routr_ray.proto.gen import common_pb2

    def strip(fdp: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
        def walk(messages) -> None:  # type: ignore[no-untyped-def]
            for m in messages:
                keep = [f for f in m.field if f.number < 100]
                del m.field[:]
                m.field.extend(keep)
                walk(m.nested_type)
        walk(fdp.message_type)
        return fdp

    for module in (common_pb2, sipmessage_pb2, processor_pb2):
        fdp = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(fdp)
        pool.Add(strip(fdp))
    request = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("fonoster.routr.processor.v2beta1.MessageRequest"))
    response = message_factory.GetMessageClass(
        pool.FindMessageTypeByName("fonoster.routr.processor.v2beta1.MessageResponse"))
    return request, response


def test_routr_only_client_round_trip_through_message_request() -> None:
    routr_request, routr_response = _routr_only_classes()
    req = convert.make_message_request(
        parse(INVITE), edge_port_ref="ep-01", sender=("203.0.113.7", 5060, "udp"),
        listening_points=[("10.0.0.1", 5060, "UDP"), ("10.0.0.1", 5061, "TLS")],
        external_addrs=["203.0.113.1"], localnets=["10.0.0.0/8"], metadata={"k": "v"},
    )
    assert req.ref == "a84b4c76e66710@pc33.atlanta.com" and req.method == processor_pb2.INVITE
    assert req.sender.transport == 0 and req.listening_points[1].transport == 2
    # A Routr processor decodes, forgets unknown fields, changes the R-URI and answers the whole message.
    seen = routr_request.FromString(req.SerializeToString())
    seen.DiscardUnknownFields()
    assert seen.message.request_uri.user == "1002" and seen.message.via[0].branch == "z9hG4bK776asdhds"
    answer = routr_response()
    answer.message.CopyFrom(seen.message)
    answer.message.request_uri.host = "192.0.2.50"
    answer.metadata.update(seen.metadata)
    resp = processor_pb2.MessageResponse.FromString(answer.SerializeToString())
    back = convert.read_message_response(resp)
    assert isinstance(back, Request) and back.method == "INVITE"
    assert back.uri == "sip:1002@192.0.2.50;transport=udp"
    assert back.headers.get_all("X-Room-Id") == ["jsa-shqm-iyo", "second"]
    assert parse(bytes(back)).body == SDP


def test_message_request_for_a_response_uses_the_cseq_method() -> None:
    data = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
            b"To: <sip:c@d>;tag=2\r\nCall-ID: r\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n")
    req = convert.make_message_request(parse(data), edge_port_ref="ep", sender=("1.2.3.4", 5060, "tcp"))
    assert req.method == processor_pb2.BYE and req.ref == "r" and req.sender.transport == 1
    resp = convert.make_message_response(parse(data), metadata={"a": "b"})
    assert convert.read_message_response(resp).status == 200  # type: ignore[union-attr]


def test_enum_helpers() -> None:
    assert convert.method_enum("register") == processor_pb2.REGISTER
    assert convert.method_enum("FOO") == processor_pb2.UNKNOWN
    assert convert.transport_enum("wss") == 5 and convert.transport_name(4) == "WS"
    with pytest.raises(ValueError):
        convert.transport_enum("quic")


# ---------------------------------------------------------------------------------------------------
# The value caches are invisible

@pytest.mark.parametrize("data", [REGISTER, INVITE], ids=["register", "invite"])
def test_cached_and_uncached_conversions_are_identical(data: bytes) -> None:
    convert._VALUE_CACHE.clear()
    convert._TEXT_CACHE.clear()
    convert._ADDRESS_URI_CACHE.clear()
    convert._PLANS.clear()
    cold = to_proto(parse(data))
    cold_back = bytes(from_proto(cold))
    warm = to_proto(parse(data))  # every value now comes from the cache
    assert warm.SerializeToString(deterministic=True) == cold.SerializeToString(deterministic=True)
    convert._TEXT_CACHE.clear()
    assert bytes(from_proto(warm)) == cold_back == data


def test_cache_does_not_hide_a_changed_value() -> None:
    pm = to_proto(parse(INVITE))
    assert bytes(from_proto(pm)) == INVITE  # seeds the text cache with the unchanged values
    pm.via[1].received = "192.0.2.1"
    getattr(pm, "from").address.display_name = "Bob"
    back = from_proto(pm)
    assert back.via[1].received == "192.0.2.1" and back.via[1].params["x-ext"] == "1"
    assert back.from_ is not None and back.from_.display_name == "Bob" and back.from_.tag == "1928301774"


def test_cache_is_bounded() -> None:
    template = REGISTER.replace(b"branch=z9hG4bKnashds7", b"branch=z9hG4bK%d")
    for n in range(convert._VALUE_CACHE_SIZE + 50):
        to_proto(parse(template % n))
    assert len(convert._VALUE_CACHE) <= convert._VALUE_CACHE_SIZE
    assert len(convert._TEXT_CACHE) <= convert._VALUE_CACHE_SIZE
    contacts = REGISTER.replace(b"<sip:1001@df7jal23ls0d.invalid", b"<sip:%d@df7jal23ls0d.invalid")
    for n in range(convert._VALUE_CACHE_SIZE + 50):
        to_proto(parse(contacts % n))
    assert 0 < len(convert._ADDRESS_URI_CACHE) <= convert._VALUE_CACHE_SIZE


def _typed_values_with_raw(pm: sipmessage_pb2.SIPMessage) -> list[tuple[object, str]]:
    """(value, its typed key as from_proto computes it) for every typed value of pm that carries raw."""
    out: list[tuple[object, str]] = []
    if pm.HasField("request_uri"):
        out.append((pm.request_uri, convert._uri_key(pm.request_uri)))
    out += [(v, convert._via_key(v)) for v in pm.via]
    for route in (*pm.route, *pm.record_route):
        out.append((route, convert._route_key(route, convert._address_key(route.address))))
    for name in ("from", "to"):
        if pm.HasField(name):
            px = getattr(pm, name)
            out.append((px, convert._from_to_key(px, convert._address_key(px.address))))
    for contact in pm.contacts:
        out.append((contact, convert._address_key(contact.address) + convert._contact_tail_key(contact)))
        out.append((contact.address.uri, convert._uri_key(contact.address.uri)))
    if pm.HasField("authorization"):
        out.append((pm.authorization, convert._authorization_key(pm.authorization)))
    if pm.HasField("www_authenticate"):
        out.append((pm.www_authenticate, convert._www_key(pm.www_authenticate)))
    return [(v, k) for v, k in out if v.raw]  # type: ignore[attr-defined]


CHALLENGE = (
    b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n"
    b"To: <sip:x@y>;tag=2\r\nCall-ID: n\r\nCSeq: 1 REGISTER\r\n"
    b"WWW-Authenticate: Digest realm=\"sip.local\", domain=\"sip:sip.local\", nonce=\"n1\", opaque=\"o\", "
    b"stale=TRUE, algorithm=MD5, qop=\"auth\"\r\nContent-Length: 0\r\n\r\n"
)


@pytest.mark.parametrize(("name", "data"), TORTURE + [("register", REGISTER), ("invite", INVITE), ("401", CHALLENGE)],
                         ids=[n for n, _ in TORTURE] + ["register", "invite", "401"])
def test_raw_crc_written_by_to_proto_matches_the_key_from_proto_reads(name: str, data: bytes) -> None:
    # to_proto computes raw_crc from the Python values it writes (no read-back); from_proto hashes the fields
    # it reads. Unless both agree for every value, an untouched value would lose its raw text.
    for cached in (False, True):
        if not cached:
            convert._VALUE_CACHE.clear()
            convert._ADDRESS_URI_CACHE.clear()
        pm = sipmessage_pb2.SIPMessage.FromString(to_proto(parse(data)).SerializeToString())
        for value, key in _typed_values_with_raw(pm):
            assert value.raw_crc == convert._crc(key), (name, value)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("text", "want"), [
    ('username="1001",realm="sip.local",nc=00000001,qop=auth',
     {"username": "1001", "realm": "sip.local", "nc": "00000001", "qop": "auth"}),
    ('username = "a,b" ,  uri=sip:x@y;a=b , response="\\"q\\"" ,algorithm=MD5  ',
     {"username": "a,b", "uri": "sip:x@y;a=b", "response": '"q"', "algorithm": "MD5"}),
    ("opaque=, qop=auth", {"opaque": "", "qop": "auth"}),
    ("", {}),
])
def test_auth_params_fast_reader(text: str, want: dict[str, str]) -> None:
    assert convert._auth_params(text) == want


def test_auth_params_falls_back_to_the_strict_parser() -> None:
    # not a plain list (a gap the fast reader cannot cover): the strict digest parser decides
    with pytest.raises(ValueError):
        convert._auth_params('username="1001", "stray"')


def test_layout_plans_follow_the_value_counts() -> None:
    # one layout, different numbers of Via values per line: each gets its own plan
    convert._PLANS.clear()
    pm = to_proto(parse(INVITE))
    assert bytes(from_proto(pm)) == INVITE
    extra = pm.via.add()
    extra.CopyFrom(pm.via[1])
    extra.ClearField("raw")
    extra.branch = "z9hG4bKextra"
    back = from_proto(pm)
    assert [v.branch for v in back.via] == ["z9hG4bK776asdhds", "z9hG4bKa1", "z9hG4bKextra"]
    del pm.via[1:]
    assert [v.branch for v in from_proto(pm).via] == ["z9hG4bK776asdhds"]
    assert len(convert._PLANS) == 3
    convert._PLANS.clear()
    assert [v.branch for v in from_proto(pm).via] == ["z9hG4bK776asdhds"]


@pytest.mark.parametrize(("name", "data"), TORTURE + [("register", REGISTER), ("invite", INVITE)],
                         ids=[n for n, _ in TORTURE] + ["register", "invite"])
def test_to_sip_bytes_equals_serializing_from_proto(name: str, data: bytes) -> None:
    pm = to_proto(parse(data))
    assert convert.to_sip_bytes(pm) == bytes(from_proto(pm))
    strip_extensions(pm)
    assert convert.to_sip_bytes(pm) == bytes(from_proto(pm))


def test_non_utf8_header_bytes_are_replaced_not_fatal() -> None:
    data = (b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:x@y>;tag=1\r\n"
            b"To: <sip:a@b>\r\nCall-ID: n\r\nCSeq: 1 OPTIONS\r\nSubject: caf\xe9\r\nContent-Length: 0\r\n\r\n")
    pm = to_proto(parse(data))
    assert ("Subject", "caf\ufffd") in [(e.name, e.value) for e in pm.extensions]
    assert from_proto(pm).headers.get("Subject") == "caf\ufffd"
