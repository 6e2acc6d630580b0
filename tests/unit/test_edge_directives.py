"""Next-hop metadata read by the EdgePort (routr_ray.edge.directives) and the non-blocking resolver."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from routr_ray.edge import directives
from routr_ray.edge.directives import EMPTY, HopDirective, read_directive
from routr_ray.edge.resolver import Resolver, ResolverBusy, families_for
from routr_ray.processors.connect import processor as connect_processor


def test_keys_are_the_ones_connect_writes() -> None:
    # the edge copies the strings (it may not import processors/); this keeps the copies honest
    assert directives.NEXT_HOP_KEY == connect_processor.NEXT_HOP_KEY
    assert directives.NEXT_HOP_FLOW_KEY == connect_processor.NEXT_HOP_FLOW_KEY
    assert directives.NEXT_HOP_EDGE_KEY == connect_processor.NEXT_HOP_EDGE_KEY
    assert directives.NEXT_HOP_EDGE_TAG_KEY == connect_processor.NEXT_HOP_EDGE_TAG_KEY
    assert directives.FAILOVER_KEY == connect_processor.FAILOVER_KEY
    assert directives.DIRECTION_KEY == connect_processor.DIRECTION_KEY


def test_trunk_ref_key_is_the_one_the_router_writes() -> None:
    import inspect

    from routr_ray.processors.connect import router

    assert f'"{directives.TRUNK_REF_KEY}"' in inspect.getsource(router)


def test_gateway_auth_key_is_the_one_the_router_writes() -> None:
    from routr_ray.processors.connect import router

    assert directives.GATEWAY_AUTH_KEY == router.GATEWAY_AUTH_KEY


def test_gateway_auth_is_decoded_and_never_shown() -> None:
    value = directives.gateway_auth_value("pbx-1", "s3cr:et")
    d = read_directive({directives.GATEWAY_AUTH_KEY: value})
    assert d.gateway_auth == ("pbx-1", "s3cr:et") and not d.is_empty
    assert "s3cr" not in repr(d)
    assert d.without_next_hop(()).gateway_auth == ("pbx-1", "s3cr:et")  # failover branches keep it
    for bad in ("not base64!", directives.gateway_auth_value("", "x"), "cGJ4"):  # no user / no colon
        assert read_directive({directives.GATEWAY_AUTH_KEY: bad}).gateway_auth is None


def test_full_directive() -> None:
    d = read_directive({
        directives.NEXT_HOP_KEY: "sip:10.0.0.5:5070;transport=tcp",
        directives.NEXT_HOP_FLOW_KEY: "true",
        directives.NEXT_HOP_EDGE_KEY: "edge-2",
        directives.FAILOVER_KEY: "sip:+1555@trunk-b.example:5060, <sip:+1555@[2001:db8::1]:5080;transport=tls>",
        directives.TRUNK_REF_KEY: "trunk-1",
        "routr-ray.processor": "connect",
    })
    assert d.next_hop is not None and (d.next_hop.host, d.next_hop.port, d.next_hop.transport) == (
        "10.0.0.5", 5070, "tcp")
    assert d.flow and d.edge_port_ref == "edge-2" and d.trunk_ref == "trunk-1"
    assert [(u.host, u.port) for u in d.failover] == [("trunk-b.example", 5060), ("2001:db8::1", 5080)]
    rest = d.without_next_hop(d.failover[1:])
    assert rest.next_hop is None and not rest.flow and rest.trunk_ref == "trunk-1" and len(rest.failover) == 1


def test_no_or_unrelated_metadata_is_the_empty_directive() -> None:
    assert read_directive(None) is EMPTY and read_directive({}) is EMPTY
    assert read_directive({"routr-ray.processor": "x"}) is EMPTY and EMPTY.is_empty


@pytest.mark.parametrize("value", ["", "not a uri", "tel:+1555", "sip:", "http://x"])
def test_unusable_values_are_ignored(value: str) -> None:
    d = read_directive({directives.NEXT_HOP_KEY: value, directives.NEXT_HOP_FLOW_KEY: "true",
                        directives.FAILOVER_KEY: f"{value}, sip:ok@192.0.2.1"})
    assert d.next_hop is None and not d.flow  # flow without a next hop means nothing
    assert [u.host for u in d.failover] == ["192.0.2.1"]


def test_failover_list_is_bounded() -> None:
    many = ", ".join(f"sip:u@192.0.2.{i}" for i in range(100))
    assert len(read_directive({directives.FAILOVER_KEY: many}).failover) == directives.MAX_FAILOVER


def test_flow_needs_the_literal_true() -> None:
    assert not read_directive({directives.NEXT_HOP_KEY: "sip:h:1", directives.NEXT_HOP_FLOW_KEY: "yes"}).flow
    assert read_directive({directives.NEXT_HOP_KEY: "sip:h:1", directives.NEXT_HOP_FLOW_KEY: " TRUE "}).flow
    assert isinstance(read_directive({directives.NEXT_HOP_KEY: "sip:h:1"}), HopDirective)


def test_families_for_the_sending_socket() -> None:
    assert families_for("0.0.0.0") == {socket.AF_INET}
    assert families_for("::") == {socket.AF_INET, socket.AF_INET6}
    assert families_for("::1") == {socket.AF_INET6}


class FakeLoopDns:
    def __init__(self, answers: dict[str, list[tuple[int, str]]], delay: float = 0.0) -> None:
        self.answers = answers
        self.delay = delay
        self.calls: list[str] = []

    async def __call__(self, host: str, port: Any, **kwargs: Any) -> list[Any]:
        self.calls.append(host)
        await asyncio.sleep(self.delay)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, "unknown")
        return [(family, socket.SOCK_DGRAM, 17, "", (addr, 0) if family == socket.AF_INET else (addr, 0, 0, 0))
                for family, addr in self.answers[host]]


async def test_resolver_picks_a_reachable_family_caches_and_shares_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    dns = FakeLoopDns({"dual.example": [(socket.AF_INET6, "2001:db8::9"), (socket.AF_INET, "192.0.2.9")]}, 0.01)
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", dns)
    now = [0.0]
    resolver = Resolver(ttl=30, negative_ttl=5, clock=lambda: now[0])
    v4, v6, again = await asyncio.gather(
        resolver.resolve("dual.example", families_for("0.0.0.0")),
        resolver.resolve("DUAL.example.", families_for("::1")),
        resolver.resolve("dual.example", families_for("::")),
    )
    assert (v4, v6, again) == ("192.0.2.9", "2001:db8::9", "2001:db8::9")
    assert dns.calls == ["dual.example"]  # one lookup for three concurrent callers
    assert await resolver.resolve("missing.example", families_for("0.0.0.0")) is None
    assert await resolver.resolve("missing.example", families_for("0.0.0.0")) is None
    assert dns.calls.count("missing.example") == 1  # negative answers are cached too
    now[0] = 31
    await resolver.resolve("dual.example", families_for("0.0.0.0"))
    assert dns.calls.count("dual.example") == 2  # expired


async def test_resolver_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", FakeLoopDns({}))
    resolver = Resolver(max_entries=10)
    for i in range(50):
        await resolver.resolve(f"h{i}.example", families_for("0.0.0.0"))
    assert len(resolver._cache) == 10


async def test_resolver_refuses_lookups_past_its_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    """At most ``max_pending`` names are looked up at once (the EdgePort answers 503 past it); a name already
    being looked up is shared, not counted again."""
    dns = FakeLoopDns({name: [(socket.AF_INET, "192.0.2.7")] for name in ("a.example", "b.example", "c.example")},
                      0.05)
    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", dns)
    resolver = Resolver(max_pending=2)
    v4 = families_for("0.0.0.0")
    first = asyncio.create_task(resolver.resolve("a.example", v4))
    second = asyncio.create_task(resolver.resolve("b.example", v4))
    again = asyncio.create_task(resolver.resolve("a.example", v4))
    await asyncio.sleep(0)
    with pytest.raises(ResolverBusy):
        await resolver.resolve("c.example", v4)
    assert await asyncio.gather(first, second, again) == ["192.0.2.7"] * 3
    assert dns.calls == ["a.example", "b.example"]
    assert await resolver.resolve("c.example", v4) == "192.0.2.7"  # room again
