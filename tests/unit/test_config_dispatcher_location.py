"""MessageDispatcher and Location configs, and Routr's Redis parameter strings."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from routr_ray.config import (
    AutoscalingConfig,
    CacheProvider,
    MiddlewareConfig,
    RedisParameters,
    load_dispatcher,
    load_location,
    parse_redis_parameters,
    validate_paths,
)
from routr_ray.config.dispatcher import from_document, to_document

ROUTR = Path(__file__).resolve().parents[2] / "tests" / "data" / "config" / "routr"


def config_file(tmp_path: Path, kind: str, spec: str) -> Path:
    path = tmp_path / f"{kind}.yaml"
    body = textwrap.indent(textwrap.dedent(spec), "  ")
    path.write_text(f"apiVersion: v2beta1\nkind: {kind}\nspec:\n{body}")
    return path


def errors_of(path: Path) -> set[tuple[str, str]]:
    return {(e.pointer, e.reason) for e in validate_paths([str(path)])}


# --- MessageDispatcher ---------------------------------------------------------------------------------


def test_dispatcher_tokens_and_internal_metadata_are_read_and_kept_out_of_the_document(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = config_file(
        tmp_path,
        "MessageDispatcher",
        """\
        bindAddr: 10.0.0.5:51901
        token: front-secret-0123456789
        processorToken: outbound-secret-0123
        processors:
          - { ref: ext, addr: "ext:51904", methods: [INVITE], token: ext-secret-0123456789, internalMetadata: true }
          - { ref: connect, addr: serve://connect, methods: [MESSAGE], token: ignored-secret-0123 }
        middlewares:
          - { ref: auth, addr: "auth:51903" }
        """,
    )
    config = load_dispatcher(path)
    assert (config.token, config.processor_token) == ("front-secret-0123456789", "outbound-secret-0123")
    ext, connect = config.processors
    assert (ext.token, ext.internal_metadata) == ("ext-secret-0123456789", True)
    assert "serve://" in caplog.text and "ignored-secret" not in caplog.text  # a warning, the token never shown
    assert config.middlewares[0].internal_metadata is False and config.middlewares[0].token is None
    document = to_document(config)
    assert "secret" not in repr(document) and "secret" not in repr(config)  # Serve shows user_config; logs show repr
    assert document["spec"]["processors"][0]["internalMetadata"] is True
    assert from_document(to_document(config, include_token=True)) == config


@pytest.mark.parametrize("field", ["token", "processorToken"])
def test_a_bad_dispatcher_token_is_an_error_that_does_not_show_it(tmp_path: Path, field: str) -> None:
    path = config_file(tmp_path, "MessageDispatcher", f"""\
        {field}: "two words-0123456789"
        processors: [{{ ref: echo, addr: serve://echo, methods: [OPTIONS] }}]
        """)
    ((pointer, reason),) = errors_of(path)
    assert pointer == f"/spec/{field}" and "printable ASCII" in reason and "words" not in reason


def test_routr_dispatcher_example() -> None:
    config = load_dispatcher(ROUTR / "dispatcher.yaml")
    assert (config.ref, config.bind_addr) == ("message-dispatcher", "0.0.0.0:51901")
    (processor,) = config.processors
    assert (processor.ref, processor.addr, processor.match_func) == (
        "connect-processor",
        "connect:51904",
        "req => true",
    )
    assert processor.methods == ("REGISTER", "MESSAGE", "INVITE", "ACK", "BYE", "CANCEL")
    assert processor.autoscaling is None
    assert config.middlewares == (
        MiddlewareConfig("rtprelay-middleware", "rtprelay:51903", post_processor=True),
    )


def test_dispatcher_defaults_and_autoscaling(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        "MessageDispatcher",
        """\
        autoscaling: { minReplicas: 1, maxReplicas: 3 }
        processors:
          - ref: connect
            addr: serve://connect
            methods: [INVITE]
            autoscaling: { minReplicas: 2, maxReplicas: 8, targetOngoingRequests: 4, downscaleDelaySeconds: 5 }
        middlewares:
          - { ref: auth, addr: "auth:51903" }
        """,
    )
    config = load_dispatcher(path)
    assert config.bind_addr == "127.0.0.1:51901"  # loopback unless configured (DESIGN §6b)
    assert config.autoscaling == AutoscalingConfig(min_replicas=1, max_replicas=3)
    (processor,) = config.processors
    assert processor.match_func == "req => true"
    assert processor.autoscaling == AutoscalingConfig(2, 8, 4.0, 30.0, 5.0)
    assert config.middlewares[0].post_processor is False  # runs before the processor


def test_dispatcher_errors(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        "MessageDispatcher",
        """\
        bindAddr: 51901
        processors:
          - { ref: a, methods: [INVITE] }
          - { ref: b, addr: "b:1", methods: INVITE, matchFunc: 42 }
          - { ref: c, addr: "c:1", methods: [INVITE], autoscaling: { minReplicas: 4, maxReplicas: 2 } }
        middlewares:
          - { ref: m, addr: "m", postProcessor: "yes" }
        """,
    )
    assert errors_of(path) == {
        ("/spec/bindAddr", "expected a string, got the number 51901 (quote it in YAML)"),
        ("/spec/processors/0/addr", "required field is missing"),
        ("/spec/processors/1/methods", "expected a list, got the string 'INVITE'"),
        ("/spec/processors/1/matchFunc", "expected a string, got the number 42 (quote it in YAML)"),
        (
            "/spec/middlewares/0/addr",
            "expected serve://<deployment> or host:port (IPv6 as [addr]:port); got 'm'",
        ),
        ("/spec/middlewares/0/postProcessor", "expected true or false, got the string 'yes'"),
    }
    # Semantic rules run once the document is well-formed.
    path.write_text(
        path.read_text()
        .replace("bindAddr: 51901", "bindAddr: 0.0.0.0:51901")
        .replace("ref: a, methods", "ref: a, addr: 'a:1', methods")
        .replace("methods: INVITE, matchFunc: 42", "methods: [INVITE]")
        .replace('addr: "m", postProcessor: "yes"', 'addr: "m:1"')
        .replace("ref: m,", "ref: a,")
    )
    assert errors_of(path) == {
        ("/spec/processors/2/autoscaling/maxReplicas", "maxReplicas (2) is below minReplicas (4)"),
        ("/spec/middlewares/0/ref", "duplicate ref 'a': already used at /spec/processors/0"),
    }


def test_dispatcher_needs_processors(tmp_path: Path) -> None:
    path = config_file(tmp_path, "MessageDispatcher", "bindAddr: 0.0.0.0:51901\n")
    assert errors_of(path) == {("/spec/processors", "required field is missing")}


# --- Location ------------------------------------------------------------------------------------------


def test_routr_location_example() -> None:
    config = load_location(ROUTR / "location.yaml")
    assert (config.bind_addr, config.shards, config.cache.provider) == (
        "0.0.0.0:51902",
        2,
        CacheProvider.MEMORY,
    )
    assert config.cache.redis is None


def test_location_defaults(tmp_path: Path) -> None:
    config = load_location(config_file(tmp_path, "Location", "{}\n"))
    assert (config.bind_addr, config.shards, config.cache.provider) == (
        "127.0.0.1:51902",
        2,
        CacheProvider.MEMORY,
    )


def test_location_redis_with_routr_parameters(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        "Location",
        'shards: 4\ncache: { provider: Redis, parameters: "host=redis.local,port=6380,password=s3cret,secure=true" }\n',
    )
    config = load_location(path)
    assert config.shards == 4 and config.cache.provider is CacheProvider.REDIS
    assert config.cache.redis == RedisParameters(
        host="redis.local", port=6380, password="s3cret", secure=True
    )
    assert "s3cret" not in repr(config)


def test_location_errors(tmp_path: Path) -> None:
    path = config_file(
        tmp_path,
        "Location",
        'bindAddr: "localhost"\nshards: two\ncache: { provider: postgres, parameters: "host=a,colour=red" }\n',
    )
    assert errors_of(path) == {
        ("/spec/bindAddr", "expected host:port (IPv6 as [addr]:port); got 'localhost'"),
        ("/spec/shards", "expected an integer, got the string 'two'"),
        ("/spec/cache/provider", "expected memory or redis (any letter case); got the string 'postgres'"),
        (
            "/spec/cache/parameters",
            "bad Redis parameters: unknown parameter 'colour'; known: host, port, username, password, secure, db",
        ),
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", RedisParameters()),
        ("host=localhost,port=6379", RedisParameters()),
        (
            " host = r1 , port=7000, username=u, password=p, secure=TRUE, db=2 ",
            RedisParameters("r1", 7000, "u", "p", True, 2),
        ),
        ("redis://r2", RedisParameters("r2")),
        ("rediss://user:p%2Cw%40d@r3:6390/5", RedisParameters("r3", 6390, "user", "p,w@d", True, 5)),
        ("redis://:only-password@[::1]:6379", RedisParameters("::1", 6379, None, "only-password")),
    ],
)
def test_redis_parameters_forms(text: str, expected: RedisParameters) -> None:
    parsed = parse_redis_parameters(text)
    assert parsed == expected
    assert parse_redis_parameters(parsed.url()) == parsed  # url() round-trips


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("host", "expected key=value, got 'host'"),
        ("port=99999", "port must be a number from 1 to 65535, got '99999'"),
        ("secure=maybe", "secure must be true or false, got 'maybe'"),
        ("host=a,host=b", "parameter 'host' is given twice"),
        ("redis://h:notaport", "the port in the Redis URL is not a number from 1 to 65535"),
        ("redis://h/0?ssl=true", "query and fragment are not supported in the Redis URL"),
    ],
)
def test_redis_parameters_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_redis_parameters(text)
    assert str(raised.value) == reason
