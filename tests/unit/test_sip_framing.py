"""Stream framing by Content-Length (RFC 3261 §18.3) and RFC 5626 CRLF keepalives."""

from __future__ import annotations

import pytest

from routr_ray.sip import KEEPALIVE_PING, ParseError, StreamFramer, is_keepalive_datagram, parse

MSG = (
    b"MESSAGE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\nCSeq: 1 MESSAGE\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 11\r\n\r\nhi\r\n\r\nthere"
)


def test_messages_and_pings_in_one_chunk() -> None:
    framer = StreamFramer()
    out = framer.feed(b"\r\n\r\n" + MSG + b"\r\n" + MSG + b"\r\n\r\n")
    assert out == [KEEPALIVE_PING, MSG, MSG, KEEPALIVE_PING]
    assert parse(out[1]).body == b"hi\r\n\r\nthere"  # type: ignore[arg-type]
    assert framer.buffered == 0


def test_byte_at_a_time_with_pings_between() -> None:
    framer = StreamFramer()
    stream = MSG + b"\r\n\r\n" + MSG
    out = []
    for i in range(len(stream)):
        out += framer.feed(stream[i : i + 1])
    assert out == [MSG, KEEPALIVE_PING, MSG]


def test_partial_ping_waits() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r") == []
    assert framer.feed(b"\n") == [KEEPALIVE_PING]
    assert framer.feed(b"\r\n") == []
    assert framer.feed(MSG[:10]) == []  # the lone CRLF was skipped
    assert framer.feed(MSG[10:]) == [MSG]


def test_compact_and_folded_content_length() -> None:
    folded = MSG.replace(b"Content-Length: 11", b"l:\r\n 11")
    assert StreamFramer().feed(folded) == [folded]


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (MSG.replace(b"Content-Length: 11\r\n", b""), 400),
        (MSG.replace(b"Content-Length: 11\r\n", b"Content-Length: 11\r\nl: 11\r\n"), 400),
        (MSG.replace(b"Content-Length: 11", b"Content-Length: -11"), 400),
        (MSG.replace(b"Content-Length: 11", b"Content-Length: 1199999"), 413),
        (b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n", None),
    ],
)
def test_unrecoverable_framing_errors(data: bytes, status: int | None) -> None:
    framer = StreamFramer()
    with pytest.raises(ParseError) as info:
        framer.feed(data)
    assert info.value.status == status
    with pytest.raises(ParseError):  # the stream stays broken: the edge closes the connection
        framer.feed(b"\r\n")


def test_bounded_buffer_for_an_endless_header_section() -> None:
    framer = StreamFramer(max_message_size=1000)
    framer.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    with pytest.raises(ParseError) as info:
        for _ in range(200):
            framer.feed(b"X-Long: " + b"y" * 10 + b"\r\n")
    assert info.value.status == 413
    assert framer.buffered <= 1100


def test_keepalive_datagrams() -> None:
    assert is_keepalive_datagram(b"\r\n") and is_keepalive_datagram(b"\r\n\r\n")
    assert not is_keepalive_datagram(b"") and not is_keepalive_datagram(b"\r\nX")
