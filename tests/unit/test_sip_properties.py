"""Property tests: parse/serialize round trips of generated messages; garbage never raises anything
but ParseError (in parse, the typed views, parse_uri and the StreamFramer)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routr_ray.sip import Headers, ParseError, Request, StreamFramer, parse, parse_uri

TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
tokens = st.text(TOKEN_ALPHABET, min_size=1, max_size=12)
labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8).map(lambda s: "h" + s)
hosts = st.lists(labels, min_size=1, max_size=3).map(".".join)
users = st.text("abcdefghijklmnopqrstuvwxyzABC0123456789_.!~*'()&=+$,;?/-", min_size=1, max_size=12)
# header values: printable text (incl. UTF-8) without CR/LF, no leading/trailing whitespace
values = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="\r\n"),
    max_size=40,
).map(lambda s: s.strip(" \t"))
RESERVED = {"via", "v", "from", "f", "to", "t", "call-id", "i", "cseq", "content-length", "l", "max-forwards",
            "contact", "m", "route", "record-route", "expires"}
ext_names = tokens.filter(lambda n: n.lower() not in RESERVED)


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, list[tuple[str, str]], bytes]:
    method = draw(st.sampled_from(["INVITE", "REGISTER", "OPTIONS", "BYE", "MESSAGE"]) | tokens)
    uri = f"sip:{draw(users)}@{draw(hosts)}"
    port = draw(st.none() | st.integers(1, 65535))
    via_host = draw(hosts) + ("" if port is None else f":{port}")
    core = [
        ("Via", f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS', 'WS']))} {via_host};branch=z9hG4bK{draw(tokens)}"),
        (draw(st.sampled_from(["From", "f", "FROM"])), f"<sip:{draw(users)}@{draw(hosts)}>;tag={draw(tokens)}"),
        (draw(st.sampled_from(["To", "t"])), f'"{draw(tokens)}" <{uri}>'),
        (draw(st.sampled_from(["Call-ID", "i"])), draw(tokens) + "@" + draw(hosts)),
        ("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {method}"),
        ("Max-Forwards", str(draw(st.integers(0, 255)))),
    ]
    extra = draw(st.lists(st.tuples(ext_names, values), max_size=6))
    headers = draw(st.permutations(core + extra))
    body = draw(st.binary(max_size=200))
    headers.append(("Content-Length", str(len(body))))
    text = f"{method} {uri} SIP/2.0\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers) + "\r\n"
    return text.encode("utf-8") + body, headers, body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages())
def test_round_trip_of_generated_messages(sample: tuple[bytes, list[tuple[str, str]], bytes]) -> None:
    data, headers, body = sample
    m = parse(data)
    assert bytes(m) == data
    assert m.headers.items() == headers
    assert m.body == body
    assert m.via and m.cseq is not None and m.from_ is not None and m.from_.tag
    # rebuilt after a change, the message still carries everything, in order
    m.headers.prepend("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy")
    again = parse(bytes(m))
    items = again.headers.items()
    items.remove(("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKproxy"))
    assert items == headers and again.body == body
    assert again.via[0].host == "proxy.example.com"
    # and through the framer, in random chunks, twice in a row
    framer = StreamFramer()
    stream = data + data
    out: list[object] = []
    for i in range(0, len(stream), 37):
        out += framer.feed(stream[i : i + 37])
    assert out == [data, data]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(ext_names, values), max_size=5), st.binary(max_size=50))
def test_built_messages_round_trip(extra: list[tuple[str, str]], body: bytes) -> None:
    headers = Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bK1"), ("From", "<sip:a@b>;tag=1"), ("To", "<sip:c@d>"),
                       ("Call-ID", "x"), ("CSeq", "1 OPTIONS"), *extra])
    request = Request("OPTIONS", "sip:c@d", headers)
    request.set_body(body)
    parsed = parse(bytes(request))
    assert parsed.headers.items() == request.headers.items() and parsed.body == body


def _touch_views(data: bytes) -> None:
    try:
        m = parse(data)
    except ParseError as error:
        assert error.status in (None, 400, 413, 505)
        return
    for view in ("via", "from_", "to", "contacts", "call_id", "cseq", "max_forwards", "expires", "routes",
                 "record_routes", "content_length"):
        try:
            value = getattr(m, view)
        except ParseError:
            continue
        for item in value if isinstance(value, list) else [value]:
            try:
                _ = getattr(item, "uri", None)
            except ParseError:
                pass
    if isinstance(m, Request):
        try:
            _ = m.request_uri
        except ParseError:
            pass
    assert parse(bytes(m)).headers.items() == m.headers.items()


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_bytes_only_raise_parse_error(data: bytes) -> None:
    _touch_views(data)
    framer = StreamFramer(max_message_size=500)
    try:
        for frame in framer.feed(data):
            if isinstance(frame, bytes):
                _touch_views(frame)
    except ParseError:
        pass


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages(), st.data())
def test_mutated_messages_only_raise_parse_error(sample: tuple[bytes, list[tuple[str, str]], bytes],
                                                 data: st.DataObject) -> None:
    raw = bytearray(sample[0])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = data.draw(st.sampled_from(b'\r\n \t:;,<>"@[]%\x00\xff=/?*'))
        if action == "flip":
            raw[pos] = byte
        elif action == "insert":
            raw.insert(pos, byte)
        elif len(raw) > 1:
            del raw[pos]
    _touch_views(bytes(raw))


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=60) | st.tuples(st.sampled_from(["sip:", "sips:", "tel:", "x:"]),
                                        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=30)).map("".join))
def test_parse_uri_only_raises_parse_error(text: str) -> None:
    try:
        uri = parse_uri(text)
    except ParseError as error:
        assert error.status == 400
        return
    assert parse_uri(str(uri)).scheme == uri.scheme
