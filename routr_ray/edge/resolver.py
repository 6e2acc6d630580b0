"""Host names of next hops resolved without blocking the event loop (A/AAAA through ``loop.getaddrinfo``).

``getaddrinfo`` runs in the loop's default executor, so a slow DNS server never stalls SIP traffic. Answers are
cached for ``ttl`` seconds (failures for ``negative_ttl``), the cache is bounded, and concurrent lookups of one
name share a single call. At most ``max_pending`` distinct names are looked up at once: past that,
:class:`ResolverBusy` (the EdgePort answers 503), so requests naming thousands of hosts behind a slow DNS server
cannot queue unbounded work in the executor (a lookup that times out still holds its thread until
``getaddrinfo`` returns). Only addresses of a family the sending socket can reach are returned: an IPv4 socket
gets A records, an IPv6 socket bound to one address AAAA records, a dual-stack (``::``) socket either.

This is RFC 3263 without NAPTR/SRV: the transport and port come from the URI (or its defaults); SRV lookups
need a DNS library that is not installed (see the EdgePort note).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["Resolver", "ResolverBusy", "families_for"]

Family = int  # socket.AF_INET | socket.AF_INET6


class ResolverBusy(Exception):
    """``max_pending`` lookups are already in progress."""


class Resolver:
    def __init__(
        self,
        *,
        ttl: float = 30.0,
        negative_ttl: float = 5.0,
        max_entries: int = 4096,
        timeout: float = 5.0,
        max_pending: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_pending = max_pending
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self.timeout = timeout
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, tuple[tuple[Family, str], ...]]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[tuple[tuple[Family, str], ...]]] = {}
        self.lookups = 0

    async def resolve(self, host: str, families: frozenset[Family]) -> str | None:
        """The first address of ``host`` in one of ``families`` (in getaddrinfo's order), or None. Raises
        ResolverBusy when ``host`` needs a lookup and ``max_pending`` are in progress."""
        for family, address in await self._addresses(host.lower().rstrip(".")):
            if family in families:
                return address
        return None

    async def _addresses(self, host: str) -> tuple[tuple[Family, str], ...]:
        cached = self._cache.get(host)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        pending = self._pending.get(host)
        if pending is not None:
            return await asyncio.shield(pending)
        if len(self._pending) >= self.max_pending:
            raise ResolverBusy(f"{len(self._pending)} DNS lookups in progress")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[tuple[Family, str], ...]] = loop.create_future()
        self._pending[host] = future
        try:
            addresses = await self._lookup(loop, host)
            self._store(host, addresses)
            future.set_result(addresses)
            return addresses
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            self._pending.pop(host, None)

    async def _lookup(self, loop: asyncio.AbstractEventLoop, host: str) -> tuple[tuple[Family, str], ...]:
        self.lookups += 1
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_DGRAM, proto=socket.IPPROTO_UDP), self.timeout
            )
        except (OSError, TimeoutError, UnicodeError):
            return ()
        seen: dict[tuple[Family, str], None] = {}
        for family, _type, _proto, _name, sockaddr in infos:
            if family in (socket.AF_INET, socket.AF_INET6):
                seen[(int(family), str(sockaddr[0]).split("%", 1)[0])] = None
        return tuple(seen)

    def _store(self, host: str, addresses: tuple[tuple[Family, str], ...]) -> None:
        ttl = self.ttl if addresses else self.negative_ttl
        self._cache[host] = (self.clock() + ttl, addresses)
        self._cache.move_to_end(host)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)


def families_for(local_host: str) -> frozenset[Family]:
    """Address families a socket bound to ``local_host`` can send to."""
    if local_host == "::":
        return frozenset({socket.AF_INET, socket.AF_INET6})
    if ":" in local_host:
        return frozenset({socket.AF_INET6})
    return frozenset({socket.AF_INET})
