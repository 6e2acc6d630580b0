"""The EdgePort's resolver (routr_ray/edge/resolver.py): cache, shared lookups and the cap on lookups in flight."""

from __future__ import annotations

import asyncio
import socket

import pytest

from routr_ray.edge.resolver import Resolver, ResolverBusy

V4 = frozenset({socket.AF_INET})


class SlowResolver(Resolver):
    """getaddrinfo replaced by lookups that end when the test says so."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.release = asyncio.Event()
        self.asked: list[str] = []

    async def _lookup(self, loop: asyncio.AbstractEventLoop, host: str) -> tuple[tuple[int, str], ...]:
        self.lookups += 1
        self.asked.append(host)
        await self.release.wait()
        return ((socket.AF_INET, "192.0.2.7"),)


async def test_lookups_past_the_cap_are_refused_and_a_pending_name_is_shared() -> None:
    resolver = SlowResolver(max_pending=2)
    first = asyncio.create_task(resolver.resolve("a.example", V4))
    second = asyncio.create_task(resolver.resolve("b.example", V4))
    again = asyncio.create_task(resolver.resolve("a.example", V4))  # joins the pending lookup of a.example
    await asyncio.sleep(0)
    with pytest.raises(ResolverBusy):
        await resolver.resolve("c.example", V4)
    resolver.release.set()
    assert await asyncio.gather(first, second, again) == ["192.0.2.7"] * 3
    assert resolver.asked == ["a.example", "b.example"]
    assert await resolver.resolve("c.example", V4) == "192.0.2.7"  # room again


async def test_answers_are_cached_for_their_ttl() -> None:
    now = [100.0]
    resolver = SlowResolver(ttl=30.0, clock=lambda: now[0])
    resolver.release.set()
    assert await resolver.resolve("A.Example.", V4) == "192.0.2.7"
    assert await resolver.resolve("a.example", V4) == "192.0.2.7"
    assert resolver.lookups == 1
    now[0] += 31.0
    await resolver.resolve("a.example", V4)
    assert resolver.lookups == 2


async def test_an_address_of_another_family_is_not_returned() -> None:
    resolver = SlowResolver()
    resolver.release.set()
    assert await resolver.resolve("a.example", frozenset({socket.AF_INET6})) is None
