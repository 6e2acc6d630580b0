"""A small authoritative DNS responder on loopback for RFC 3263 tests (dnspython's message classes, asyncio UDP).

``zone`` maps (name, type) to record texts in zone-file syntax, e.g. ``("_sip._udp.trunk.test", "SRV"):
["10 60 5070 a.trunk.test.", "20 0 5071 b.trunk.test."]``; anything else is answered NXDOMAIN. Every query is
recorded in ``queries`` as (name, type).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import dns.message
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset


class DnsResponder(asyncio.DatagramProtocol):
    def __init__(self, zone: Mapping[tuple[str, str], Sequence[str]], ttl: int = 60) -> None:
        self.zone = {(name.lower().rstrip("."), rdtype.upper()): list(texts) for (name, rdtype), texts in zone.items()}
        self.ttl = ttl
        self.queries: list[tuple[str, str]] = []
        self.transport: asyncio.DatagramTransport | None = None

    @classmethod
    async def start(cls, zone: Mapping[tuple[str, str], Sequence[str]], host: str = "127.0.0.1",
                    ttl: int = 60) -> DnsResponder:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(lambda: cls(zone, ttl), local_addr=(host, 0))
        return protocol

    @property
    def address(self) -> tuple[str, int]:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[:2]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        response.flags |= 0x0400  # AA
        question = query.question[0]
        name = question.name.to_text(True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        texts = self.zone.get((name, rdtype))
        if texts:
            rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, question.rdtype)
            rrset.update_ttl(self.ttl)
            for text in texts:
                rrset.add(dns.rdata.from_text(dns.rdataclass.IN, question.rdtype, text))
            response.answer.append(rrset)
        elif not any(known == name for known, _ in self.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        assert self.transport is not None
        self.transport.sendto(response.to_wire(), addr)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
