"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760; RFC 3261 §22).

Sans-I/O and stateless: every function works on header *values* (strings) and takes the clock and the
nonce key from the caller, so any replica that holds the same key verifies nonces issued by any other.

Calling protocol for a server (registrar or proxy):

1. ``auth = find_credentials(request.headers.get_all(authorization_header_name(proxy)), realm)``
   (``None`` means "no credentials for us": answer with a challenge).
2. Look up the password (or stored HA1) of ``auth.username`` in ``realm`` (the Domain's realm, never the
   realm the client wrote).
3. ``outcome = authenticator.verify(auth, method=request.method, realm=realm, password=pw, now=now)``.
4. ``outcome.result is DigestResult.OK`` → continue. Otherwise answer 401/407 with
   ``authenticator.challenge(realm, now=now, stale=outcome.stale)`` (one header value per algorithm).

Nonces are ``base64url(version | timestamp | salt | HMAC-SHA256(key, realm, opaque, bound, timestamp, salt))``.
``bound`` is what the caller binds the nonce to (a server passes the client's source address, so a nonce, and
any credential computed with it, is good only from the address it was issued to). They expire after
``nonce_ttl`` seconds: an expired nonce with a correct response is ``STALE`` (the next challenge carries
``stale=true`` so the client retries without asking its user, RFC 2617 §3.2.1); a nonce that does not verify
is ``INVALID_NONCE`` (challenge again without ``stale``).

Replays (RFC 7616 §3.4.4, §5.10; RFC 2617 §3.2.2 ``nc``): with a :class:`NonceUses` the authenticator remembers,
per nonce, which nonce-counts it accepted; a credential whose count was already accepted is ``REPLAY`` (challenge
again with ``stale=true``: a client that reused a count retries at once with a fresh nonce). The table is bounded
(least recently used nonces go first; a nonce issued before the newest one evicted counts as used, so eviction
never re-opens a replay) and lives in the process that holds it: replicas that share a key do not share it.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import secrets
import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote

__all__ = [
    "NONCE_KEY_ENV",
    "DigestAlgorithm",
    "DigestAuthenticator",
    "DigestChallenge",
    "DigestCredentials",
    "DigestParseError",
    "DigestResult",
    "NonceSigner",
    "NonceStatus",
    "NonceUses",
    "VerifyOutcome",
    "answer_challenge",
    "authorization_header_name",
    "challenge_header_name",
    "challenge_status",
    "compute_ha1",
    "compute_response",
    "find_credentials",
    "nonce_key_from_env",
    "parse_auth_params",
    "parse_authorization",
]

NONCE_KEY_ENV = "ROUTR_RAY_NONCE_KEY"
DEFAULT_NONCE_TTL = 300.0
# A nonce stamped this far in the future (another replica's clock runs ahead) is still accepted.
DEFAULT_CLOCK_SKEW = 30.0
_MIN_KEY_BYTES = 16


class DigestParseError(ValueError):
    """The Authorization / Proxy-Authorization value is not a well-formed Digest credential."""


