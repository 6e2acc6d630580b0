"""Guards of the EdgePort (routr_ray.edge.guards): method filter, banned networks, rate limit with ban,
malformed-message summary log. A fake clock drives time."""

from __future__ import annotations

import logging

import pytest

from routr_ray.config.edgeport import RateLimit, SourceFilter, TrunkRateLimit, UnknownMethodAction
from routr_ray.config.values import to_networks
from routr_ray.edge.guards import MalformedLog, MethodDecision, MethodFilter, RateLimiter, SourceGuard, ip_of


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_method_filter_accepts_configured_methods_and_always_ack_cancel() -> None:
    f = MethodFilter(["REGISTER", "INVITE", "REGISTER"], UnknownMethodAction.RESPOND)
    assert f.check("REGISTER") is MethodDecision.ACCEPT
    assert f.check("ACK") is MethodDecision.ACCEPT and f.check("CANCEL") is MethodDecision.ACCEPT
    assert f.check("MESSAGE") is MethodDecision.RESPOND_405
    assert f.check("register") is MethodDecision.RESPOND_405  # methods are case-sensitive (RFC 3261 §7.1)
    assert f.allow_header == "REGISTER, INVITE"  # duplicates removed, order kept (RFC 3261 §20.5)
    assert MethodFilter(["INVITE"], UnknownMethodAction.DISCARD).check("PUBLISH") is MethodDecision.DISCARD


def test_source_guard_most_specific_prefix_wins_and_allow_wins_a_tie() -> None:
    guard = SourceGuard(SourceFilter(
        deny=to_networks(["10.0.0.0/8", "192.168.1.0/24", "2001:db8::/32"]),
        allow=to_networks(["10.1.0.0/16", "192.168.1.0/24"]),
    ))
    assert guard.is_banned("10.2.3.4")
    assert not guard.is_banned("10.1.3.4")  # a more specific allow
    assert not guard.is_banned("192.168.1.7")  # same prefix: allow wins
    assert guard.is_banned("2001:db8::5") and guard.is_banned("[2001:db8::5]")
    assert guard.is_banned("::ffff:10.9.9.9")  # IPv4-mapped is IPv4
    assert not guard.is_banned("172.16.0.1")
    assert not guard.is_banned("not-an-ip")
    assert guard.is_banned("10.2.3.4")  # cached answer is the same


def test_source_guard_without_deny_bans_nothing() -> None:
    assert not SourceGuard(SourceFilter(allow=to_networks(["10.0.0.0/8"]))).is_banned("1.2.3.4")


def test_rate_limiter_bans_after_the_burst_and_lifts_the_ban() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(requests_per_second=10, burst=5, ban_seconds=30), clock=clock)
    assert all(limiter.allow("198.51.100.1") for _ in range(5))
    assert not limiter.allow("198.51.100.1")  # bucket empty -> banned
    assert limiter.is_banned("198.51.100.1") and limiter.bans == 1
    assert limiter.banned_sources == ["198.51.100.1"]
    assert limiter.allow("198.51.100.2")  # other sources are not affected
    clock.now += 29
    assert not limiter.allow("198.51.100.1")  # still banned, and requests do not refill the bucket
    clock.now += 2
    assert not limiter.is_banned("198.51.100.1")
    assert all(limiter.allow("198.51.100.1") for _ in range(5))  # a full bucket after the ban


def test_rate_limiter_refills_at_the_configured_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(requests_per_second=10, burst=2, ban_seconds=30), clock=clock)
    for _ in range(20):  # 10/s sustained for 2 s never empties a bucket of 2
        assert limiter.allow("198.51.100.3")
        clock.now += 0.1
    assert limiter.bans == 0


