"""Frames and list packing of the internal data plane (routr_ray/link/frames.py)."""

from __future__ import annotations

import pytest

from routr_ray.link.frames import CALL, HELLO, REPLY, FrameError, FrameReader, frame, pack_list, unpack_list


def test_frames_survive_any_split() -> None:
    stream = frame(HELLO, 0, b"token") + frame(CALL, 7, b"x" * 1000) + frame(REPLY, 2**32 - 1, b"")
    whole = FrameReader().feed(stream)
    assert whole == [(HELLO, 0, b"token"), (CALL, 7, b"x" * 1000), (REPLY, 2**32 - 1, b"")]
    reader = FrameReader()
    pieces = [f for i in range(len(stream)) for f in reader.feed(stream[i:i + 1])]
    assert pieces == whole


def test_oversized_frame_is_refused_before_it_is_buffered() -> None:
    reader = FrameReader(max_frame=100)
    with pytest.raises(FrameError, match="101 bytes"):
        reader.feed(frame(CALL, 1, b"y" * 101)[:9])


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(FrameError, match="kind 9"):
        FrameReader().feed(frame(9, 1, b""))


@pytest.mark.parametrize("items", [[], [b""], [b"a", b"", b"\x00" * 70000, b"last"]])
def test_list_round_trip(items: list[bytes]) -> None:
    assert unpack_list(pack_list(items)) == items


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00\x02\x00\x00\x00\x01a", b"\x00\x00\x00\x01\x00\x00",
                                  pack_list([b"a"]) + b"extra", b"\x00\x00\x00\x01\x00\x00\x00\x05ab"])
def test_corrupt_lists_raise(data: bytes) -> None:
    with pytest.raises(FrameError):
        unpack_list(data)
