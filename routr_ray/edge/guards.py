"""The EdgePort's guards (issue 3 item 5, DESIGN §4): method filter, banned source networks, per-source
request rate limit with a ban, and a rate-limited summary log for malformed messages.

Routr declares ``methods``/``unknownMethodAction`` and "reject messages from banned IPs" but enforces
neither (routr.md §5.8, §12); here they are enforced before a message costs a dispatcher hop.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from routr_ray.config.edgeport import RateLimit, SourceFilter, UnknownMethodAction
from routr_ray.util.netmatch import IPNetwork, NetworkSet, ip_of, longest_match

__all__ = [
    "MalformedLog",
    "MethodDecision",
    "MethodFilter",
    "RateLimiter",
    "SourceGuard",
    "ip_of",
]

Clock = Callable[[], float]


class MethodDecision(enum.Enum):
    ACCEPT = "accept"
    DISCARD = "discard"
    RESPOND_405 = "respond 405"


class MethodFilter:
    """``methods`` + ``unknownMethodAction``. ACK and CANCEL always pass: they belong to a transaction
    the EdgePort already accepted (an ACK or CANCEL of an allowed INVITE must never be refused)."""

    ALWAYS = frozenset({"ACK", "CANCEL"})

    def __init__(self, methods: Iterable[str], action: UnknownMethodAction) -> None:
        self.methods = tuple(dict.fromkeys(methods))
        self._allowed = frozenset(self.methods) | self.ALWAYS
        self.action = action
        # RFC 3261 §20.5 / §21.4.6: a 405 MUST carry Allow with the methods supported
        self.allow_header = ", ".join(self.methods)

    def check(self, method: str) -> MethodDecision:
        if method in self._allowed:
            return MethodDecision.ACCEPT
        if self.action is UnknownMethodAction.DISCARD:
            return MethodDecision.DISCARD
        return MethodDecision.RESPOND_405


class SourceGuard:
    """Banned source networks (config ``spec.accessControlList``: ``deny``/``allow`` CIDR lists).

    A source is refused when a ``deny`` network contains it and no ``allow`` network at least as specific
    does (the most specific prefix wins; ``allow`` wins a tie). Non-IP sources are never refused here.
    """

    def __init__(self, acl: SourceFilter) -> None:
        self.deny = tuple(acl.deny)
        self.allow = tuple(acl.allow)
        self._cache: dict[str, bool] = {}

    def is_banned(self, host: str) -> bool:
        if not self.deny:
            return False
        cached = self._cache.get(host)
        if cached is not None:
            return cached
        ip = ip_of(host)
        banned = False
        if ip is not None:
            deny = longest_match(ip, self.deny)
            banned = deny >= 0 and longest_match(ip, self.allow) < deny
        if len(self._cache) >= 65536:
            self._cache.clear()
        self._cache[host] = banned
        return banned


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    banned_until: float = 0.0


class RateLimiter:
    """Per-source token bucket (``requestsPerSecond`` refill, ``burst`` capacity); a source that empties its
    bucket is banned for ``banSeconds`` (every request refused, none refilling the bucket). ``trusted``
    networks are exempt. The table of sources is bounded (least recently seen evicted first) so a spoofed
    flood cannot grow memory without limit.

    The sources of Trunks and Peers (:meth:`protect`: derived from the Connect resources, plus
    ``trunksAndPeers.networks``) are never banned (issue 14 item 8): a forged flood from a trunk's address, or a
    busy trunk, would otherwise get the trunk banned and its calls refused. They have their own bucket
    (``trunksAndPeers``: 1000/s, burst 2000 by default); requests over it are dropped, nothing more.

    Only well-formed requests are counted: a malformed message alone never bans (it may carry a forged
    source, and answering 400 costs little).
    """

    def __init__(self, config: RateLimit, *, clock: Clock = time.monotonic, max_sources: int = 100_000) -> None:
        self.config = config
        self.clock = clock
        self.max_sources = max_sources
        self.trusted = tuple(config.trusted)
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._protected_buckets: OrderedDict[str, _Bucket] = OrderedDict()
        self._trusted = NetworkSet(self.trusted)
        self._protected = NetworkSet(config.trunks_and_peers.networks)
        self._protected_sources: tuple[IPNetwork, ...] = ()  # the last protect(): kept across update()
        self.bans = 0
        self.protected_drops = 0  # requests of trunk/peer sources over their own limit (dropped, never banned)

    def protect(self, networks: Iterable[IPNetwork]) -> None:
        """The sources of Trunks and Peers now (replacing the previous set; the configured
        ``trunksAndPeers.networks`` always stay). A ban running on one of them ends at once."""
        self._protected_sources = tuple(networks)
        self._protected = NetworkSet((*self.config.trunks_and_peers.networks, *self._protected_sources))
        for host in [h for h in self._buckets if h in self._protected]:
            del self._buckets[host]

    def update(self, config: RateLimit) -> None:
        """A new ``rateLimit`` on the running limiter (issue 18: changed in place by a deploy): the sources keep
        their buckets (capped at the new burst) and their running bans, except that a source now trusted or
        protected, or every source when the limit is turned off, is unbanned at once."""
        self.config = config
        self.trusted = tuple(config.trusted)
        self._trusted = NetworkSet(self.trusted)
        self.protect(self._protected_sources)
        if not config.enabled:
            self._buckets.clear()
            return
        for host in [h for h in self._buckets if h in self._trusted]:
            del self._buckets[host]
        for bucket in self._buckets.values():
            bucket.tokens = min(bucket.tokens, float(config.burst))

    @property
    def protected_networks(self) -> tuple[IPNetwork, ...]:
        return self._protected.networks

    def is_trusted(self, host: str) -> bool:
        return host in self._trusted

    def is_protected(self, host: str) -> bool:
        """A Trunk's or a Peer's source: never banned, never evicted."""
        return host in self._protected

    def is_banned(self, host: str) -> bool:
        bucket = self._buckets.get(host)
        return bucket is not None and bucket.banned_until > self.clock()

    def allow(self, host: str) -> bool:
        """Count one request from ``host``; False when it is over its rate or banned."""
        config = self.config
        if not config.enabled or self.is_trusted(host):
            return True
        if self.is_protected(host):
            return self._allow_protected(host)
        now = self.clock()
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
            bucket = self._buckets[host] = _Bucket(float(config.burst), now)
        else:
            self._buckets.move_to_end(host)
        if bucket.banned_until:
            if now < bucket.banned_until:
                return False
            bucket.banned_until = 0.0
            bucket.tokens = float(config.burst)
            bucket.updated = now
        bucket.tokens = min(float(config.burst), bucket.tokens + (now - bucket.updated) * config.requests_per_second)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        bucket.banned_until = now + config.ban_seconds
        self.bans += 1
        return False

    def _allow_protected(self, host: str) -> bool:
        limit = self.config.trunks_and_peers
        now = self.clock()
        bucket = self._protected_buckets.get(host)
        if bucket is None:
            if len(self._protected_buckets) >= self.max_sources:
                self._protected_buckets.popitem(last=False)
            bucket = self._protected_buckets[host] = _Bucket(float(limit.burst), now)
        else:
            self._protected_buckets.move_to_end(host)
        bucket.tokens = min(float(limit.burst), bucket.tokens + (now - bucket.updated) * limit.requests_per_second)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        self.protected_drops += 1
        return False

    @property
    def banned_sources(self) -> list[str]:
        now = self.clock()
        return [host for host, b in self._buckets.items() if b.banned_until > now]


class MalformedLog:
    """Counts malformed messages and writes at most one summary line per ``interval`` seconds (DESIGN §8:
    "a rate limit on per-message errors"), instead of a line per message."""

    def __init__(
        self,
        logger: logging.Logger,
        *,
        interval: float = 10.0,
        clock: Clock = time.monotonic,
        what: str = "malformed SIP messages",
    ) -> None:
        self.logger = logger
        self.interval = interval
        self.clock = clock
        self.what = what
        self.total = 0
        self._reasons: Counter[str] = Counter()
        self._sources: Counter[str] = Counter()
        self._count = 0
        self._last = -float("inf")

    def record(self, source: str, reason: str) -> None:
        self.total += 1
        self._count += 1
        if len(self._reasons) < 64 or reason in self._reasons:
            self._reasons[reason[:80]] += 1
        if len(self._sources) < 1024 or source in self._sources:
            self._sources[source] += 1
        self.flush()

    def flush(self, force: bool = False) -> None:
        if not self._count:
            return
        now = self.clock()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        reasons = "; ".join(f"{r} x{n}" for r, n in self._reasons.most_common(3))
        sources = ", ".join(f"{s} x{n}" for s, n in self._sources.most_common(3))
        self.logger.warning("%d %s (top reasons: %s; top sources: %s)", self._count, self.what, reasons, sources)
        self._count = 0
        self._reasons.clear()
        self._sources.clear()
