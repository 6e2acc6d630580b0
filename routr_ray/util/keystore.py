"""The nonce/dialog key: one secret every Connect replica shares (digest nonces, `rrk` dialog tokens), kept across
restarts so that the BYE of a call set up before a restart is still recognised (issue 14 item 10).

Where it comes from, first match wins:

1. ``ROUTR_RAY_NONCE_KEY`` in the environment (hex, or any text of at least 16 bytes), as before;
2. Redis, when the Location keeps its bindings there: ``SET routr-ray:nonce-key <new key> NX`` then ``GET``, so
   every ``routr-ray run``/``deploy`` against that Redis (any node) uses the first key ever written;
3. a file ``nonce-key`` in the state directory (``--state-dir``, default ``$XDG_STATE_HOME/routr-ray``, i.e.
   ``~/.local/state/routr-ray``): created once with mode 0600 in a directory of mode 0700, never inside the config
   directory (config is shared, copied and committed; a secret does not belong there).

Whoever reads the key can mint dialog tokens and nonces: the file is the user's alone, and a Redis that holds it
must be as private as the bindings it already holds. Rotate by deleting it (file or Redis key) and restarting:
calls in progress then lose their in-dialog requests (403), registrations re-authenticate once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from routr_ray.sip.digest import NONCE_KEY_ENV

log = logging.getLogger(__name__)

REDIS_KEY = "routr-ray:nonce-key"
KEY_FILE = "nonce-key"
_MIN_KEY_BYTES = 16


class KeyStoreError(RuntimeError):
    """The key cannot be read or kept (one line to show)."""


@dataclass(frozen=True)
class NonceKey:
    value: str  # hex text (or the environment's text), what ConnectProcessor receives encoded
    origin: str  # where it came from, for the startup summary: "environment", "Redis", or the file's path


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/routr-ray``, else ``~/.local/state/routr-ray`` (XDG Base Directory spec)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path(env.get("HOME") or Path.home()) / ".local" / "state"
    return root / "routr-ray"


def new_key() -> str:
    return secrets.token_hex(32)


def _valid(text: str) -> bool:
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = text.encode("utf-8")
    return len(key) >= _MIN_KEY_BYTES


def resolve_nonce_key(*, environ: Mapping[str, str] | None = None, redis_url: str | None = None,
                      state_dir: Path | None = None, config_dir: Path | None = None) -> NonceKey:
    """The key to run with (module docstring for the order). Raises :class:`KeyStoreError`."""
    env = os.environ if environ is None else environ
    text = env.get(NONCE_KEY_ENV, "").strip()
    if text:
        if not _valid(text):
            raise KeyStoreError(f"{NONCE_KEY_ENV} must hold at least {_MIN_KEY_BYTES} bytes")
        return NonceKey(text, "environment")
    if redis_url:
        return NonceKey(redis_key(redis_url), "Redis")
    directory = state_dir or default_state_dir(env)
    path = directory / KEY_FILE
    return NonceKey(file_key(directory, config_dir=config_dir), str(path))


def redis_key(url: str, *, timeout: float = 2.0) -> str:
    """The key stored in Redis at ``url``, written first (atomically, ``NX``) when there is none."""
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        client.set(REDIS_KEY, new_key(), nx=True)
        stored = client.get(REDIS_KEY)
    except redis.RedisError as exc:
        raise KeyStoreError(f"cannot keep the nonce key in Redis: {exc}") from exc
    finally:
        client.close()
    text = stored.decode("utf-8", "replace").strip() if isinstance(stored, bytes) else ""
    if not _valid(text):
        raise KeyStoreError(f"the nonce key in Redis ({REDIS_KEY}) is not usable; delete it to make a new one")
    return text


def file_key(directory: Path, *, config_dir: Path | None = None) -> str:
    """The key in ``directory/nonce-key``, created (mode 0600, directory 0700) when absent. Two runs starting at
    once agree: the file appears complete or not at all (written aside, then hard-linked into place)."""
    directory = Path(directory).expanduser()
    if config_dir is not None and _inside(directory, Path(config_dir)):
        raise KeyStoreError(f"the state directory {directory} is inside the config directory {config_dir}: "
                            "choose another with --state-dir (a secret does not belong with the config)")
    path = directory / KEY_FILE
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not path.exists():
            _create(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("%s was readable by others (mode %o): now 0600", path, mode)
        text = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise KeyStoreError(f"cannot keep the nonce key in {path}: {exc.strerror or exc}") from exc
    if not _valid(text):
        raise KeyStoreError(f"{path} does not hold a usable nonce key; delete it to make a new one")
    return text


def _create(path: Path) -> None:
    fd, temp = tempfile.mkstemp(prefix=".nonce-key.", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(new_key() + "\n")
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another run made it first: its key wins
            os.link(temp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.expanduser().resolve().relative_to(parent.expanduser().resolve())
    except ValueError:
        return False
    return True
