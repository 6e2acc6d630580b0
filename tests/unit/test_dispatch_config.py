"""The MessageDispatcher document: optional middlewares, token, deadlines; the plain document and back."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from routr_ray.config import ConfigInvalid, MiddlewareConfig, load_dispatcher, validate_paths
from routr_ray.config.dispatcher import (
    DEFAULT_DEADLINE_SECONDS,
    DEFAULT_RETRY_AFTER_SECONDS,
    AutoscalingConfig,
    DispatcherConfig,
    ProcessorConfig,
    from_document,
    to_document,
)


def config_file(tmp_path: Path, spec: str) -> Path:
    path = tmp_path / "dispatcher.yaml"
    body = textwrap.indent(textwrap.dedent(spec), "  ")
    path.write_text(f"apiVersion: v2beta1\nkind: MessageDispatcher\nspec:\n{body}")
    return path


def errors_of(path: Path) -> set[tuple[str, str]]:
    return {(e.pointer, e.reason) for e in validate_paths([str(path)])}


FULL = """\
    bindAddr: 0.0.0.0:51901
    token: s3cret
    deadlineSeconds: 2.5
    retryAfterSeconds: 30
    processors:
      - { ref: connect, addr: "serve://connect", methods: [INVITE, BYE], deadlineSeconds: 1 }
      - { ref: echo, addr: "127.0.0.1:51904", methods: [OPTIONS], matchFunc: "req => true",
          autoscaling: { minReplicas: 1, maxReplicas: 4 } }
    middlewares:
      - { ref: acct, addr: "acct:51903", optional: true, deadlineSeconds: 0.5 }
      - { ref: relay, addr: "rtprelay:51903", postProcessor: true }
    """


def test_token_deadlines_retry_after_and_optional_middlewares(tmp_path: Path) -> None:
    config = load_dispatcher(config_file(tmp_path, FULL))
    assert (config.token, config.deadline_seconds, config.retry_after_seconds) == ("s3cret", 2.5, 30)
    assert [p.deadline_seconds for p in config.processors] == [1.0, None]
    assert config.middlewares == (
        MiddlewareConfig("acct", "acct:51903", post_processor=False, optional=True, deadline_seconds=0.5),
        MiddlewareConfig("relay", "rtprelay:51903", post_processor=True, optional=False),
    )
    assert "s3cret" not in repr(config)  # a secret stays out of logs


def test_defaults(tmp_path: Path) -> None:
    config = load_dispatcher(config_file(tmp_path, "processors: [{ ref: a, addr: 'a:1', methods: [INVITE] }]\n"))
    assert config.token is None
    assert (config.deadline_seconds, config.retry_after_seconds) == (DEFAULT_DEADLINE_SECONDS,
                                                                     DEFAULT_RETRY_AFTER_SECONDS)
    assert config.processors[0].deadline_seconds is None


def test_bad_values_are_named(tmp_path: Path) -> None:
    path = config_file(tmp_path, """\
        token: ""
        deadlineSeconds: 0
        retryAfterSeconds: 1.5
        processors: [{ ref: a, addr: "a:1", methods: [INVITE], deadlineSeconds: -1 }]
        middlewares: [{ ref: m, addr: "m:1", optional: "yes" }]
        """)
    found = errors_of(path)
    assert {pointer for pointer, _ in found} == {
        "/spec/token", "/spec/deadlineSeconds", "/spec/retryAfterSeconds", "/spec/processors/0/deadlineSeconds",
        "/spec/middlewares/0/optional"}
    assert ("/spec/middlewares/0/optional", "expected true or false, got the string 'yes'") in found


def test_document_round_trip(tmp_path: Path) -> None:
    config = load_dispatcher(config_file(tmp_path, FULL))
    assert from_document(to_document(config, include_token=True)) == config
    plain = to_document(config)
    assert "token" not in plain["spec"]  # Serve shows user_config: no secret in it by default
    assert from_document(plain) == DispatcherConfig(**{**config.__dict__, "token": None})


def test_round_trip_of_a_config_built_in_code() -> None:
    config = DispatcherConfig(
        processors=(ProcessorConfig("p", "serve://echo", ("OPTIONS",), "req => req.method === 'OPTIONS'",
                                    AutoscalingConfig(1, 2, 3.0, 4.0, 5.0), 7.0),),
        middlewares=(MiddlewareConfig("m", "m:1", optional=True),),
        autoscaling=AutoscalingConfig(2, 2))
    assert from_document(to_document(config)) == config


def test_from_document_reports_every_error() -> None:
    document = to_document(DispatcherConfig(processors=(ProcessorConfig("a", "a:1", ("INVITE",)),
                                                        ProcessorConfig("a", "b:1", ("BYE",)))))
    document["spec"]["processors"][0]["addr"] = "nowhere"
    with pytest.raises(ConfigInvalid) as invalid:
        from_document(document)
    assert [e.pointer for e in invalid.value.errors] == ["/spec/processors/0/addr"]
    document["spec"]["processors"][0]["addr"] = "a:1"
    with pytest.raises(ConfigInvalid) as invalid:
        from_document(document)
    assert [(e.pointer, e.reason) for e in invalid.value.errors] == [
        ("/spec/processors/1/ref", "duplicate ref 'a': already used at /spec/processors/0")]
