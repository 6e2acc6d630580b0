"""Locating SIP servers by DNS, RFC 3263 §4: NAPTR → SRV → A/AAAA, without blocking, honouring TTLs.

For a next hop whose host is a name with no explicit port (``next_hop.py``); numeric hosts and explicit ports
skip it (§4.2: A/AAAA only). Steps for ``sip:name`` / ``sips:name``:

1. **Transport** (§4.1): the URI's ``transport`` parameter; else the NAPTR records of the name, those whose
   service is one we have a listener for (``SIP+D2U`` udp, ``SIP+D2T`` tcp, ``SIPS+D2T`` tls, ``SIP+D2W`` ws,
   ``SIPS+D2W`` wss; only ``SIPS+`` ones for a ``sips:`` URI) by order then preference, each replacement an SRV
   name; else SRV queries ``_sips._tcp``, ``_sip._tcp``, ``_sip._udp`` (those we can use) and the first that
   answers; else UDP (TLS for ``sips:``) at the name itself.
2. **Servers** (§4.4): the SRV records of that name, by priority, then in a random order weighted by weight
   (RFC 2782, ``util/rfc2782.py``); no SRV: the name itself at the default port (5060, 5061 for TLS).
3. **Addresses**: each target's A/AAAA records, of a family the sending socket can reach.

The result is every (transport, address, port) in order: the EdgePort sends to the first and, when it fails
(503, 408, a timeout or a transport error), to the next (§4.3), with the request's Request-URI unchanged.

Lookups go through dnspython's asyncio resolver (the system's nameservers, or ``ROUTR_RAY_DNS_SERVERS=host:port,
...``): answers are cached for their TTL (at least ``min_ttl``), negative answers and failures for
``negative_ttl``, the cache is bounded, at most ``max_pending`` names are looked up at once, and a lookup gives up
after ``lifetime`` seconds (the hop is then resolved as the plain name, through ``resolver.py``'s getaddrinfo,
which also knows /etc/hosts and has its own cap).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from routr_ray.util.rfc2782 import weighted_order

__all__ = ["DNS_SERVERS_ENV", "DnsRecords", "Located", "ServerLocator", "Srv"]

log = logging.getLogger(__name__)

DNS_SERVERS_ENV = "ROUTR_RAY_DNS_SERVERS"

# NAPTR services (RFC 3263 §4.1, RFC 7118 §6 for WebSocket) -> our transport names
_NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls", "SIP+D2W": "ws", "SIPS+D2W": "wss"}
# SRV prefixes to try without NAPTR, in our order of preference (§4.1: "the client SHOULD query for the SRV
# records of the transports it supports")
_SRV_PREFIXES = (("tls", "_sips._tcp"), ("tcp", "_sip._tcp"), ("udp", "_sip._udp"))
_SRV_PREFIX_OF = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp", "ws": "_sip._ws", "wss": "_sips._ws"}


@dataclass(frozen=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class Located:
    """One server to try: a transport, an address and a port (and the name it was found under)."""

    transport: str
    host: str
    port: int
    name: str


def default_port(transport: str) -> int:
    return 5061 if transport in ("tls", "wss") else 5060


class DnsRecords:
    """NAPTR, SRV and A/AAAA lookups with a TTL cache (see the module docstring)."""

    def __init__(self, nameservers: Iterable[tuple[str, int]] | None = None, *, lifetime: float = 2.0,
                 min_ttl: float = 5.0, negative_ttl: float = 30.0, max_entries: int = 4096,
                 max_pending: int = 64, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self.min_ttl = min_ttl
        self.negative_ttl = negative_ttl
        self.max_entries = max_entries
        self.max_pending = max_pending
        self.clock = clock
        self._nameservers = list(nameservers) if nameservers is not None else None
        self._resolver: Any = None
        self._cache: OrderedDict[tuple[str, str], tuple[float, tuple[Any, ...]]] = OrderedDict()
        self._pending: dict[tuple[str, str], asyncio.Future[tuple[Any, ...]]] = {}
        self.queries = 0

    @classmethod
    def from_env(cls) -> DnsRecords:
        text = os.environ.get(DNS_SERVERS_ENV, "").strip()
        if not text:
            return cls()
        servers = []
        for item in filter(None, (part.strip() for part in text.split(","))):
            host, _, port = item.rpartition(":") if item.count(":") == 1 or item.startswith("[") else (item, "", "")
            servers.append((host.strip("[]") or item, int(port) if port.isdigit() else 53))
        return cls(servers)

    def _dns(self) -> Any:
        if self._resolver is None:
            import dns.asyncresolver

            if self._nameservers is None:
                try:
                    resolver = dns.asyncresolver.Resolver()
                except Exception:  # noqa: BLE001 - no resolv.conf: names resolve through getaddrinfo only
                    resolver = dns.asyncresolver.Resolver(configure=False)
            else:
                resolver = dns.asyncresolver.Resolver(configure=False)
                resolver.nameservers = [host for host, _ in self._nameservers]
                if self._nameservers:
                    resolver.port = self._nameservers[0][1]
            resolver.lifetime = self.lifetime
            resolver.timeout = self.lifetime
            self._resolver = resolver
        return self._resolver

    async def naptr(self, name: str) -> list[tuple[int, int, str, str, str]]:
        """(order, preference, flags, service, replacement) of ``name``."""
        return list(await self._records(name, "NAPTR"))

    async def srv(self, name: str) -> list[Srv]:
        return list(await self._records(name, "SRV"))

    async def addresses(self, name: str, families: frozenset[int]) -> list[str]:
        found: list[str] = []
        for family, rdtype in ((socket.AF_INET6, "AAAA"), (socket.AF_INET, "A")):
            if family in families:
                found += await self._records(name, rdtype)
        return found

    async def _records(self, name: str, rdtype: str) -> tuple[Any, ...]:
        key = (name.lower().rstrip("."), rdtype)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        if len(self._pending) >= self.max_pending:
            return ()  # too many names in flight: this hop is resolved as a plain name (resolver.py caps that too)
        future: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            records, ttl = await self._query(key[0], rdtype)
            self._store(key, records, ttl)
            future.set_result(records)
            return records
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()
            raise
        finally:
            self._pending.pop(key, None)

    async def _query(self, name: str, rdtype: str) -> tuple[tuple[Any, ...], float]:
        import dns.exception
        import dns.resolver

        self.queries += 1
        try:
            answer = await self._dns().resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except (dns.exception.DNSException, OSError) as exc:
            log.debug("DNS %s %s: %r", rdtype, name, exc)
            return (), self.negative_ttl
        rrset = answer.rrset
        if rrset is None:
            return (), self.negative_ttl
        records: list[Any] = []
        for rdata in rrset:
            if rdtype == "SRV":
                records.append(Srv(rdata.priority, rdata.weight, rdata.port, rdata.target.to_text(True)))
            elif rdtype == "NAPTR":
                records.append((rdata.order, rdata.preference, rdata.flags.decode(errors="replace").lower(),
                                rdata.service.decode(errors="replace").upper(), rdata.replacement.to_text(True)))
            else:
                records.append(rdata.address)
        return tuple(records), max(self.min_ttl, float(rrset.ttl))

    def _store(self, key: tuple[str, str], records: tuple[Any, ...], ttl: float) -> None:
        self._cache[key] = (self.clock() + (ttl if records else self.negative_ttl), records)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)


class ServerLocator:
    """RFC 3263 §4 for one name (see the module docstring)."""

    def __init__(self, records: DnsRecords, *, rng: random.Random | None = None, max_targets: int = 8) -> None:
        self.records = records
        self.rng = rng or random.Random()
        self.max_targets = max_targets

    async def locate(self, name: str, *, secure: bool, transport: str | None, supported: frozenset[str],
                     families: frozenset[int]) -> list[Located]:
        """Every server of ``name`` to try, in order; [] when DNS knows nothing (use A/AAAA of the name)."""
        candidates = await self._srv_names(name, secure=secure, transport=transport, supported=supported)
        located: list[Located] = []
        for chosen, srv_name in candidates:
            records = await self.records.srv(srv_name)
            if not records:
                continue
            ordered = weighted_order(records, priority=lambda r: r.priority, weight=lambda r: r.weight,
                                     rng=self.rng)
            for record in ordered:
                if record.target in ("", "."):
                    continue  # "service decidedly not available" (RFC 2782)
                for address in await self.records.addresses(record.target, families):
                    located.append(Located(chosen, address, record.port, record.target))
            if located:
                break
        return located[: self.max_targets]

    async def _srv_names(self, name: str, *, secure: bool, transport: str | None,
                         supported: frozenset[str]) -> list[tuple[str, str]]:
        """(transport, SRV name) to query, in order."""
        if transport is not None:
            prefix = _SRV_PREFIX_OF.get(transport)
            return [(transport, f"{prefix}.{name}")] if prefix else []
        naptrs = await self.records.naptr(name)
        chosen = []
        for _order, _pref, flags, service, replacement in sorted(naptrs, key=lambda n: (n[0], n[1])):
            kind = _NAPTR_SERVICES.get(service)
            if kind is None or kind not in supported or flags != "s" or (secure and not service.startswith("SIPS")):
                continue
            chosen.append((kind, replacement))
        if chosen:
            return chosen
        return [(kind, f"{prefix}.{name}") for kind, prefix in _SRV_PREFIXES
                if kind in supported and (not secure or kind == "tls")]