def test_trusted_sources_and_a_disabled_limiter_are_never_limited() -> None:
    clock = Clock()
    limiter = RateLimiter(RateLimit(requests_per_second=1, burst=1, trusted=to_networks(["127.0.0.0/8"])),
                          clock=clock)
    assert all(limiter.allow("127.0.0.1") for _ in range(100))
    assert limiter.is_trusted("127.0.0.5") and not limiter.is_trusted("127.1.0.0.1")
    off = RateLimiter(RateLimit(enabled=False, burst=1), clock=clock)
    assert all(off.allow("198.51.100.9") for _ in range(100))


def test_rate_limiter_table_is_bounded() -> None:
    limiter = RateLimiter(RateLimit(burst=1), clock=Clock(), max_sources=100)
    for i in range(1000):
        limiter.allow(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) == 100


def test_malformed_log_writes_one_summary_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    logger = logging.getLogger("test.edge.malformed")
    mlog = MalformedLog(logger, interval=10, clock=clock)
    with caplog.at_level(logging.WARNING, logger="test.edge.malformed"):
        for i in range(1000):
            mlog.record(f"198.51.100.{i % 3}", "bad Via" if i % 2 else "no CSeq")
        assert len(caplog.records) == 1  # the first one, then silence within the interval
        clock.now += 11
        mlog.record("198.51.100.1", "bad Via")
        assert len(caplog.records) == 2
        assert "1000 malformed" in caplog.records[1].getMessage()
        assert "bad Via" in caplog.records[1].getMessage() and "198.51.100." in caplog.records[1].getMessage()
        mlog.flush(force=True)  # nothing pending: no line
        assert len(caplog.records) == 2
    assert mlog.total == 1001


def test_ip_of() -> None:
    assert str(ip_of("[::1]")) == "::1"
    assert str(ip_of("::ffff:192.0.2.1")) == "192.0.2.1"
    assert ip_of("example.com") is None


# ---- trunk and peer sources (issue 14 item 8) ---------------------------------------------------------------


def test_trunk_and_peer_sources_are_never_banned_and_have_their_own_limit() -> None:
    clock = Clock()
    config = RateLimit(requests_per_second=100, burst=200, ban_seconds=60,
                       trunks_and_peers=TrunkRateLimit(requests_per_second=1000, burst=500))
    limiter = RateLimiter(config, clock=clock)
    limiter.protect(to_networks(["203.0.113.5/32"]))
    assert all(limiter.allow("203.0.113.5") for _ in range(500))  # 500 at once: > 200, under its own 500
    assert not limiter.allow("203.0.113.5")  # over its own limit: dropped ...
    assert not limiter.is_banned("203.0.113.5") and limiter.bans == 0 and limiter.protected_drops == 1
    clock.now += 0.0105
    assert sum(limiter.allow("203.0.113.5") for _ in range(20)) == 10  # ... and refilled at 1000/s, no ban
    assert limiter.is_protected("203.0.113.5") and not limiter.is_protected("203.0.113.6")
    assert not all(limiter.allow("203.0.113.6") for _ in range(201))  # anyone else: banned as before
    assert limiter.is_banned("203.0.113.6")


def test_protecting_a_source_ends_its_ban_and_configured_networks_always_stay() -> None:
    clock = Clock()
    config = RateLimit(requests_per_second=1, burst=1, ban_seconds=60,
                       trunks_and_peers=TrunkRateLimit(networks=to_networks(["198.51.100.0/24"])))
    limiter = RateLimiter(config, clock=clock)
    assert limiter.allow("192.0.2.9") and not limiter.allow("192.0.2.9") and limiter.is_banned("192.0.2.9")
    limiter.protect(to_networks(["192.0.2.9"]))  # the resources now name it (a reload)
    assert not limiter.is_banned("192.0.2.9") and limiter.allow("192.0.2.9")
    limiter.protect(())  # a reload that drops every trunk: the configured networks stay protected
    assert limiter.is_protected("198.51.100.7") and not limiter.is_protected("192.0.2.9")
    assert limiter.protected_networks == tuple(to_networks(["198.51.100.0/24"]))
