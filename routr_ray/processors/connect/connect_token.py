"""``X-Connect-Token``: JWTs that authenticate web agents instead of digest (Routr's "ephemeral agents",
routr.md §3.2 step 3 and §3.3), verified here with public keys from config as Routr's local verifier does
(``CONNECT_VERIFIER_PUBLIC_KEY_PATH``), RS256 or ES256 only (never ``none`` nor an HMAC that a public key could
be abused as the secret of).

Claims, as Routr's verifier expects them: ``aor`` (the AOR the token may register or call from), ``domain``,
``allowedMethods`` (e.g. ``["REGISTER", "INVITE"]``), optional ``maxContacts``, ``privacy``, ``aorLink``,
``username``, ``ref``. Unlike Routr, ``exp`` is required and, when an audience is configured, ``aud`` must name
it; the request's To AOR must be the token's ``aor`` and its host the token's ``domain``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

HEADER = "X-Connect-Token"
ALGORITHMS = ("RS256", "ES256")
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
    def __init__(self, public_keys: Sequence[str | bytes], *, audience: str | None = None,
                 algorithms: Sequence[str] = ALGORITHMS, leeway: float = 5.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not public_keys:
            raise ValueError("a Connect token verifier needs at least one public key")
        unknown = set(algorithms) - set(ALGORITHMS)
        if unknown:
            raise ValueError(f"unsupported token algorithm(s): {', '.join(sorted(unknown))}; use RS256 or ES256")
        self._keys: list[tuple[str, object]] = []  # (algorithm, public key)
        for pem in public_keys:
            key = serialization.load_pem_public_key(pem.encode() if isinstance(pem, str) else pem)
            if isinstance(key, rsa.RSAPublicKey):
                self._keys.append(("RS256", key))
            elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
                self._keys.append(("ES256", key))
            else:
                raise ValueError("a Connect token key must be an RSA or a P-256 EC public key (PEM)")
        self.audience = audience
        self.algorithms = list(algorithms)
        self.leeway = leeway
        self.clock = clock

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
                    token, key, algorithms=self.algorithms, audience=self.audience, leeway=self.leeway,
                    options={"require": [*REQUIRED_CLAIMS, *(("aud",) if self.audience else ())],
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
        """The claims when the token lets ``method`` act for ``to_aor``; raises :class:`TokenRejected`."""
        claims = self.verify(token)
        if method.upper() not in claims.allowed_methods:
            raise TokenRejected(f"{method} is not in the token's allowedMethods")
        if _aor_key(to_aor) != _aor_key(claims.aor):
            raise TokenRejected("the request's AOR is not the token's aor")
        if to_aor.rpartition("@")[2].lower() != claims.domain:
            raise TokenRejected("the request's domain is not the token's domain")
        return claims
