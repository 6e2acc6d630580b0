"""links.linked(): the link when a server of the service answers, the Ray-call fallback when none can be reached
(routr_ray/actors/links.py; the registry is replaced, no Ray here)."""

from __future__ import annotations

import pytest

from routr_ray.actors import links
from routr_ray.link import Endpoint, LinkServer


@pytest.fixture(autouse=True)
def no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    def unavailable() -> object:
        raise RuntimeError("no Ray in this test")

    monkeypatch.setattr(links, "registry", unavailable)
    monkeypatch.setenv(links.LINK_ENV, "1")


def encode(items: list[bytes]) -> bytes:
    return b"|".join(items)


def decode(payload: bytes) -> list[bytes]:
    return payload.split(b"|")


async def fallback(items: list[bytes]) -> list[bytes]:
    return [b"ray:" + item for item in items]


async def test_uses_the_link_when_a_server_is_listed_and_falls_back_when_it_is_gone() -> None:
    async def handler(payload: bytes) -> bytes:
        return encode([b"link:" + item for item in decode(payload)])

    server = LinkServer(handler, token=b"k")
    await server.start()
    send = links.linked("svc", encode, decode, fallback)
    assert await send([b"a"]) == [b"ray:a"]  # nothing listed yet
    links.directory().pool("svc").update([Endpoint("m", *server.address, b"k")])
    assert await send([b"a", b"b"]) == [b"link:a", b"link:b"]
    await server.close()
    links.directory().pool("svc").update([Endpoint("m2", *server.address, b"k")])  # a dead address
    assert await send([b"c"]) == [b"ray:c"]  # refused: nothing was sent, the Ray call carries it


async def test_links_off_is_the_fallback_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(links.LINK_ENV, "0")
    assert links.linked("svc", encode, decode, fallback) is fallback
