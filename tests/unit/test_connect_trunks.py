"""Connect and trunks (issue 15): a call to the Contact we registered for a trunk (RFC 6140 GIN: the DID as user
part, our ``rtk`` token in the URI) is from-pstn through that trunk; trunk URIs share calls by weight within a
priority (RFC 2782) with the others as failover targets; SIP Connect 1.1 §8 headers pass."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter

from test_connect_support import KEY, Harness, resources, sip

from routr_ray.config.resources import Trunk, TrunkOutbound, TrunkUri, UriFormat
from routr_ray.processors.connect import FAILOVER_KEY, StaticResources
from routr_ray.processors.connect.router import ordered_trunk_uris
from routr_ray.processors.connect.uri_format import e164
from routr_ray.sip.message import Request, Response
from routr_ray.trunks.contact_token import TrunkContactTokens
from routr_ray.util.rfc2782 import weighted_order

TRUNK_SOURCE = ("198.51.100.7", 5060, "UDP")


def registering(h: Harness) -> None:
    """trunk-01 of the test set with sendRegister on."""
    res = resources()
    trunks = tuple(dataclasses.replace(t, outbound=dataclasses.replace(t.outbound, send_register=True))
                   if t.ref == "trunk-01" and t.outbound is not None else t for t in res.trunks)
    h.processor.source = StaticResources(dataclasses.replace(res, trunks=trunks))


def gin_invite(user: str, token: str, *, to: str | None = None) -> Request:
    ruri = f"sip:{user}@10.0.0.1:5060;rtk={token}"
    return sip("INVITE", ruri, from_="sip:+15550001111@provider.net", to=to or f"sip:{user}@provider.net",
               contact="<sip:gw@198.51.100.7>", via="SIP/2.0/UDP 198.51.100.7:5060")


async def test_a_call_to_our_registered_contact_is_from_pstn_through_that_trunk() -> None:
    h = Harness()
    registering(h)
    await h.register("1001", "<sip:1001@10.0.0.5:5060>")
    token = TrunkContactTokens(KEY).token("trunk-01")
    out, _ = await h.send(gin_invite("+17066041487", token), TRUNK_SOURCE)
    assert isinstance(out, Request) and out.uri == "sip:1001@10.0.0.5:5060"
    assert out.headers.get("X-Call-Direction") == "from-pstn"


async def test_the_did_may_come_in_the_to_header() -> None:
    """A provider that keeps our Contact's user-less URI puts the DID only in To."""
    h = Harness()
    registering(h)
    await h.register("1001", "<sip:1001@10.0.0.5:5060>")
    token = TrunkContactTokens(KEY).token("trunk-01")
    req = sip("INVITE", f"sip:10.0.0.1:5060;rtk={token}", from_="sip:+15550001111@provider.net",
              to="sip:+17066041487@provider.net", contact="<sip:gw@198.51.100.7>", via="SIP/2.0/UDP 198.51.100.7")
    out, _ = await h.send(req, TRUNK_SOURCE)
    assert isinstance(out, Request) and out.uri == "sip:1001@10.0.0.5:5060"


async def test_a_forged_or_foreign_token_gets_no_trunk() -> None:
    h = Harness()
    registering(h)
    await h.register("1001", "<sip:1001@10.0.0.5:5060>")
    forged = TrunkContactTokens(b"not our key" * 3).token("trunk-01")
    out, _ = await h.send(gin_invite("+17066041487", forged), ("203.0.113.9", 5060, "UDP"))
    assert isinstance(out, Response) and out.status == 403
    # a trunk that does not register is not matched by its token either
    h2 = Harness()
    await h2.register("1001", "<sip:1001@10.0.0.5:5060>")
    out, _ = await h2.send(gin_invite("+17066041487", TrunkContactTokens(KEY).token("trunk-01")),
                           ("203.0.113.9", 5060, "UDP"))
    assert isinstance(out, Response) and out.status == 403


async def test_the_trunk_acl_still_applies_to_a_registered_trunk() -> None:
    h = Harness()
    registering(h)
    token = TrunkContactTokens(KEY).token("trunk-01")
    out, _ = await h.send(gin_invite("+17066041487", token), ("203.0.113.9", 5060, "UDP"))
    assert isinstance(out, Response) and out.status == 403


def test_rfc2782_weighted_order_shares_by_weight_and_keeps_priorities() -> None:
    rng = random.Random(15)
    items = [("a", 10, 3), ("b", 10, 1), ("c", 5, 0), ("d", 20, 9)]
    firsts: Counter[str] = Counter()
    for _ in range(4000):
        order = weighted_order(items, priority=lambda i: i[1], weight=lambda i: i[2], rng=rng)
        assert order[0][0] == "c" and order[-1][0] == "d"  # priority 5, then 10, then 20
        firsts[order[1][0]] += 1
    assert abs(firsts["a"] - 3000) < 4 * (4000 * 0.75 * 0.25) ** 0.5


