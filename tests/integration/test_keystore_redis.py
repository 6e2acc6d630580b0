"""The nonce/dialog key kept in the Location's Redis (routr_ray/util/keystore.py): the first run writes it, every
later run (any node) reads the same one; an unreachable Redis is a clear error, not a fresh key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from routr_ray.util.keystore import REDIS_KEY, KeyStoreError, resolve_nonce_key
from tests.support.redis_server import RedisServer, free_port


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


def test_the_key_is_written_once_to_redis_and_shared(redis_server: RedisServer, tmp_path: Path) -> None:
    first = resolve_nonce_key(environ={}, redis_url=redis_server.url, state_dir=tmp_path)
    assert first.origin == "Redis" and len(bytes.fromhex(first.value)) == 32
    assert redis_server.client().get(REDIS_KEY) == first.value.encode()
    assert resolve_nonce_key(environ={}, redis_url=redis_server.url).value == first.value
    assert not list(tmp_path.iterdir())  # the state directory is not used when Redis keeps it
    env = {"ROUTR_RAY_NONCE_KEY": "cd" * 32}
    assert resolve_nonce_key(environ=env, redis_url=redis_server.url).value == "cd" * 32


def test_an_unreachable_redis_is_an_error() -> None:
    with pytest.raises(KeyStoreError, match="Redis"):
        resolve_nonce_key(environ={}, redis_url=f"redis://127.0.0.1:{free_port()}/0")
