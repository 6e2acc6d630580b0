"""API keys, roles and who may do what (issue 20 item 4).

A key is ``rr-<id>-<secret>`` (16 + 64 hex digits). The store keeps the id, a SHA-256 of the secret (a secret of
256 random bits needs no slow hash) and the key's role in each workspace it may use. A caller presents it as gRPC
metadata, either

* ``authorization: Bearer rr-<id>-<secret>``, or
* ``authorization: Basic base64(<id>:<secret>)``: what Routr's SDK (``@routr/sdk``: ``username``/``password``
  client options) and rctl send, so they work unchanged with ``username`` = the key id and ``password`` = the
  secret.

The workspace a call acts on is the ``x-workspace`` metadata, or the key's only workspace. Roles: ``viewer``
reads (Get, List, FindBy); ``admin`` also writes (Create, Update, Delete); ``owner`` is an admin who was given the
workspace (the first key of a database, ``routr-ray keys create --role owner``). A key never reaches a workspace
it has no role in: another workspace's resources are NOT_FOUND to it, exactly as refs that do not exist.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from routr_ray.api.errors import denied, unauthenticated

ROLES = ("viewer", "admin", "owner")
WORKSPACE_METADATA = "x-workspace"
_KEY = re.compile(r"^rr-([0-9a-f]{16})-([0-9a-f]{64})$")
WORKSPACE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class NewKey:
    key_id: str
    secret: str

    @property
    def text(self) -> str:
        return f"rr-{self.key_id}-{self.secret}"


def new_key() -> NewKey:
    return NewKey(secrets.token_hex(8), secrets.token_hex(32))


def parse_key(text: str) -> tuple[str, str] | None:
    found = _KEY.match(text.strip())
    return (found.group(1), found.group(2)) if found else None


def secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def credentials_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> tuple[str, str] | None:
    """(key id, secret) from ``authorization`` (Bearer or Basic); None when there is none or it is malformed."""
    for key, value in metadata or ():
        if key.lower() != "authorization":
            continue
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        scheme, _, rest = text.strip().partition(" ")
        rest = rest.strip()
        if scheme.lower() == "bearer":
            return parse_key(rest)
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(rest, validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            key_id, colon, secret = decoded.partition(":")
            if colon and re.fullmatch(r"[0-9a-f]{16}", key_id) and re.fullmatch(r"[0-9a-f]{64}", secret):
                return key_id, secret
            return None
    return None


def workspace_from_metadata(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    for key, value in metadata or ():
        if key.lower() == WORKSPACE_METADATA:
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


@dataclass(frozen=True)
class Caller:
    """An authenticated call: the workspace it acts on and the key's role there."""

    key_id: str
    workspace: str
    role: str

    def require_write(self) -> None:
        if ROLES.index(self.role) < ROLES.index("admin"):
            raise denied(f"the {self.role} role may read, not write, in workspace {self.workspace!r}")


KeyRoles = Callable[[str, str], Awaitable["dict[str, str] | None"]]


async def authenticate(metadata: Iterable[tuple[str, str | bytes]] | None, key_roles: KeyRoles) -> Caller:
    """The caller of a gRPC call (raises ApiError UNAUTHENTICATED / PERMISSION_DENIED). The message never repeats
    what the caller sent."""
    items = list(metadata or ())
    credentials = credentials_from_metadata(items)
    if credentials is None:
        raise unauthenticated("an API key is required: authorization: Bearer rr-<id>-<secret>, or Basic "
                              "credentials with the key id as username and the secret as password")
    roles = await key_roles(*credentials)
    if not roles:
        raise unauthenticated("unknown or revoked API key")
    wanted = workspace_from_metadata(items)
    if wanted is None:
        if len(roles) != 1:
            raise denied(f"this key may use several workspaces: name one in the {WORKSPACE_METADATA} metadata")
        wanted = next(iter(roles))
    role = roles.get(wanted)
    if role is None:
        raise denied(f"this key has no role in workspace {wanted!r}")
    return Caller(credentials[0], wanted, role)