def test_trunk_uris_share_the_load_3_to_1_over_400_calls() -> None:
    trunk = Trunk("t", "T", None, TrunkOutbound((TrunkUri("a.example", 5060, "udp", priority=1, weight=3),
                                                 TrunkUri("b.example", 5060, "udp", priority=1, weight=1),
                                                 TrunkUri("c.example", 5060, "udp", priority=2, weight=1))))
    rng = random.Random(2026)
    picks = Counter(ordered_trunk_uris(trunk, rng)[0].host for _ in range(400))
    assert abs(picks["a.example"] - 300) <= 35 and picks["c.example"] == 0  # 4 sigma of a 3:1 share
    assert [u.host for u in ordered_trunk_uris(trunk, rng)][2] == "c.example"  # the lower priority comes last


async def test_failover_targets_follow_the_chosen_uri() -> None:
    h = Harness()
    out, resp = await h.authed(sip("INVITE", "sip:+15551234567@sip.local", from_="sip:1001@sip.local",
                                   to="sip:+15551234567@sip.local", contact="<sip:caller@10.0.0.5:5060>"),
                               "1001", "1234")
    assert isinstance(out, Request)
    assert resp.metadata[FAILOVER_KEY] == "sip:+15551234567@sip.provider.net:5070"


async def test_diversion_and_history_info_pass_to_the_trunk() -> None:
    """SIP Connect 1.1 §8: Diversion (RFC 5806) and History-Info (RFC 7044) go to the provider as sent."""
    h = Harness()
    req = sip("INVITE", "sip:+15551234567@sip.local", from_="sip:1002@sip.local", to="sip:+15551234567@sip.local",
              contact="<sip:caller@10.0.0.5:5060>",
              extra=("Diversion: <sip:1002@sip.local>;reason=unconditional",
                     "History-Info: <sip:1002@sip.local>;index=1"))
    out, _ = await h.authed(req, "1002", "1234")
    assert isinstance(out, Request)
    assert out.headers.get("Diversion") == "<sip:1002@sip.local>;reason=unconditional"
    assert out.headers.get("History-Info") == "<sip:1002@sip.local>;index=1"


def e164_trunk(h: Harness) -> None:
    """trunk-01 of the test set asking for E.164 Request-URIs."""
    res = resources()
    trunks = tuple(dataclasses.replace(t, outbound=dataclasses.replace(t.outbound, uri_format=UriFormat.E164))
                   if t.ref == "trunk-01" and t.outbound is not None else t for t in res.trunks)
    h.processor.source = StaticResources(dataclasses.replace(res, trunks=trunks))


def test_e164_numbers() -> None:
    assert e164("17066041487") == "+17066041487"
    assert e164("+1 (706) 604-1487") == "+17066041487"  # RFC 3966 visual separators
    assert e164("+4930.1234.5678") == "+493012345678"
    for bad in ("", "+", "1234567890123456", "*67 7066041487", "1002#", "++17066041487", "١٢٣"):
        assert e164(bad) is None, bad


async def test_an_e164_trunk_gets_plus_digits_and_user_phone_on_every_uri() -> None:
    """RFC 3261 §19.1.6: a telephone number as the user part is marked user=phone; the failover URIs too."""
    h = Harness()
    e164_trunk(h)
    out, resp = await h.authed(sip("INVITE", "sip:17066041499@sip.local", from_="sip:1002@sip.local",
                                   to="sip:17066041499@sip.local", contact="<sip:caller@10.0.0.5:5060>"),
                               "1002", "1234")
    assert isinstance(out, Request)
    assert out.uri == "sip:+17066041499@primary.provider.net:5060;user=phone;transport=tcp"
    assert resp.metadata[FAILOVER_KEY] == "sip:+17066041499@sip.provider.net:5070;user=phone"
    # the default trunk format keeps the number as dialled
    h2 = Harness()
    out, _ = await h2.authed(sip("INVITE", "sip:17066041499@sip.local", from_="sip:1002@sip.local",
                                 to="sip:17066041499@sip.local", contact="<sip:caller@10.0.0.5:5060>"),
                             "1002", "1234")
    assert isinstance(out, Request) and out.uri == "sip:17066041499@primary.provider.net:5060;transport=tcp"


async def test_a_dod_number_that_is_no_e164_number_is_refused_484() -> None:
    h = Harness()
    e164_trunk(h)
    req = sip("INVITE", "sip:*67@sip.local", from_="sip:asterisk@sip.local", to="sip:*67@sip.local",
              contact="<sip:asterisk@10.0.0.5:5060>", extra=("X-DOD-Number: +17066041487",))
    out, _ = await h.authed(req, "asterisk", "secret")
    assert isinstance(out, Response) and out.status == 484
