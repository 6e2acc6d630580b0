"""The nonce/dialog key survives restarts (issue 14 item 10; routr_ray/util/keystore.py): environment first, then
Redis (tests/integration/test_keystore_redis.py), then a 0600 file in the state directory, never in config/."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from routr_ray.util.keystore import (
    KEY_FILE,
    KeyStoreError,
    default_state_dir,
    file_key,
    resolve_nonce_key,
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_key_is_made_once_and_kept_private(tmp_path: Path) -> None:
    state = tmp_path / "state" / "routr-ray"
    first = resolve_nonce_key(environ={}, state_dir=state)
    assert first.origin == str(state / KEY_FILE) and len(bytes.fromhex(first.value)) == 32
    assert mode(state / KEY_FILE) == 0o600 and mode(state) == 0o700
    again = resolve_nonce_key(environ={}, state_dir=state)  # the next `routr-ray run`
    assert again.value == first.value
    assert [p.name for p in state.iterdir()] == [KEY_FILE]  # no temporary file left behind


def test_the_environment_overrides(tmp_path: Path) -> None:
    key = resolve_nonce_key(environ={"ROUTR_RAY_NONCE_KEY": "ab" * 32}, state_dir=tmp_path / "s")
    assert key.value == "ab" * 32 and key.origin == "environment"
    assert not (tmp_path / "s").exists()
    with pytest.raises(KeyStoreError):
        resolve_nonce_key(environ={"ROUTR_RAY_NONCE_KEY": "short"})


def test_the_default_state_directory_follows_xdg(tmp_path: Path) -> None:
    assert default_state_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "routr-ray"
    assert default_state_dir({"HOME": "/home/u"}) == Path("/home/u/.local/state/routr-ray")
    assert default_state_dir({"HOME": "/home/u", "XDG_STATE_HOME": "relative"}) == Path(
        "/home/u/.local/state/routr-ray")  # the spec ignores a relative value
    key = resolve_nonce_key(environ={"XDG_STATE_HOME": str(tmp_path)})
    assert key.origin == str(tmp_path / "routr-ray" / KEY_FILE)


def test_never_inside_the_config_directory(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    with pytest.raises(KeyStoreError, match="inside the config directory"):
        resolve_nonce_key(environ={}, state_dir=config / "state", config_dir=config)
    assert not (config / "state").exists()
    assert resolve_nonce_key(environ={}, state_dir=tmp_path / "state", config_dir=config).value


def test_a_key_file_others_can_read_is_made_private(tmp_path: Path) -> None:
    key = file_key(tmp_path)
    os.chmod(tmp_path / KEY_FILE, 0o644)
    assert file_key(tmp_path) == key and mode(tmp_path / KEY_FILE) == 0o600


def test_an_unusable_key_file_is_an_error_not_a_new_key(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("x\n")
    with pytest.raises(KeyStoreError, match="delete it"):
        file_key(tmp_path)
    assert (tmp_path / KEY_FILE).read_text() == "x\n"
