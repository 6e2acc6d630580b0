"""Credentials' passwords encrypted at rest (issue 20 item 2), as Routr's ``CLOAK_ENCRYPTION_KEY`` does.

The key comes from ``$ROUTR_RAY_SECRETS_KEY`` (any text of 32 characters or more, e.g. ``openssl rand -hex 32``);
AES-256-GCM with a key derived by HKDF-SHA256, a random 96-bit nonce per value and the resource's ref as
associated data (a sealed password copied onto another row does not open). A sealed value reads
``enc:v1:<base64url(nonce | ciphertext)>``. Passwords never leave the API: responses carry an empty password.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRETS_KEY_ENV = "ROUTR_RAY_SECRETS_KEY"
PREFIX = "enc:v1:"
MIN_KEY_CHARS = 32
PASSWORD_PATH = ("spec", "credentials", "password")


class SecretsKeyError(ValueError):
    """No usable key (a message that says how to set one), or a value that does not open with it."""


class Sealer:
    def __init__(self, key_text: str) -> None:
        if len(key_text) < MIN_KEY_CHARS:
            raise SecretsKeyError(f"${SECRETS_KEY_ENV} must have at least {MIN_KEY_CHARS} characters "
                                  "(e.g. the output of `openssl rand -hex 32`)")
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"routr-ray credentials password v1").derive(key_text.encode())
        self._aead = AESGCM(key)

    @classmethod
    def from_env(cls) -> Sealer:
        text = os.environ.get(SECRETS_KEY_ENV, "")
        if not text:
            raise SecretsKeyError(f"set ${SECRETS_KEY_ENV} (32 characters or more, e.g. `openssl rand -hex 32`): "
                                  "the key that encrypts credentials' passwords in the database")
        return cls(text)

    def seal(self, plaintext: str, ref: str) -> str:
        if plaintext.startswith(PREFIX):
            return plaintext
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), ref.encode())
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, value: str, ref: str) -> str:
        if not value.startswith(PREFIX):
            return value  # stored before encryption was on (or imported as text): still usable
        try:
            raw = base64.urlsafe_b64decode(value[len(PREFIX):].encode())
            return self._aead.decrypt(raw[:12], raw[12:], ref.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise SecretsKeyError(f"the password of {ref} does not open with ${SECRETS_KEY_ENV}: wrong key?") from exc


def seal_document(sealer: Sealer | None, kind: str, document: dict) -> dict:
    """The document with its password sealed (Credentials only; unchanged without a sealer)."""
    if sealer is None or kind != "Credentials":
        return document
    creds = document.get("spec", {}).get("credentials", {})
    if isinstance(creds.get("password"), str):
        creds["password"] = sealer.seal(creds["password"], document["ref"])
    return document


def open_document(sealer: Sealer | None, kind: str, document: dict) -> dict:
    if sealer is None or kind != "Credentials":
        return document
    creds = document.get("spec", {}).get("credentials", {})
    if isinstance(creds.get("password"), str):
        creds["password"] = sealer.open(creds["password"], document["ref"])
    return document
