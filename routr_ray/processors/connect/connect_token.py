"""``X-Connect-Token``: JWTs that authenticate web agents instead of digest (Routr's "ephemeral agents",
routr.md §3.2 step 3 and §3.3), verified here with public keys from config as Routr's local verifier does
(``CONNECT_VERIFIER_PUBLIC_KEY_PATH``), RS256 or ES256 only (never ``none`` nor an HMAC that a public key could
be abused as the secret of).

Claims, as Routr's verifier expects them: ``aor`` (the AOR the token may register or call from), ``domain``,
``allowedMethods`` (e.g. ``["REGISTER", "INVITE"]``), optional ``maxContacts``, ``privacy``, ``aorLink``,
``username``, ``ref``. Unlike Routr, ``exp`` is required and, when an audience is configured (the ConnectTokens
config requires one), ``aud`` must name it; the AOR a request acts for (a REGISTER's To, another request's From)
must be the token's ``aor`` and its host the token's ``domain``. Keys and audience come from the ConnectTokens
config document (``routr_ray/config/connect_tokens.py``); who is admitted with a token: ``web_agents.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from routr_ray.config.connect_tokens import ALGORITHMS, load_public_key, pem_blocks

HEADER = "X-Connect-Token"
REQUIRED_CLAIMS = ("exp", "aor", "domain", "allowedMethods")


class TokenRejected(ValueError):
    """Why a token is not accepted (said to the log, never to the client)."""


@dataclass(frozen=True)
class ConnectClaims:
    aor: str
    domain: str
    allowed_methods: frozenset[str]
    max_contacts: int = -1
    privacy: str = "NONE"
    aor_link: str | None = None
    username: str | None = None


def _aor_key(aor: str) -> str:
    """``sip:User@Host`` -> ``sip:User@host`` (the host part is case-insensitive, RFC 3261 §19.1.4)."""
    scheme, _, rest = aor.strip().partition(":")
    user, at, host = rest.rpartition("@")
    return f"{scheme.lower()}:{user}{at}{host.lower()}"


class ConnectTokenVerifier:
    """Verifies tokens with ``public_keys`` (PEM texts; each may hold several keys). ``audience``: the ``aud`` every
    token must name (None: not checked, for tests of Routr's behaviour; the ConnectTokens config requires one);
    ``max_lifetime``: tokens must carry ``iat`` and ``exp - iat`` may not exceed it."""

    def __init__(self, public_keys: Sequence[str | bytes], *, audience: str | None = None,
                 algorithms: Sequence[str] = ALGORITHMS, leeway: float = 5.0, max_lifetime: float | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        unknown = set(algorithms) - set(ALGORITHMS)
        if unknown:
            raise ValueError(f"unsupported token algorithm(s): {', '.join(sorted(unknown))}; use RS256 or ES256")
        self._keys: list[tuple[str, object]] = []  # (algorithm, public key)
        for pem in public_keys:
            for block in pem_blocks(pem.encode() if isinstance(pem, str) else pem):
                self._keys.append(load_public_key(block))  # ValueError: a private key, a weak RSA key, ...
        if not self._keys:
            raise ValueError("a Connect token verifier needs at least one public key")
        self.audience = audience
        self.algorithms = list(algorithms)
        self.leeway = leeway
        self.max_lifetime = max_lifetime
        self.clock = clock

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ConnectTokenVerifier:
        """From ``routr_ray.config.connect_tokens.to_options`` (what a Connect replica is given)."""
        return cls(options["publicKeys"], audience=options["audience"],
                   algorithms=tuple(options.get("algorithms") or ALGORITHMS),
                   leeway=float(options.get("leewaySeconds", 5.0)),
                   max_lifetime=options.get("maxLifetimeSeconds"))

    def verify(self, token: str) -> ConnectClaims:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError as exc:
            raise TokenRejected(str(exc)) from None
        if algorithm not in self.algorithms:
            raise TokenRejected(f"the token's algorithm {algorithm!r} is not accepted (only {', '.join(self.algorithms)})")
        last: Exception | None = None
        for key_algorithm, key in self._keys:
            if key_algorithm != algorithm:
                continue
            try:
                payload = jwt.decode(
                    token, key, algorithms=[algorithm], audience=self.audience, leeway=self.leeway,
                    options={"require": [*REQUIRED_CLAIMS, *(("aud",) if self.audience else ()),
                                     *(("iat",) if self.max_lifetime is not None else ())],
                             "verify_aud": self.audience is not None},
                )
                break
            except jwt.InvalidSignatureError as exc:
                last = exc
                continue
            except jwt.PyJWTError as exc:
                raise TokenRejected(str(exc)) from None
        else:
            raise TokenRejected(f"signature not verified by any configured key ({last})")
        if payload.get("exp", 0) + self.leeway < self.clock():  # pyjwt checks against its own clock
            raise TokenRejected("the token has expired")
        if self.max_lifetime is not None and payload["exp"] - payload["iat"] > self.max_lifetime:
            raise TokenRejected(f"the token lives longer than maxLifetimeSeconds ({self.max_lifetime:g} s)")
        methods = payload["allowedMethods"]
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            raise TokenRejected("allowedMethods must be a list of method names")
        if not isinstance(payload["aor"], str) or not isinstance(payload["domain"], str):
            raise TokenRejected("aor and domain must be strings")
        max_contacts = payload.get("maxContacts", -1)
        return ConnectClaims(
            aor=payload["aor"], domain=payload["domain"].lower(),
            allowed_methods=frozenset(m.upper() for m in methods),
            max_contacts=int(max_contacts) if isinstance(max_contacts, int | str) and str(max_contacts).lstrip(
                "-").isdigit() else -1,
            privacy=str(payload.get("privacy", "NONE")).upper(),
            aor_link=payload.get("aorLink") if isinstance(payload.get("aorLink"), str) else None,
            username=payload.get("username") if isinstance(payload.get("username"), str) else None,
        )

    def check(self, token: str, method: str, to_aor: str) -> ConnectClaims:
        """The claims when the token lets ``method`` act for ``to_aor`` (a REGISTER's To, another request's From);
        raises :class:`TokenRejected`."""
        claims = self.verify(token)
        if method.upper() not in claims.allowed_methods:
            raise TokenRejected(f"{method} is not in the token's allowedMethods")
        if _aor_key(to_aor) != _aor_key(claims.aor):
            raise TokenRejected("the request's AOR is not the token's aor")
        if to_aor.rpartition("@")[2].lower() != claims.domain:
            raise TokenRejected("the request's domain is not the token's domain")
        return claims
