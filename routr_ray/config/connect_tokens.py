"""ConnectTokens config (a routr-ray kind): how Connect verifies the ``X-Connect-Token`` JWTs of web agents
(docs/connect.md "Web agents with tokens"). Without this document Connect ignores the header (digest as always).

    apiVersion: v2beta1
    kind: ConnectTokens
    ref: web-agents
    spec:
      publicKeys:                      # PEM public keys (RSA >= 2048 bits or P-256 EC); a token verifies with any
        - file: keys/web-agents.pub    # relative to this file; a file may hold several keys (key rotation)
        - pem: |                       # or inline
            -----BEGIN PUBLIC KEY-----
            ...
      audience: sip.example.com        # the `aud` every token must name
      algorithms: [RS256, ES256]       # optional (default both); never `none` nor an HMAC
      leewaySeconds: 5                 # optional: clock skew allowed on exp/nbf/iat (default 5)
      maxLifetimeSeconds: 3600         # optional: tokens must carry `iat` and live at most this long

Routr's verifier takes one key file (``CONNECT_VERIFIER_PUBLIC_KEY_PATH``, RS256) and checks no audience; here the
audience is required. Private keys never belong here: a PEM private key is refused, naming the field.

Key files are read when ``routr-ray run``/``deploy`` starts (:func:`read_public_keys`), not by ``validate-config``
(which never opens key or certificate files); inline keys are checked at load. :func:`to_options` is what the Connect
replicas get (plain data: the PEM texts, so replicas on other nodes need no copy of the files).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from routr_ray.config.errors import ConfigError, ConfigInvalid
from routr_ray.config.problems import Place, Problems

ALGORITHMS = ("RS256", "ES256")
DEFAULT_LEEWAY_SECONDS = 5.0
MIN_RSA_BITS = 2048
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class KeySource:
    """One ``publicKeys`` entry: a file (absolute, or resolved against the config file) or inline PEM text."""

    pointer: str  # JSON pointer of the entry in its config file
    file: str | None = None
    pem: str | None = None


@dataclass(frozen=True)
class ConnectTokensConfig:
    public_keys: tuple[KeySource, ...]
    audience: str
    source: str = ""  # the config file the document came from (for errors about its key files)
    ref: str = "connect-tokens"
    algorithms: tuple[str, ...] = ALGORITHMS
    leeway_seconds: float = DEFAULT_LEEWAY_SECONDS
    max_lifetime_seconds: float | None = None


def load_public_key(data: bytes) -> tuple[str, Any]:
    """The algorithm (RS256 or ES256) and public key of one PEM block; ValueError says what is wrong with it."""
    text = data.decode("ascii", "replace")
    if "PRIVATE KEY" in text:
        raise ValueError("a private key: give only its public key (openssl pkey -in KEY -pubout); the private key "
                         "stays with whoever signs the tokens")
    if "CERTIFICATE" in text:
        raise ValueError("a certificate: give its public key (openssl x509 -in CERT -pubkey -noout)")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a PEM public key ({exc})") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"an RSA key of {key.key_size} bits: at least {MIN_RSA_BITS} are needed")
        return "RS256", key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256", key
    raise ValueError("neither an RSA nor a P-256 EC public key (RS256 and ES256 only)")


def pem_blocks(data: bytes) -> list[bytes]:
    """Every ``-----BEGIN ...-----`` block of a PEM text (a file may hold several keys); [] when there is none."""
    return [match.group(0) for match in _PEM_BLOCK.finditer(data)]


def check_pem(data: bytes) -> str | None:
    """Why ``data`` (one or more PEM blocks) is not a list of public keys we accept; None when it is."""
    blocks = pem_blocks(data)
    if not blocks:
        return "no PEM block (-----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY-----)"
    for index, block in enumerate(blocks):
        try:
            load_public_key(block)
        except ValueError as exc:
            return f"key {index + 1} of {len(blocks)}: {exc}" if len(blocks) > 1 else str(exc)
    return None


def build_connect_tokens(document: dict[str, Any], place: Place) -> ConnectTokensConfig:
    spec: dict[str, Any] = document["spec"]
    at = place.child("spec")
    base = Path(place.file).parent
    keys: list[KeySource] = []
    for index, entry in enumerate(spec["publicKeys"]):
        entry_place = at.child("publicKeys", index)
        if "pem" in entry:
            reason = check_pem(entry["pem"].encode("ascii", "replace"))
            if reason:
                entry_place.child("pem").error(reason)
            keys.append(KeySource(entry_place.pointer, pem=entry["pem"]))
        else:
            file = entry["file"]
            keys.append(KeySource(entry_place.pointer, file=file if os.path.isabs(file) else str(base / file)))
    max_lifetime = spec.get("maxLifetimeSeconds")
    return ConnectTokensConfig(
        public_keys=tuple(keys),
        audience=spec["audience"],
        source=place.file,
        ref=document.get("ref", ConnectTokensConfig.ref),
        algorithms=tuple(dict.fromkeys(spec.get("algorithms", ALGORITHMS))),
        leeway_seconds=float(spec.get("leewaySeconds", DEFAULT_LEEWAY_SECONDS)),
        max_lifetime_seconds=None if max_lifetime is None else float(max_lifetime),
    )


def read_public_keys(config: ConnectTokensConfig) -> tuple[str, ...]:
    """Every public key of the config as PEM text (files read now); raises :class:`ConfigInvalid` naming the
    config file and field of each key that cannot be read or is not an accepted public key."""
    problems = Problems()
    pems: list[str] = []
    for source in config.public_keys:
        place = Place(problems, config.source, source.pointer)
        if source.pem is not None:
            data = source.pem.encode("ascii", "replace")
            field = place.child("pem")
        else:
            assert source.file is not None
            field = place.child("file")
            try:
                data = Path(source.file).read_bytes()
            except OSError as exc:
                field.error(f"cannot read {source.file}: {exc.strerror or exc}")
                continue
        reason = check_pem(data)
        if reason:
            field.error(f"{source.file}: {reason}" if source.file is not None else reason)
            continue
        pems.extend(block.decode("ascii") for block in pem_blocks(data))
    if problems.errors:
        raise ConfigInvalid(problems.errors)
    if not set(config.algorithms) & {load_public_key(pem.encode())[0] for pem in pems}:
        raise ConfigInvalid([ConfigError(config.source, "/spec/algorithms",
                                         f"no public key is for {' or '.join(config.algorithms)}: no token could "
                                         "ever verify")])
    return tuple(pems)


def to_options(config: ConnectTokensConfig) -> dict[str, Any]:
    """What a Connect replica builds its verifier from (``ConnectTokenVerifier.from_options``): plain data, key
    files already read (raises :class:`ConfigInvalid` as :func:`read_public_keys`)."""
    return {"publicKeys": list(read_public_keys(config)), "audience": config.audience,
            "algorithms": list(config.algorithms), "leewaySeconds": config.leeway_seconds,
            "maxLifetimeSeconds": config.max_lifetime_seconds}
