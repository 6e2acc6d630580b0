"""Digest authentication for Connect (RFC 3261 §22, RFC 2617/7616) and a ban on repeated failures.

Routr's digest (routr.md §3.4, §12) trusts the realm the client writes, keeps no nonce check, answers only
401 and reads only `Authorization`. Here:

* the realm is chosen by the server (the Domain's URI, see `ConnectProcessor`), and the nonce is HMAC-bound
  to it, so a credential computed for another realm fails;
* `Authorization` and `Proxy-Authorization` are both read; the answer is 401/WWW-Authenticate for REGISTER
  and 407/Proxy-Authenticate otherwise (RFC 3261 §22.1, §22.3), or 401 for everything with `always_401`;
* a correct response on an expired nonce gets a new challenge with `stale=true` (RFC 2617 §3.2.1);
* a username we do not know is verified like a known one (nonce checked, then "no password") and gets the
  same challenge, so usernames cannot be enumerated;
* the nonce is bound to the client's source address (the packet's, as the EdgePort saw it): a credential
  sniffed on the way is refused from any other address (INVALID_NONCE, a new challenge);
* every accepted nonce-count is remembered (`NonceUses`, RFC 7616 §3.4.4): the same Authorization sent again,
  even from the same address, gets a new challenge with `stale=true`. The table is per replica (bounded LRU,
  see `routr_ray/sip/digest.py`), not in the Location shard that owns the user: that would add a Ray hop
  (~1 ms CPU, DESIGN §10) to every authenticated request. The cost is that a replay sent from the victim's
  own address (spoofed UDP from the same path) may be accepted once by a replica that has not seen that
  count; with the source binding a replay from anywhere else is refused everywhere;
* the credentials' `uri` must equal the Request-URI (RFC 2617 §3.2.2.5, equality as RFC 3261 §19.1.4 with
  a missing port taken as the default one), else 400: a response captured for another Request-URI cannot
  be replayed against this one. A `uri` naming the address the request arrived on (no user part; see
  `arrival_hosts`) is also accepted, with any port: SIPp writes `sip:<remote_ip>:<remote_port>` there whatever
  its Request-URI (its `-auth_uri` default), and a client behind a TLS/TCP relay signs the relay's port;
* the algorithms offered and accepted can differ per realm (a Domain's `digestAlgorithms`, e.g. SHA-256);
  MD5 otherwise;
* `FailureTracker` bans a source after `max_failures` failed credentials within `window` seconds.
  The counter lives in the replica (each replica bans on its own count): good enough against guessing,
  no shared state on the hot path (DESIGN §10).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from routr_ray.config.resources import Credentials
from routr_ray.processors.alterations import OwnAddresses
from routr_ray.processors.connect.acl import IPNetwork, in_networks, ip_of
from routr_ray.proto.gen import processor_pb2
from routr_ray.sip.digest import (
    DigestAlgorithm,
    DigestAuthenticator,
    DigestParseError,
    DigestResult,
    challenge_status,
    find_credentials,
)
from routr_ray.sip.errors import ParseError
from routr_ray.sip.message import Request
from routr_ray.sip.uri import URI, parse_uri, unescape

Clock = Callable[[], float]

# Outcomes that are a wrong guess (not a missing or merely expired credential).
_FAILURES = frozenset({
    DigestResult.BAD_PASSWORD,
    DigestResult.UNKNOWN_USER,
    DigestResult.MALFORMED,
    DigestResult.REALM_MISMATCH,
    DigestResult.INVALID_NONCE,
    DigestResult.UNSUPPORTED,
})


@dataclass(frozen=True, slots=True)
class Challenge:
    """The answer to a request that must (re)authenticate."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]


URI_MISMATCH = Challenge(400, "Bad Request (digest uri does not match the Request-URI)", ())

# RFC 3261 §19.1.4: these parameters must match when either URI has one; others only when both have them
_SIGNIFICANT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _default_port(uri: URI) -> int:
    return 5061 if uri.is_secure or uri.transport in ("tls", "wss") else 5060


