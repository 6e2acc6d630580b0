"""Bencoding of the ng protocol (routr_ray/media/bencode.py)."""

from __future__ import annotations

import pytest

from routr_ray.media.bencode import BencodeError, decode, encode


def test_the_ping_of_the_rtpengine_docs() -> None:
    assert encode({"command": "ping"}) == b"d7:command4:pinge"
    assert decode(b"d6:result4:ponge") == {"result": "pong"}


def test_keys_are_sorted_and_nested_values_round_trip() -> None:
    value = {"sdp": "v=0\r\n", "flags": ["trust-address", "generate-mid"], "call-id": "a@b", "limit": 32,
             "received-from": ["IP4", "10.0.0.1"], "tags": {"x": {"medias": [{"index": 1}]}}, "neg": -5}
    data = encode(value)
    assert data.startswith(b"d7:call-id3:a@b5:flagsl13:trust-address12:generate-mide")
    assert decode(data) == value


def test_utf8_and_undecodable_bytes_survive() -> None:
    assert decode(encode({"k": "é"})) == {"k": "é"}
    assert encode({"k": b"\xff"}) == b"d1:k1:\xffe"
    assert encode(decode(b"d1:k1:\xffe")) == b"d1:k1:\xffe"  # surrogateescape both ways


@pytest.mark.parametrize("data", [b"", b"d", b"d3:keye", b"i12", b"ix3e", b"5:abc", b"l", b"d1:ke",
                                  b"di1ei2ee", b"x", b"d1:ki1ee trailing", b"-1:a", b"i-e"])
def test_malformed_input_is_a_bencode_error(data: bytes) -> None:
    with pytest.raises(BencodeError):
        decode(data)


def test_nesting_is_bounded() -> None:
    with pytest.raises(BencodeError):
        decode(b"l" * 100 + b"e" * 100)
    with pytest.raises(BencodeError):
        encode(True)
    with pytest.raises(BencodeError):
        encode({1: "x"})
    with pytest.raises(BencodeError):
        encode(1.5)