class DigestAlgorithm(enum.Enum):
    """Algorithms of RFC 7616 §3.3 (names as they appear on the wire, compared case-insensitively)."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA256 = "SHA-256"
    SHA256_SESS = "SHA-256-sess"

    @classmethod
    def from_token(cls, token: str | None) -> DigestAlgorithm | None:
        """Map the ``algorithm`` parameter to a member; absent means MD5 (RFC 2617 §3.2.1)."""
        if token is None:
            return cls.MD5
        lowered = token.lower()
        for member in cls:
            if member.value.lower() == lowered:
                return member
        return None

    @property
    def is_session(self) -> bool:
        return self.value.endswith("-sess")

    def hash_hex(self, data: str) -> str:
        digest = hashlib.md5 if self in (DigestAlgorithm.MD5, DigestAlgorithm.MD5_SESS) else hashlib.sha256
        return digest(data.encode("utf-8", "surrogateescape")).hexdigest()


class DigestResult(enum.Enum):
    """Outcome of :meth:`DigestAuthenticator.verify`. Everything but OK means "challenge again"."""

    OK = "ok"
    MALFORMED = "malformed"  # missing/duplicate parameters, bad nc, not Digest: answer 400 or challenge
    UNSUPPORTED = "unsupported"  # algorithm or qop we do not accept (e.g. auth-int, SHA-256 when not enabled)
    REALM_MISMATCH = "realm_mismatch"  # credentials for another realm
    INVALID_NONCE = "invalid_nonce"  # forged, garbled, or issued for another realm/opaque
    UNKNOWN_USER = "unknown_user"  # caller had no password for this username
    BAD_PASSWORD = "bad_password"  # response does not match (wrong password, or wrong uri/method)
    STALE = "stale"  # response correct but the nonce expired: challenge with stale=true
    REPLAY = "replay"  # response correct but its nonce-count was already accepted: challenge with stale=true

    @property
    def ok(self) -> bool:
        return self is DigestResult.OK


class NonceStatus(enum.Enum):
    VALID = "valid"
    STALE = "stale"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """One parsed Digest credential (RFC 2617 §3.2.2 ``digest-response``; RFC 3261 §25.1 ``dig-resp``).

    Values are unquoted and unescaped. ``params`` holds every parameter by lower-case name, known or not.
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str | None = None
    qop: str | None = None
    nc: str | None = None
    cnonce: str | None = None
    opaque: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    """What :meth:`DigestAuthenticator.verify` found.

    ``uri_differs`` is left to the caller (it knows the Request-URI); ``stale`` tells whether the next
    challenge must carry ``stale=true``.
    """

    result: DigestResult
    username: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.result is DigestResult.OK

    @property
    def stale(self) -> bool:
        """The next challenge carries ``stale=true``: the credential was right, only its nonce (or count) is used up."""
        return self.result is DigestResult.STALE or self.result is DigestResult.REPLAY


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """A ``challenge`` of RFC 2617 §3.2.1 / RFC 3261 §25.1; ``str()`` renders the header value."""

    realm: str
    nonce: str
    algorithm: DigestAlgorithm = DigestAlgorithm.MD5
    qop: str | None = "auth"
    opaque: str | None = None
    stale: bool = False
    domain: str | None = None

    def __str__(self) -> str:
        parts = [f"realm={quote(self.realm)}"]
        if self.domain:
            parts.append(f"domain={quote(self.domain)}")
        parts.append(f"nonce={quote(self.nonce)}")
        if self.opaque is not None:
            parts.append(f"opaque={quote(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        parts.append(f"algorithm={self.algorithm.value}")
        if self.qop:
            parts.append(f"qop={quote(self.qop)}")
        return "Digest " + ", ".join(parts)


# --------------------------------------------------------------------------------------------------
# Header names and status codes


def challenge_status(method: str, *, always_401: bool = False) -> tuple[int, str, str]:
    """Status, reason and challenge header for a request that needs credentials.

    RFC 3261 §22.1/§22.3: a registrar (REGISTER) answers 401 with WWW-Authenticate, a proxy answers 407
    with Proxy-Authenticate. ``always_401`` keeps Routr's behaviour (401 for every method) for clients
    that only understand that.
    """
    if always_401 or method.upper() == "REGISTER":
        return 401, "Unauthorized", "WWW-Authenticate"
    return 407, "Proxy Authentication Required", "Proxy-Authenticate"


def challenge_header_name(proxy: bool) -> str:
    return "Proxy-Authenticate" if proxy else "WWW-Authenticate"


def authorization_header_name(proxy: bool) -> str:
    """RFC 3261 §22.3: Proxy-Authenticate is answered with Proxy-Authorization."""
    return "Proxy-Authorization" if proxy else "Authorization"


# --------------------------------------------------------------------------------------------------
# Parsing

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_WS = " \t\r\n"


def quote(value: str) -> str:
    """Render a quoted-string (RFC 3261 §25.1), escaping backslash and double quote."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def parse_auth_params(text: str) -> dict[str, str]:
    """Parse ``auth-param *(COMMA auth-param)`` into ``{lower-case name: unescaped value}``.

    ``auth-param = token LWS "=" LWS ( token / quoted-string )`` (RFC 2617 §1.2; RFC 7235 §2.1). Quoted
    values may contain commas and ``\\``-escapes. Unquoted values run to the next comma (lenient: some
    clients leave ``uri`` unquoted). Empty list elements are skipped. Duplicate names are an error.
    """
    params: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and (text[i] in _WS or text[i] == ","):
            i += 1
        if i >= n:
            break
        start = i
        while i < n and text[i] in _TOKEN_CHARS:
            i += 1
        name = text[start:i].lower()
        if not name:
            raise DigestParseError(f"expected a parameter name at offset {start}")
        while i < n and text[i] in _WS:
            i += 1
        if i >= n or text[i] != "=":
            raise DigestParseError(f"parameter {name!r} has no value")
        i += 1
        while i < n and text[i] in _WS:
            i += 1
        if i < n and text[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise DigestParseError(f"unterminated quoted string in {name!r}")
                ch = text[i]
                if ch == "\\":
                    if i + 1 >= n:
                        raise DigestParseError(f"dangling escape in {name!r}")
                    chars.append(text[i + 1])
                    i += 2
                    continue
                if ch == '"':
                    i += 1
                    break
                chars.append(ch)
                i += 1
            value = "".join(chars)
            while i < n and text[i] in _WS:
                i += 1
            if i < n and text[i] != ",":
                raise DigestParseError(f"unexpected text after quoted value of {name!r}")
        else:
            start = i
            while i < n and text[i] != ",":
                i += 1
            value = text[start:i].strip(_WS)
            if not value or '"' in value:
                raise DigestParseError(f"bad value for {name!r}")
        if name in params:
            raise DigestParseError(f"duplicate parameter {name!r}")
        params[name] = value
    return params


def _split_scheme(value: str) -> tuple[str, str]:
    stripped = value.strip(_WS)
    for idx, ch in enumerate(stripped):
        if ch in _WS:
            return stripped[:idx], stripped[idx:].lstrip(_WS)
    return stripped, ""


_REQUIRED = ("username", "realm", "nonce", "uri", "response")


def parse_authorization(value: str) -> DigestCredentials:
    """Parse an Authorization / Proxy-Authorization header value with scheme Digest.

    Raises :class:`DigestParseError` when the scheme is not Digest, a required parameter
    (username, realm, nonce, uri, response) is missing, or the syntax is broken. RFC 7616 §3.4.4
    ``username*`` (RFC 5987 ext-value) is accepted in place of ``username``.
    """
    scheme, rest = _split_scheme(value)
    if scheme.lower() != "digest":
        raise DigestParseError(f"scheme {scheme!r} is not Digest")
    params = parse_auth_params(rest)
    if "username" not in params and "username*" in params:
        params["username"] = _decode_ext_value(params["username*"])
    missing = [name for name in _REQUIRED if name not in params]
    if missing:
        raise DigestParseError("missing " + ", ".join(missing))
    return DigestCredentials(
        username=params["username"],
        realm=params["realm"],
        nonce=params["nonce"],
        uri=params["uri"],
        response=params["response"],
        algorithm=params.get("algorithm"),
        qop=params.get("qop"),
        nc=params.get("nc"),
        cnonce=params.get("cnonce"),
        opaque=params.get("opaque"),
        params=params,
    )


def _decode_ext_value(text: str) -> str:
    # ext-value = charset "'" [ language ] "'" value-chars (RFC 5987 §3.2.1); UTF-8 is the only charset used.
    try:
        charset, _language, encoded = text.split("'", 2)
        return unquote(encoded, encoding=charset or "utf-8", errors="strict")
    except (ValueError, LookupError) as exc:
        raise DigestParseError("bad username* value") from exc


def find_credentials(values: Iterable[str], realm: str) -> DigestCredentials | None:
    """Pick the Digest credential for ``realm`` from all Authorization (or Proxy-Authorization) values.

    RFC 3261 §22.3: a request may carry credentials for several realms (one per proxy on the path); the
    one whose realm is ours is used. When none names our realm the first well-formed Digest credential is
    returned so that :meth:`DigestAuthenticator.verify` reports ``REALM_MISMATCH``. Malformed values raise
    :class:`DigestParseError` only if no usable credential exists at all.
    """
    first: DigestCredentials | None = None
    error: DigestParseError | None = None
    for value in values:
        try:
            creds = parse_authorization(value)
        except DigestParseError as exc:
            error = error or exc
            continue
        if creds.realm == realm:
            return creds
        first = first or creds
    if first is None and error is not None:
        raise error
    return first


# --------------------------------------------------------------------------------------------------
# Hash computation (RFC 2617 §3.2.2, RFC 7616 §3.4)


def compute_ha1(
    algorithm: DigestAlgorithm,
    username: str,
    realm: str,
    password: str,
    *,
    nonce: str = "",
    cnonce: str = "",
) -> str:
    """``H(A1)``; for ``-sess`` algorithms ``H(H(user:realm:pass):nonce:cnonce)``."""
    ha1 = algorithm.hash_hex(f"{username}:{realm}:{password}")
    if algorithm.is_session:
        ha1 = algorithm.hash_hex(f"{ha1}:{nonce}:{cnonce}")
    return ha1


def compute_response(
    algorithm: DigestAlgorithm,
    *,
    ha1: str,
    method: str,
    uri: str,
    nonce: str,
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
) -> str:
    """``request-digest`` (RFC 2617 §3.2.2.1): with qop ``KD(HA1, nonce:nc:cnonce:qop:HA2)``, without it
    ``KD(HA1, nonce:HA2)`` (RFC 2069). ``HA2 = H(method:uri)`` (qop=auth only; auth-int is not supported)."""
    ha2 = algorithm.hash_hex(f"{method}:{uri}")
    if qop:
        return algorithm.hash_hex(f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return algorithm.hash_hex(f"{ha1}:{nonce}:{ha2}")


# --------------------------------------------------------------------------------------------------
# Nonces

_NONCE_VERSION = 2  # 2: the MAC covers the bound value (a source address)
_NONCE_HEADER = struct.Struct(">BQ8s")  # version, issue time in ms, random salt
_NONCE_MAC_BYTES = 16
_NONCE_RAW_LEN = _NONCE_HEADER.size + _NONCE_MAC_BYTES


def nonce_key_from_env(
    environ: Mapping[str, str], *, generate: Callable[[int], bytes] = secrets.token_bytes
) -> bytes:
    """The nonce HMAC key: ``ROUTR_RAY_NONCE_KEY`` from ``environ`` (hex, or any text of ≥16 bytes), else a
    fresh random 32-byte key. Replicas must share one key: the run command generates it once and hands it
    to every replica through the environment."""
    text = environ.get(NONCE_KEY_ENV, "").strip()
    if not text:
        return generate(32)
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode("utf-8")
    if len(key) < _MIN_KEY_BYTES:
        raise ValueError(f"{NONCE_KEY_ENV} must hold at least {_MIN_KEY_BYTES} bytes")
    return key


class NonceSigner:
    """Issues and checks HMAC-SHA256-signed, timestamped nonces bound to a realm (and an opaque)."""

    def __init__(
        self,
        key: bytes,
        *,
        ttl: float = DEFAULT_NONCE_TTL,
        clock_skew: float = DEFAULT_CLOCK_SKEW,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise ValueError(f"nonce key must hold at least {_MIN_KEY_BYTES} bytes")
        if ttl <= 0:
            raise ValueError("nonce ttl must be positive")
        self._key = key
        self.ttl = ttl
        self.clock_skew = clock_skew
        self._random_bytes = random_bytes

    def _mac(self, header: bytes, realm: str, opaque: str, bound: str) -> bytes:
        parts = [header]
        for text in (realm, opaque, bound):
            data = text.encode("utf-8", "surrogateescape")
            parts += (struct.pack(">I", len(data)), data)
        return hmac.new(self._key, b"".join(parts), hashlib.sha256).digest()[:_NONCE_MAC_BYTES]

    def issue(self, realm: str, *, now: float, opaque: str = "", bound: str = "") -> str:
        """A new nonce for ``realm`` stamped with ``now`` (seconds since the epoch), good only where ``bound``
        is presented again (e.g. the client's source address)."""
        header = _NONCE_HEADER.pack(_NONCE_VERSION, max(0, int(now * 1000)), self._random_bytes(8))
        raw = header + self._mac(header, realm, opaque, bound)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def check(self, nonce: str, realm: str, *, now: float, opaque: str = "", bound: str = "") -> NonceStatus:
        """VALID, STALE (older than ``ttl``, or stamped further ahead than ``clock_skew``) or INVALID (not ours,
        or issued for another realm, opaque or ``bound`` value)."""
        return self.check_issued(nonce, realm, now=now, opaque=opaque, bound=bound)[0]

    def check_issued(self, nonce: str, realm: str, *, now: float, opaque: str = "",
                     bound: str = "") -> tuple[NonceStatus, float]:
        """:meth:`check` and the nonce's issue time (seconds since the epoch; 0.0 when INVALID)."""
        issued = self._verified_issue_time(nonce, realm, opaque, bound)
        if issued is None:
            return NonceStatus.INVALID, 0.0
        age = now - issued
        if age > self.ttl or age < -self.clock_skew:
            return NonceStatus.STALE, issued
        return NonceStatus.VALID, issued

    def _verified_issue_time(self, nonce: str, realm: str, opaque: str, bound: str) -> float | None:
        if len(nonce) > 64 or not nonce.isascii():
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_RAW_LEN:
            return None
        header, mac = raw[: _NONCE_HEADER.size], raw[_NONCE_HEADER.size :]
        version, issued_ms, _salt = _NONCE_HEADER.unpack(header)
        if version != _NONCE_VERSION or not hmac.compare_digest(mac, self._mac(header, realm, opaque, bound)):
            return None
        return issued_ms / 1000.0


_NC_WINDOW = 64  # counts below the highest one accepted that are still tracked one by one (reordered requests)
_NC_MASK = (1 << _NC_WINDOW) - 1
DEFAULT_MAX_NONCES = 65_536


class NonceUses:
    """The nonce-counts accepted per nonce (RFC 7616 §3.4.4: a count used once must not be accepted again).

    Per nonce: the highest count accepted and a bitmap of the :data:`_NC_WINDOW` counts below it, so requests that
    reuse a nonce and arrive out of order (UDP) are still accepted once each. At most ``max_nonces`` nonces are
    kept, least recently used first out; a nonce issued no later than the newest one evicted is refused when it is
    not in the table (it may have been used: refusing it only costs the client one ``stale`` challenge). Entries
    are written only for credentials that verified, so a flood of forged credentials cannot evict real ones.
    About 230 bytes per nonce (its text included): the default bound is ~15 MB.
    """

    def __init__(self, max_nonces: int = DEFAULT_MAX_NONCES) -> None:
        if max_nonces < 1:
            raise ValueError("max_nonces must be at least 1")
        self.max_nonces = max_nonces
        self._table: OrderedDict[str, _Counts] = OrderedDict()
        self._horizon = float("-inf")  # issue time of the newest nonce evicted

    def __len__(self) -> int:
        return len(self._table)

    def accept(self, nonce: str, count: int, issued: float) -> bool:
        """Record one use of ``nonce`` with nonce-count ``count``; False when that count was used already."""
        entry = self._table.get(nonce)
        if entry is None:
            if issued <= self._horizon:
                return False
            self._table[nonce] = _Counts(count, 1, issued)
            while len(self._table) > self.max_nonces:
                _, evicted = self._table.popitem(last=False)
                self._horizon = max(self._horizon, evicted.issued)
            return True
        self._table.move_to_end(nonce)
        if count > entry.highest:
            shift = count - entry.highest
            entry.seen = ((entry.seen << shift) | 1) & _NC_MASK if shift < _NC_WINDOW else 1
            entry.highest = count
            return True
        offset = entry.highest - count
        if offset >= _NC_WINDOW or (entry.seen >> offset) & 1:
            return False
        entry.seen |= 1 << offset
        return True


class _Counts:
    """One nonce's accepted counts: the highest, and a bitmap of it and the counts below it (bit i = highest - i)."""

    __slots__ = ("highest", "seen", "issued")

    def __init__(self, highest: int, seen: int, issued: float) -> None:
        self.highest, self.seen, self.issued = highest, seen, issued


# --------------------------------------------------------------------------------------------------
# Verification and challenges

_NC_LEN = 8
_HEX = frozenset("0123456789abcdefABCDEF")


class DigestAuthenticator:
    """Builds challenges and verifies credentials for any realm with one nonce key.

    ``algorithms`` is what the challenge offers, most preferred first (RFC 8760 §2.4: one challenge per
    algorithm). The default is MD5 alone: SIPp and sipsak give up when anything else is offered, even
    with MD5 offered too. Credentials using an algorithm outside ``algorithms`` are UNSUPPORTED.
    :meth:`challenge` and :meth:`verify` take ``algorithms`` per call too (e.g. per realm), overriding the
    default. ``bind_opaque`` adds a random opaque to each challenge and binds the nonce to it. With
    ``nonce_uses`` every accepted nonce-count is remembered and a second use is ``REPLAY``.
    """

    def __init__(
        self,
        key: bytes,
        *,
        nonce_ttl: float = DEFAULT_NONCE_TTL,
        algorithms: Iterable[DigestAlgorithm] = (DigestAlgorithm.MD5,),
        qop: str | None = "auth",
        bind_opaque: bool = False,
        clock_skew: float = DEFAULT_CLOCK_SKEW,
        random_bytes: Callable[[int], bytes] = secrets.token_bytes,
        nonce_uses: NonceUses | None = None,
    ) -> None:
        self.algorithms = tuple(algorithms)
        if not self.algorithms:
            raise ValueError("at least one digest algorithm is required")
        if qop not in (None, "auth"):
            raise ValueError("only qop=auth (or no qop) is supported")
        self.qop = qop
        self.bind_opaque = bind_opaque
        self._random_bytes = random_bytes
        self.nonces = NonceSigner(key, ttl=nonce_ttl, clock_skew=clock_skew, random_bytes=random_bytes)
        self.nonce_uses = nonce_uses

    def challenge(self, realm: str, *, now: float, stale: bool = False, bound: str = "",
                  algorithms: Iterable[DigestAlgorithm] | None = None) -> list[str]:
        """Header values for WWW-Authenticate / Proxy-Authenticate, one per offered algorithm.

        ``realm`` must be the server's (the Domain's), never one taken from the request. ``bound``: what the
        nonce is bound to (the client's source address); :meth:`verify` must be given the same value.
        """
        opaque = self._random_bytes(8).hex() if self.bind_opaque else None
        nonce = self.nonces.issue(realm, now=now, opaque=opaque or "", bound=bound)
        offered = tuple(algorithms) if algorithms else self.algorithms
        return [
            str(DigestChallenge(realm=realm, nonce=nonce, algorithm=alg, qop=self.qop, opaque=opaque, stale=stale))
            for alg in offered
        ]

    def verify(
        self,
        credentials: DigestCredentials | str,
        *,
        method: str,
        realm: str,
        now: float,
        password: str | None = None,
        ha1: str | None = None,
        bound: str = "",
        algorithms: Iterable[DigestAlgorithm] | None = None,
    ) -> VerifyOutcome:
        """Check one credential against the server's ``realm``.

        Pass the user's ``password`` (or a stored ``ha1`` = H(username:realm:password) for non-sess
        algorithms); pass neither when the username is unknown. ``method`` is the method of the request
        that carries the credentials (RFC 3261 §22.4: HA2 = H(Method ":" digest-uri)). HA2 uses the ``uri``
        from the credentials as RFC 2617 §3.2.2.5 requires; whether that ``uri`` may differ from the
        Request-URI is the caller's rule. ``bound``: the value the nonce was bound to when it was issued.
        """
        if isinstance(credentials, str):
            try:
                credentials = parse_authorization(credentials)
            except DigestParseError as exc:
                return VerifyOutcome(DigestResult.MALFORMED, detail=str(exc))
        creds = credentials
        user = creds.username
        algorithm = DigestAlgorithm.from_token(creds.algorithm)
        accepted = tuple(algorithms) if algorithms else self.algorithms
        if algorithm is None or algorithm not in accepted:
            return VerifyOutcome(DigestResult.UNSUPPORTED, user, f"algorithm {creds.algorithm!r} not offered")
        qop = creds.qop.lower() if creds.qop is not None else None
        if qop is not None:
            if qop != "auth":
                return VerifyOutcome(DigestResult.UNSUPPORTED, user, f"qop {creds.qop!r} not offered")
            # RFC 2617 §3.2.2: with qop, cnonce and nc MUST be present; nc is 8LHEX.
            if not creds.cnonce or creds.nc is None:
                return VerifyOutcome(DigestResult.MALFORMED, user, "qop=auth without nc or cnonce")
            if len(creds.nc) != _NC_LEN or not set(creds.nc) <= _HEX:
                return VerifyOutcome(DigestResult.MALFORMED, user, f"bad nonce-count {creds.nc!r}")
        if algorithm.is_session and not creds.cnonce:
            return VerifyOutcome(DigestResult.MALFORMED, user, "-sess algorithm without cnonce")
        if not creds.response.isascii():
            return VerifyOutcome(DigestResult.MALFORMED, user, "response is not hex")
        if creds.realm != realm:
            return VerifyOutcome(DigestResult.REALM_MISMATCH, user, f"realm {creds.realm!r} is not ours")
        nonce_status, issued = self.nonces.check_issued(creds.nonce, realm, now=now, opaque=creds.opaque or "",
                                                        bound=bound)
        if nonce_status is NonceStatus.INVALID:
            return VerifyOutcome(DigestResult.INVALID_NONCE, user,
                                 "nonce not issued by us for this realm (or to another address)")
        if password is None and ha1 is None:
            return VerifyOutcome(DigestResult.UNKNOWN_USER, user)
        if ha1 is None:
            assert password is not None
            ha1 = compute_ha1(algorithm, user, realm, password, nonce=creds.nonce, cnonce=creds.cnonce or "")
        elif algorithm.is_session:
            ha1 = algorithm.hash_hex(f"{ha1}:{creds.nonce}:{creds.cnonce or ''}")
        expected = compute_response(
            algorithm,
            ha1=ha1,
            method=method,
            uri=creds.uri,
            nonce=creds.nonce,
            qop=qop,
            nc=creds.nc,
            cnonce=creds.cnonce,
        )
        if not hmac.compare_digest(expected, creds.response.lower()):
            return VerifyOutcome(DigestResult.BAD_PASSWORD, user)
        # RFC 2617 §3.2.1: stale only when the digest itself is right but the nonce has expired.
        if nonce_status is NonceStatus.STALE:
            return VerifyOutcome(DigestResult.STALE, user, "nonce expired")
        # Counted only once the response verified: a forged credential cannot burn a client's counts.
        # Without qop there is no nc (RFC 2069): such a nonce is good for one request.
        count = int(creds.nc, 16) if qop is not None and creds.nc is not None else 1
        if self.nonce_uses is not None and not self.nonce_uses.accept(creds.nonce, count, issued):
            return VerifyOutcome(DigestResult.REPLAY, user, f"nonce-count {count} already used")
        return VerifyOutcome(DigestResult.OK, user)


# --------------------------------------------------------------------------------------------------
# Client side: answering a challenge (RFC 2617 §3.2.2, RFC 7616 §3.4, RFC 3261 §22.2/§22.3)


def answer_challenge(
    challenge: str,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    cnonce: str | None = None,
    nc: int = 1,
) -> str | None:
    """The Authorization (or Proxy-Authorization) value answering one WWW-/Proxy-Authenticate ``challenge``,
    or None when it cannot be answered: not Digest, malformed, an unknown algorithm, or a ``qop`` list
    without ``auth`` (``auth-int`` is not supported). ``qop=auth`` is chosen whenever offered (RFC 7616
    §3.4); ``cnonce`` defaults to 64 random bits."""
    scheme, rest = _split_scheme(challenge)
    if scheme.lower() != "digest":
        return None
    try:
        params = parse_auth_params(rest)
    except DigestParseError:
        return None
    realm, nonce = params.get("realm"), params.get("nonce")
    algorithm = DigestAlgorithm.from_token(params.get("algorithm"))
    if realm is None or nonce is None or algorithm is None:
        return None
    qop: str | None = None
    offered = params.get("qop")
    if offered is not None:
        if "auth" not in [q.strip().lower() for q in offered.split(",")]:
            return None
        qop = "auth"
    if qop is not None or algorithm.is_session:
        cnonce = cnonce or secrets.token_hex(8)
    nc_text = f"{nc:08x}"
    ha1 = compute_ha1(algorithm, username, realm, password, nonce=nonce, cnonce=cnonce or "")
    response = compute_response(algorithm, ha1=ha1, method=method, uri=uri, nonce=nonce, qop=qop, nc=nc_text,
                                cnonce=cnonce)
    parts = [f"username={quote(username)}", f"realm={quote(realm)}", f"nonce={quote(nonce)}", f"uri={quote(uri)}",
             f"response={quote(response)}", f"algorithm={algorithm.value}"]
    if cnonce is not None and (qop is not None or algorithm.is_session):
        parts.append(f"cnonce={quote(cnonce)}")
    if "opaque" in params:
        parts.append(f"opaque={quote(params['opaque'])}")
    if qop is not None:
        parts += [f"qop={qop}", f"nc={nc_text}"]
    return "Digest " + ", ".join(parts)
