"""Deployment versions (routr_ray/actors/serve_app.py): what gives Serve new replicas (a rolling update) and what
does not. ``ROUTR_RAY_RELEASE`` is the operator's release label (issue 18 item 3): a new one rolls every replica
as new code would; the same one keeps them."""

from __future__ import annotations

import pytest

from routr_ray.actors import serve_app


def fingerprint(monkeypatch: pytest.MonkeyPatch, release: str | None) -> str:
    if release is None:
        monkeypatch.delenv(serve_app.RELEASE_ENV, raising=False)
    else:
        monkeypatch.setenv(serve_app.RELEASE_ENV, release)
    return serve_app.code_fingerprint.__wrapped__()


def test_a_new_release_label_is_a_new_code_version(monkeypatch: pytest.MonkeyPatch) -> None:
    unlabelled = fingerprint(monkeypatch, None)
    first = fingerprint(monkeypatch, "2026.12.1")
    assert first != unlabelled
    assert fingerprint(monkeypatch, "2026.12.2") != first
    assert fingerprint(monkeypatch, "2026.12.1") == first  # the same release keeps the replicas


def test_versions_follow_the_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(serve_app, "code_fingerprint", lambda: "a")
    before = serve_app._version("processor", "connect", None)
    assert serve_app._version("processor", "connect", None) == before
    monkeypatch.setattr(serve_app, "code_fingerprint", lambda: "b")
    assert serve_app._version("processor", "connect", None) != before