def same_request_uri(digest_uri: str, ruri: URI) -> bool:
    """RFC 2617 §3.2.2.5 with RFC 3261 §19.1.4 URI equality (a missing port equals the default port)."""
    try:
        uri = parse_uri(digest_uri.strip())
    except ParseError:
        return False
    if uri.scheme != ruri.scheme:
        return False
    if not uri.is_sip:
        if uri.scheme == "tel":
            return (uri.opaque or "").lower() == (ruri.opaque or "").lower() and _params_match(uri, ruri)
        return str(uri) == str(ruri)
    if (uri.user is None) != (ruri.user is None) or unescape(uri.user or "") != unescape(ruri.user or ""):
        return False  # the user part is case-sensitive
    if uri.password != ruri.password or uri.host.strip("[]").lower() != ruri.host.strip("[]").lower():
        return False
    if (uri.port or _default_port(uri)) != (ruri.port or _default_port(ruri)):
        return False
    if {k.lower(): unescape(v) for k, v in uri.headers.items()} != \
            {k.lower(): unescape(v) for k, v in ruri.headers.items()}:
        return False
    return _params_match(uri, ruri)


@dataclass(frozen=True, slots=True)
class ArrivalHosts:
    """The hosts that name the address a request arrived on (see :func:`arrival_hosts`)."""

    hosts: frozenset[str]
    any_loopback: bool = False


def arrival_hosts(msg: processor_pb2.MessageRequest) -> ArrivalHosts:
    """The addresses a request arrived on, as far as the EdgePort's `MessageRequest` tells: the host of the
    listening point of the request's transport (the packet's destination when it is bound to one address) and
    the external addresses (what a client outside a NAT dials). A wildcard listening point (0.0.0.0 / ::) may
    have received it on any local address: then the one routr-ray's EdgePort names in `received_on` (the packet's
    destination address), or, from an EdgePort that does not say (Routr's), the localnet addresses (Routr's
    `<our address>/<prefix>`) and loopback. Addresses of other listening points (other transports, other interfaces) are not included."""
    transport = msg.sender.transport
    hosts: set[str] = set()
    wildcard = False
    for lp in msg.listening_points:
        if lp.transport != transport:
            continue
        host = lp.host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            wildcard = True
        else:
            hosts.add(_host_key(host))
    hosts.update(_host_key(a) for a in msg.external_addrs if a)
    arrived = msg.received_on.host.strip("[]") if msg.HasField("received_on") else ""
    if wildcard and arrived not in ("", "0.0.0.0", "::"):
        # routr-ray's EdgePort says which address the packet reached (IP_PKTINFO / the connection's own address)
        hosts.add(_host_key(arrived))
        return ArrivalHosts(frozenset(hosts), any_loopback=False)
    if wildcard or not hosts:
        own = OwnAddresses.of_request(msg)
        hosts.update(own.hosts)
        wildcard = wildcard or own.wildcard
    return ArrivalHosts(frozenset(hosts), any_loopback=wildcard)


def _host_key(host: str) -> str:
    ip = ip_of(host)
    return str(ip) if ip is not None else host.strip("[]").lower()


def names_arrival_address(digest_uri: str, arrived: ArrivalHosts | None) -> bool:
    """`sip:<the address the request arrived on>[:port]` without a user part (what SIPp puts in `uri` by
    default). Any port: a client behind a TLS/TCP relay signs the relay's port."""
    if arrived is None:
        return False
    try:
        uri = parse_uri(digest_uri.strip())
    except ParseError:
        return False
    if not uri.is_sip or uri.user is not None:
        return False
    ip = ip_of(uri.host)
    if ip is not None and ip.is_loopback and arrived.any_loopback:
        return True  # an EdgePort bound to 0.0.0.0 / :: answers on loopback too
    return _host_key(uri.host) in arrived.hosts



def _params_match(a: URI, b: URI) -> bool:
    pa = {k.lower(): (v or "").lower() for k, v in a.params.items()}
    pb = {k.lower(): (v or "").lower() for k, v in b.params.items()}
    for name in pa.keys() | pb.keys():
        if name in pa and name in pb:
            if pa[name] != pb[name]:
                return False
        elif name in _SIGNIFICANT_PARAMS:
            return False
    return True


@dataclass(frozen=True, slots=True)
class AuthCheck:
    """`ok`: the credentials are good. Otherwise `challenge` is the answer and `failed` says whether the
    attempt counts toward a ban (credentials present but wrong)."""

    ok: bool
    challenge: Challenge | None = None
    failed: bool = False
    result: DigestResult | None = None


AlgorithmsFor = Callable[[str], tuple[DigestAlgorithm, ...] | None]


def _no_override(realm: str) -> tuple[DigestAlgorithm, ...] | None:
    return None


