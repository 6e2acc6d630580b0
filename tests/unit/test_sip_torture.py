"""RFC 4475 and RFC 5118 torture messages: whole, one byte at a time through the StreamFramer, and with
trailing data. Expectations come from each corpus' index.json (see its "parser_values")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from routr_ray.sip import KEEPALIVE_PING, ParseError, Request, Response, StreamFramer, parse

DATA = Path(__file__).resolve().parents[1] / "data"


def _load(corpus: str) -> list[dict[str, Any]]:
    index = json.loads((DATA / corpus / "index.json").read_text())
    out = []
    for entry in index["messages"]:
        entry = dict(entry)
        entry["corpus"] = corpus
        entry["data"] = data = (DATA / corpus / entry["file"]).read_bytes()
        if "content_length_values" not in entry:  # rfc5118's index does not list them: read the header section
            head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            entry["content_length_values"] = [
                line.split(b":", 1)[1].strip().decode()
                for line in head
                if line.split(b":", 1)[0].strip().lower() in (b"content-length", b"l")
            ]
        out.append(entry)
    return out


MESSAGES = _load("rfc4475") + _load("rfc5118")
IDS = [f"{m['corpus']}/{m['file']}" for m in MESSAGES]
# What we do with the messages the RFC lets us either accept or reject (asserted, so a change shows).
LIBERAL_ACCEPTED = {"baddate.dat", "regbadct.dat", "badbranch.dat"}
VALID_CL = [m for m in MESSAGES if len(m["content_length_values"]) == 1]


def _is_response(entry: dict[str, Any]) -> bool:
    return entry["data"].startswith(b"SIP/")


def _expect_accept(entry: dict[str, Any]) -> bool | None:
    """True: must parse. False: must raise ParseError. None: either."""
    rule = entry["parser"]
    if rule == "accept":
        return True
    if rule == "reject":
        return False
    if entry["file"] in LIBERAL_ACCEPTED:
        return True
    return False


def _message_end(data: bytes) -> int:
    """Where a message with a Content-Length ends (header end + CL), as the framer would cut it."""
    head_end = data.index(b"\r\n\r\n") + 4
    msg = parse(data)
    return head_end + (msg.content_length or 0)


@pytest.mark.parametrize("entry", MESSAGES, ids=IDS)
def test_whole_message(entry: dict[str, Any]) -> None:
    data = entry["data"]
    expect = _expect_accept(entry)
    if expect:
        message = parse(data)
        assert isinstance(message, Response if _is_response(entry) else Request)
        # round trip: an unmodified message serializes to the bytes it came from (RFC 3261 §18.3: octets
        # past Content-Length are not part of the message)
        if message.content_length is not None:
            assert bytes(message) == data[: _message_end(data)]
        else:
            assert bytes(message) == data
        assert message.via and message.cseq is not None and message.call_id
        # a copy that is forced to rebuild still parses to the same headers and body
        clone = message.copy()
        clone.headers.add("X-Rebuilt", "1")
        again = parse(bytes(clone))
        assert again.headers.items()[: len(message.headers)] == message.headers.items()
        assert again.body == message.body
    else:
        with pytest.raises(ParseError) as info:
            parse(data)
        error = info.value
        if _is_response(entry):
            assert error.status is None, "a bad response is dropped, never answered"
        elif entry["file"] == "badvers.dat":
            assert error.status == 505
        else:
            assert error.status == 400
        assert error.reason


EXPECTED_STATUS = {"badvers.dat": 505}


@pytest.mark.parametrize("entry", MESSAGES, ids=IDS)
def test_one_byte_at_a_time_through_the_stream_framer(entry: dict[str, Any]) -> None:
    data = entry["data"]
    framer = StreamFramer()
    frames: list[bytes] = []
    error: ParseError | None = None
    for i in range(len(data)):
        try:
            out = framer.feed(data[i : i + 1])
        except ParseError as exc:
            error = exc
            break
        assert KEEPALIVE_PING not in out
        frames.extend(out)  # type: ignore[arg-type]
    cl_values = entry["content_length_values"]
    name = entry["file"]
    if name == "dblreq.dat":
        # the REGISTER is cut at its Content-Length; on a stream the INVITE octets after it are a next
        # message whose Content-Length (150) overshoots its body, so the stream breaks after it
        assert frames[0] == data[: _message_end(data)] and error is not None
        return
    if not cl_values:
        # no Content-Length at all (inv2543): a stream cannot frame it (RFC 3261 §18.3)
        assert error is not None and error.status == 400 and "Content-Length" in error.reason
        return
    if len(cl_values) > 1:
        assert error is not None and error.status == 400  # mcl01: two Content-Length headers
        return
    if name == "ncl.dat":
        assert error is not None and error.status == 400  # Content-Length: -999
        return
    if entry.get("headers_terminated") is False or name == "clerr.dat":
        # baddn never ends its header section; clerr announces 9999 body bytes: the framer waits for more
        assert error is None and frames == []
        return
    assert error is None
    assert len(frames) == 1
    frame = frames[0]
    assert data.startswith(frame)
    expect = _expect_accept(entry)
    if expect:
        assert bytes(parse(frame)) == frame
    else:
        with pytest.raises(ParseError):
            parse(frame)


@pytest.mark.parametrize("entry", VALID_CL, ids=[f"{m['corpus']}/{m['file']}" for m in VALID_CL])
def test_with_trailing_data(entry: dict[str, Any]) -> None:
    data = entry["data"]
    name = entry["file"]
    trailing = b"\r\nINVITE sip:trailing@example.com SIP/2.0\r\nX-Junk: \x00\xff\r\n"
    expect = _expect_accept(entry)
    # as a datagram: octets past Content-Length are discarded (RFC 3261 §18.3)
    if expect:
        assert parse(data + trailing).body == parse(data).body
        assert bytes(parse(data + trailing)) == bytes(parse(data))
    else:
        with pytest.raises(ParseError):
            parse(data + trailing)
    # on a stream: the message is cut at Content-Length and the next message follows
    if name in ("clerr.dat", "ncl.dat", "baddn.dat"):
        return
    if name == "dblreq.dat":
        with pytest.raises(ParseError):
            StreamFramer().feed(data + b"\r\n\r\n")
        return
    follow = (
        b"OPTIONS sip:next@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bKnext\r\n"
        b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:next@example.com>\r\nCall-ID: next\r\n"
        b"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    )
    framer = StreamFramer()
    frames = framer.feed(data + b"\r\n\r\n" + follow)
    end = data.index(b"\r\n\r\n") + 4 + int(entry["content_length_values"][0])
    assert end == len(data)
    assert frames == [data, KEEPALIVE_PING, follow]


def _get(name: str) -> bytes:
    for entry in MESSAGES:
        if entry["file"] == name:
            return entry["data"]
    raise KeyError(name)


def test_wsinv_folding_lws_and_unknown_headers() -> None:
    m = parse(_get("wsinv.dat"))
    assert isinstance(m, Request) and m.method == "INVITE"
    assert m.to is not None and m.to.tag == "1918181833n"
    assert m.from_ is not None and m.from_.tag == "98asjd8" and m.from_.display_name == 'J Rosenberg \\"'
    assert m.max_forwards == 68
    assert m.cseq is not None and (m.cseq.seq, m.cseq.method) == (9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in m.via] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert m.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert m.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert m.headers.get("Subject") == ""
    (contact,) = m.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    (route,) = m.routes
    assert route.uri.params == {"lr": None, "unknownwith": "value", "unknown-no-value": None}
    assert len(m.body) == 150


def test_intmeth_unusual_characters() -> None:
    m = parse(_get("intmeth.dat"))
    assert isinstance(m, Request)
    assert m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.request_uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.request_uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.to is not None and m.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_ is not None and m.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert m.from_.tag == "_token~1'+`*%!-."
    assert m.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert bytes(m) == _get("intmeth.dat")


def test_escapes_are_kept_and_not_recursive() -> None:
    m = parse(_get("esc01.dat"))
    assert isinstance(m, Request)
    assert m.request_uri.user == "sips%3Auser%40example.com"
    assert m.request_uri.user_unescaped == "sips:user@example.com"
    nul = parse(_get("escnull.dat"))
    users = [c.uri.user_unescaped for c in nul.contacts]
    assert users == ["\x00", "\x00\x00"]
    assert nul.to is not None and nul.to.uri.user_unescaped == "null-\x00-null"


def test_esc02_percent_is_not_an_escape_in_method_or_header_name() -> None:
    m = parse(_get("esc02.dat"))
    assert isinstance(m, Request) and m.method == "RE%47IST%45R"
    assert [c.uri.host for c in m.contacts] == ["host1.example.com", "host3.example.com"]
    assert m.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert m.to is not None and m.to.display_name == "%Z%45"


def test_longreq_dblreq_semiuri_transports_mpart() -> None:
    assert len(parse(_get("longreq.dat")).via) == 34
    dbl = parse(_get("dblreq.dat"))
    assert dbl.body == b"" and b"INVITE" not in bytes(dbl)
    semi = parse(_get("semiuri.dat"))
    assert isinstance(semi, Request)
    assert semi.request_uri.user == "user;par=u%40example.net" and semi.request_uri.host == "example.com"
    assert [v.transport for v in parse(_get("transports.dat")).via] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]
    mpart = parse(_get("mpart01.dat"))
    assert len(mpart.body) == 553 and b"\x00" in mpart.body


def test_responses_with_unusual_reason_phrases() -> None:
    unreason = parse(_get("unreason.dat"))
    assert isinstance(unreason, Response) and unreason.status == 200
    assert unreason.reason == "= 2**3 * 5**2 но сто девяносто девять - простое"
    noreason = parse(_get("noreason.dat"))
    assert isinstance(noreason, Response) and noreason.status == 100 and noreason.reason == ""


def test_unknown_schemes_parse_as_opaque_uris() -> None:
    unkscm = parse(_get("unkscm.dat"))
    assert isinstance(unkscm, Request) and unkscm.request_uri.scheme == "nobodyknowsthisscheme"
    assert unkscm.request_uri.opaque == "totallyopaquecontent"
    novelsc = parse(_get("novelsc.dat"))
    assert isinstance(novelsc, Request) and novelsc.request_uri.scheme == "soap.beep"
    assert novelsc.request_uri.opaque == "//192.0.2.103:3002"
    unksm2 = parse(_get("unksm2.dat"))
    assert unksm2.to is not None and unksm2.to.uri.scheme == "isbn" and unksm2.to.uri.opaque == "2983792873"
    assert unksm2.contacts[0].uri.scheme == "name"


def test_contact_params_versus_uri_params() -> None:
    c1 = parse(_get("cparam01.dat")).contacts[0]
    assert "unknownparam" in c1.params and "unknownparam" not in c1.uri.params
    c2 = parse(_get("cparam02.dat")).contacts[0]
    assert "unknownparam" not in c2.params and "unknownparam" in c2.uri.params
    reg = parse(_get("regescrt.dat"))
    assert reg.contacts[0].uri.headers == {"Route": "%3Csip:sip.example.com%3E"}
    assert reg.content_length == 0


def test_rfc2543_invite_without_content_length_takes_the_rest_of_the_datagram() -> None:
    data = _get("inv2543.dat")
    m = parse(data)
    assert m.content_length is None and len(m.body) == 105
    assert m.via[0].branch is None and m.from_ is not None and m.from_.tag is None
    assert m.max_forwards is None


def test_regbadct_is_accepted_but_its_contact_view_is_an_error() -> None:
    m = parse(_get("regbadct.dat"))
    with pytest.raises(ParseError) as info:
        _ = m.contacts
    assert info.value.status == 400


def test_zeromf_and_bcast_parse() -> None:
    assert parse(_get("zeromf.dat")).max_forwards == 0
    bcast = parse(_get("bcast.dat"))
    assert bcast.via[1].host == "255.255.255.255"


def test_ipv6_references() -> None:
    good = parse(_get("ipv6-good.dat"))
    assert isinstance(good, Request)
    assert good.request_uri.host == "2001:db8::10" and str(good.request_uri).startswith("sip:[2001:db8::10]")
    assert good.via[0].host == "2001:db8::9:1"
    amb = parse(_get("port-ambiguous.dat"))
    assert isinstance(amb, Request)
    assert amb.request_uri.host == "2001:db8::10:5070" and amb.request_uri.port is None
    unamb = parse(_get("port-unambiguous.dat"))
    assert isinstance(unamb, Request)
    assert unamb.request_uri.host == "2001:db8::10" and unamb.request_uri.port == 5070
    with_delim = parse(_get("via-received-param-with-delim.dat"))
    assert with_delim.via[0].received == "[2001:db8::9:255]"
    no_delim = parse(_get("via-received-param-no-delim.dat"))
    assert no_delim.via[0].received == "2001:db8::9:255"
    mixed = parse(_get("mult-ip-in-header.dat"))
    assert [v.host for v in mixed.via] == ["2001:db8::9:1", "192.0.2.1", "2001:db8::9:255"]
    mapped = parse(_get("ipv4-mapped-ipv6.dat"))
    assert mapped.via[0].host == "::ffff:192.0.2.10" and mapped.via[0].port == 19823
