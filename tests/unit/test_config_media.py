"""The MediaRelay config kind (routr_ray/config/media.py) and the dispatcher's middleware `responses` field."""

from __future__ import annotations

from pathlib import Path

import pytest

from routr_ray.config import ConfigInvalid, load_config_dir, validate_paths
from routr_ray.config.dispatcher import from_document as dispatcher_from_document
from routr_ray.config.dispatcher import to_document as dispatcher_to_document
from routr_ray.config.media import MediaRelayConfig, RtpEngineInstance, from_document, to_document

REPO = Path(__file__).resolve().parents[2]

DOCUMENT = """
apiVersion: v2beta1
kind: MediaRelay
ref: relay
spec:
  rtpengines:
    - { ref: a, addr: "127.0.0.1:22222" }
    - { ref: b, addr: "[2001:db8::5]:22222" }
  timeoutSeconds: 0.5
  retries: 3
  pingIntervalSeconds: 1
  deleteDelaySeconds: 0
  retryAfterSeconds: 9
"""


def test_a_media_relay_document_loads(tmp_path: Path) -> None:
    (tmp_path / "media.yaml").write_text(DOCUMENT)
    media = load_config_dir(tmp_path).media
    assert media == MediaRelayConfig(
        rtpengines=(RtpEngineInstance("a", "127.0.0.1:22222"), RtpEngineInstance("b", "[2001:db8::5]:22222")),
        ref="relay", timeout_seconds=0.5, retries=3, ping_interval_seconds=1.0, delete_delay_seconds=0,
        retry_after_seconds=9)
    assert from_document(to_document(media)) == media


def test_defaults_and_the_shipped_file() -> None:
    shipped = load_config_dir(REPO / "config").media
    assert shipped is not None and shipped.rtpengines == (RtpEngineInstance("rtpengine-01", "127.0.0.1:22222"),)
    assert (shipped.timeout_seconds, shipped.retries, shipped.ping_interval_seconds) == (1.0, 2, 2.0)
    assert shipped.delete_delay_seconds is None and "deleteDelaySeconds" not in to_document(shipped)["spec"]


@pytest.mark.parametrize(("spec", "reason"), [
    ("rtpengines: []", "at least one item"),
    ("rtpengines: [{ref: a, addr: nohost}]", "host:port"),
    ("rtpengines: [{ref: a, addr: '127.0.0.1:1'}, {ref: a, addr: '127.0.0.1:2'}]", "duplicate ref 'a'"),
    ("rtpengines: [{ref: a, addr: '127.0.0.1:1'}]\n  timeoutSeconds: 0", "timeoutSeconds"),
    ("rtpengines: [{ref: a, addr: '127.0.0.1:1'}]\n  retries: -1", "retries"),
    ("{}", "rtpengines"),
])
def test_bad_documents_are_refused_with_the_field(tmp_path: Path, spec: str, reason: str) -> None:
    path = tmp_path / "media.yaml"
    path.write_text(f"apiVersion: v2beta1\nkind: MediaRelay\nref: r\nspec:\n  {spec}\n")
    errors = validate_paths([str(path)])
    assert errors and any(reason in str(e) for e in errors), errors


def test_one_media_relay_per_config(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(DOCUMENT)
    (tmp_path / "b.yaml").write_text(DOCUMENT)
    with pytest.raises(ConfigInvalid, match="a second MediaRelay"):
        load_config_dir(tmp_path)


def test_middleware_responses_mode() -> None:
    document = {"apiVersion": "v2beta1", "kind": "MessageDispatcher", "spec": {
        "processors": [{"ref": "c", "addr": "serve://connect", "methods": ["INVITE"]}],
        "middlewares": [{"ref": "m", "addr": "serve://rtpengine", "postProcessor": True, "internalMetadata": True,
                         "responses": "requested"}, {"ref": "n", "addr": "n:1"}]}}
    config = dispatcher_from_document(document)
    assert [m.responses for m in config.middlewares] == ["requested", "all"]
    assert dispatcher_from_document(dispatcher_to_document(config)) == config
    document["spec"]["middlewares"][1]["responses"] = "some"  # type: ignore[index]
    with pytest.raises(ConfigInvalid, match="responses"):
        dispatcher_from_document(document)


@pytest.mark.parametrize(("entry", "error"), [
    ("{ref: m, addr: 'serve://rtpengine', postProcessor: true, internalMetadata: true}", None),
    ("{ref: m, addr: 'serve://rtpengine', internalMetadata: true}", "needs postProcessor: true"),
    ("{ref: m, addr: 'serve://rtpengine', postProcessor: true}", "internalMetadata: true"),
])
def test_the_launcher_checks_the_rtpengine_entry(tmp_path: Path, entry: str, error: str | None) -> None:
    from routr_ray.actors.launcher import RunOptions, StartupError, load

    for name in ("edgeport.yaml", "location.yaml", "media.yaml"):
        (tmp_path / name).write_text((REPO / "config" / name).read_text())
    (tmp_path / "dispatcher.yaml").write_text(
        "apiVersion: v2beta1\nkind: MessageDispatcher\nspec:\n  processors:\n"
        "    - {ref: e, addr: 'serve://echo', methods: [INVITE]}\n"
        f"  middlewares:\n    - {entry}\n")
    options = RunOptions(config_dir=tmp_path)
    if error is None:
        assert load(options).media is not None
    else:
        with pytest.raises(StartupError, match=error):
            load(options)
    (tmp_path / "media.yaml").unlink()
    with pytest.raises(StartupError, match="no MediaRelay document"):
        load(options)