class DigestGate:
    """Checks one request's digest credentials against one expected `Credentials` in one realm.

    `algorithms_for(realm)` names the algorithms of a realm (None: the authenticator's default, MD5). Nonces are
    bound to the `source` address given to :meth:`challenge` and :meth:`check`."""

    def __init__(self, digest: DigestAuthenticator, *, always_401: bool = False, clock: Clock = time.time,
                 algorithms_for: AlgorithmsFor = _no_override) -> None:
        self.digest = digest
        self.always_401 = always_401
        self.clock = clock
        self.algorithms_for = algorithms_for

    def challenge(self, request: Request, realm: str, *, source: str = "", stale: bool = False) -> Challenge:
        status, reason, header = challenge_status(request.method, always_401=self.always_401)
        values = self.digest.challenge(realm, now=self.clock(), stale=stale, bound=_bound(source),
                                       algorithms=self.algorithms_for(realm))
        return Challenge(status, reason, tuple((header, v) for v in values))

    def check(self, request: Request, realm: str, expected: Credentials | None,
              msg: processor_pb2.MessageRequest | None = None, *, source: str = "") -> AuthCheck:
        """Verify the request's credential for `realm` against `expected` (None: an unknown user, who gets
        the same treatment as a known one with a wrong password). `msg`: the EdgePort's MessageRequest (where
        the request arrived, for a digest `uri` naming the server); `source`: the packet's source address."""
        values = request.headers.get_all("Authorization") + request.headers.get_all("Proxy-Authorization")
        if not values:
            return AuthCheck(False, self.challenge(request, realm, source=source))
        try:
            creds = find_credentials(values, realm)
        except DigestParseError:
            return AuthCheck(False, self.challenge(request, realm, source=source), failed=True,
                             result=DigestResult.MALFORMED)
        if creds is None:  # only non-Digest schemes
            return AuthCheck(False, self.challenge(request, realm, source=source))
        if not same_request_uri(creds.uri, request.request_uri) and not (
                msg is not None and names_arrival_address(creds.uri, arrival_hosts(msg))):
            return AuthCheck(False, URI_MISMATCH, failed=True, result=DigestResult.MALFORMED)
        password = expected.password if expected is not None and creds.username == expected.username else None
        outcome = self.digest.verify(
            creds, method=request.method, realm=realm, now=self.clock(), password=password, bound=_bound(source),
            algorithms=self.algorithms_for(realm),
        )
        if outcome.ok:
            return AuthCheck(True, result=outcome.result)
        return AuthCheck(
            False,
            self.challenge(request, realm, source=source, stale=outcome.stale),
            failed=outcome.result in _FAILURES,
            result=outcome.result,
        )


def _bound(source: str) -> str:
    """What a nonce is bound to: the source IP address, normalised (no port: a NAT may move it)."""
    return _host_key(source) if source else ""


@dataclass(slots=True)
class _Source:
    failures: deque[float] = field(default_factory=deque)
    banned_until: float = 0.0


class FailureTracker:
    """Bans a source address after `max_failures` failed authentications within `window` seconds, for
    `ban_seconds`. Sources in `trusted`, and those `exempt(host)` names (the sources of Trunks and Peers, issue 14
    item 8: forged REGISTERs from a trunk's address must not get the trunk's calls refused), are never banned.
    At most `max_sources` are remembered (oldest forgotten first), so a flood of forged sources cannot exhaust
    memory."""

    def __init__(
        self,
        *,
        max_failures: int = 20,
        window: float = 60.0,
        ban_seconds: float = 600.0,
        trusted: Iterable[IPNetwork] = (),
        clock: Clock = time.monotonic,
        max_sources: int = 50_000,
        exempt: Callable[[str], bool] | None = None,
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.max_failures = max_failures
        self.window = window
        self.ban_seconds = ban_seconds
        self.trusted = tuple(trusted)
        self.clock = clock
        self.max_sources = max_sources
        self.exempt = exempt
        self._sources: OrderedDict[str, _Source] = OrderedDict()

    def is_banned(self, host: str) -> bool:
        entry = self._sources.get(host)
        if entry is None or entry.banned_until <= self.clock():
            return False
        return not (self.exempt is not None and self.exempt(host))  # named a trunk's since (a reload)

    def record_failure(self, host: str) -> bool:
        """Count one failure; True when this failure bans the source."""
        if in_networks(host, self.trusted) or (self.exempt is not None and self.exempt(host)):
            return False
        now = self.clock()
        entry = self._sources.get(host)
        if entry is None:
            entry = self._sources[host] = _Source()
            while len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(host)
        entry.failures.append(now)
        while entry.failures and entry.failures[0] <= now - self.window:
            entry.failures.popleft()
        if len(entry.failures) >= self.max_failures and entry.banned_until <= now:
            entry.banned_until = now + self.ban_seconds
            entry.failures.clear()
            return True
        return False
