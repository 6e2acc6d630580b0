"""The Location API token in the Location config: spec.token, else ROUTR_RAY_LOCATION_TOKEN."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from routr_ray.config import load_location, validate_paths
from routr_ray.config.location import TOKEN_ENV

GOOD = "0123456789abcdef-token"


def location_file(tmp_path: Path, spec: str) -> Path:
    path = tmp_path / "location.yaml"
    path.write_text(f"apiVersion: v2beta1\nkind: Location\nspec:\n  {spec}\n")
    return path


def test_no_token_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert load_location(location_file(tmp_path, "shards: 2")).token is None


def test_token_from_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    config = load_location(location_file(tmp_path, f'token: "{GOOD}"'))
    assert config.token == GOOD
    assert GOOD not in repr(config)


def test_the_environment_overrides_the_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "from-the-environment-0123")
    assert load_location(location_file(tmp_path, f'token: "{GOOD}"')).token == "from-the-environment-0123"


def test_token_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "  from-the-environment-0123 ")
    assert load_location(location_file(tmp_path, "shards: 2")).token == "from-the-environment-0123"
    monkeypatch.setenv(TOKEN_ENV, "   ")
    assert load_location(location_file(tmp_path, "shards: 2")).token is None


def test_short_token_is_accepted_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with caplog.at_level(logging.WARNING):
        assert load_location(location_file(tmp_path, 'token: "Zq9x"')).token == "Zq9x"
    assert "shorter than 16 characters" in caplog.text
    assert "Zq9x" not in caplog.text  # the warning never shows the token itself


@pytest.mark.parametrize("bad", ['""', '"has space"', '"tab\\there-0123456789"', "42"])
def test_invalid_token_is_a_config_error_that_does_not_show_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    errors = validate_paths([str(location_file(tmp_path, f"token: {bad}"))])
    assert [e.pointer for e in errors] == ["/spec/token"]
    if " " in bad or "\\t" in bad:
        assert "printable ASCII" in errors[0].reason and "space" not in errors[0].reason


def test_invalid_token_in_the_environment_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "two words-0123456789")
    errors = validate_paths([str(location_file(tmp_path, "shards: 2"))])
    assert len(errors) == 1 and TOKEN_ENV in errors[0].reason and "words" not in errors[0].reason
