"""The config loader as a whole: files and directories, every error at once, the shipped sets."""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import pytest

from routr_ray.config import (
    ConfigError,
    ConfigInvalid,
    ConfigSet,
    Credentials,
    TransportProtocol,
    UnknownMethodAction,
    load_config_dir,
    load_edgeport,
    load_resources,
    validate_paths,
)
from routr_ray.config.values import PRIVATE_NETWORKS

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "config"
DEFAULT_CONFIG = REPO / "config"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def triples(errors: list[ConfigError], relative_to: Path | None = None) -> set[tuple[str, str, str]]:
    def name(file: str) -> str:
        return str(Path(file).relative_to(relative_to)) if relative_to else Path(file).name

    return {(name(e.file), e.pointer, e.reason) for e in errors}


CREDENTIALS = """\
- apiVersion: v2beta1
  kind: Credentials
  ref: credentials-01
  metadata: { name: Agent Credentials }
  spec: { credentials: { username: "1001", password: "1234" } }
"""


# --- the shipped sets -------------------------------------------------------------------------------


def test_the_default_config_set_validates() -> None:
    assert validate_paths([str(DEFAULT_CONFIG)]) == []


def test_the_default_config_set_loads_with_the_promised_values() -> None:
    config = load_config_dir(DEFAULT_CONFIG)
    (edgeport,) = config.edgeports
    assert [(t.protocol, t.port) for t in edgeport.transports] == [
        (TransportProtocol.UDP, 5060),
        (TransportProtocol.TCP, 5060),
        (TransportProtocol.TLS, 5061),
        (TransportProtocol.WS, 5062),
        (TransportProtocol.WSS, 5063),
    ]
    assert edgeport.localnets == PRIVATE_NETWORKS  # unset in the shipped file: the private ranges (issue 13)
    assert edgeport.methods == (
        "REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE",
        "PRACK", "UPDATE", "INFO", "REFER", "SUBSCRIBE", "NOTIFY",
    )  # fmt: skip
    assert edgeport.unknown_method_action is UnknownMethodAction.RESPOND
    assert [str(n) for n in edgeport.rate_limit.trusted] == ["127.0.0.1/32"]
    assert edgeport.health.port == 8080
    assert edgeport.security_context is None  # the edge generates a development certificate
    assert config.dispatcher is not None
    (connect,) = config.dispatcher.processors
    assert connect.addr == "serve://connect" and set(connect.methods) == set(edgeport.methods)
    assert config.location is not None
    assert (config.location.bind_addr, config.location.shards, config.location.cache.provider) == (
        "127.0.0.1:51902",
        2,
        "memory",
    )


def test_the_default_agents_use_credentials_named_like_them_in_sip_local() -> None:
    resources = load_config_dir(DEFAULT_CONFIG).resources
    for username in ("1001", "1002"):
        agent = resources.agent(username, "sip.local")
        assert agent is not None
        credentials = resources.get(Credentials, agent.credentials_ref)
        assert credentials is not None and credentials.username == username
    assert resources.peers and resources.trunks and resources.numbers and resources.access_control_lists


def test_routr_documented_examples_validate_unchanged() -> None:
    assert validate_paths([str(DATA / "routr")]) == []


def test_routr_examples_as_loose_files_form_one_unit() -> None:
    files = sorted(str(p) for p in (DATA / "routr" / "resources").glob("*.yaml"))
    assert validate_paths(files) == []


# --- every error at once, with file, pointer and reason ------------------------------------------------


def test_a_file_with_several_errors_reports_all_of_them(caplog: pytest.LogCaptureFixture) -> None:
    file = DATA / "broken" / "edgeport-several-errors.yaml"
    with caplog.at_level(logging.WARNING, logger="routr_ray.config"):
        errors = validate_paths([str(file)])
    assert triples(errors) == {
        ("edgeport-several-errors.yaml", "/apiVersion", "must be one of v2beta1, v2, v2draft1, v2.0; got the string 'v3'"),
        ("edgeport-several-errors.yaml", "/spec/unknownMethodAction", "must be one of Discard, Respond; got the string 'Ignore'"),
        ("edgeport-several-errors.yaml", "/spec/localnets/0", "expected an IP address or network such as 10.0.0.0/8; got '10.0.0.0/33'"),
        ("edgeport-several-errors.yaml", "/spec/processor/addr", "expected serve://<deployment> or host:port (IPv6 as [addr]:port); got 'dispatcher'"),
        ("edgeport-several-errors.yaml", "/spec/transport/0/port", "expected an integer, got the string '5060'"),
        ("edgeport-several-errors.yaml", "/spec/transport/1/protocol", "must be one of udp, tcp, tls, ws, wss, UDP, TCP, TLS, WS, WSS; got the string 'sctp'"),
    }  # fmt: skip
    assert len(errors) == 6
    assert f"{file}: /spec/colour: unknown field, ignored" in caplog.messages


def test_broken_resource_directory_reports_duplicate_dangling_and_wrong_kind_refs() -> None:
    directory = DATA / "broken" / "resources-refs"
    errors = validate_paths([str(directory)])
    assert triples(errors, directory) == {
        ("agents.yaml", "/0/spec/domainRef", "dangling ref: there is no Domain with ref 'domain-99'"),
        ("agents.yaml", "/1/spec/credentialsRef", "ref 'domain-01' names a Domain, expected a Credentials"),
        (
            "more.yaml",
            "/2/ref",
            f"duplicate ref 'agent-01': already used by the Agent at {directory / 'agents.yaml'}: /0",
        ),
    }


def test_error_string_is_file_pointer_reason() -> None:
    assert str(ConfigError("a.yaml", "/spec/port", "bad")) == "a.yaml: /spec/port: bad"
    assert str(ConfigError("a.yaml", "", "bad")) == "a.yaml: /: bad"


def test_errors_in_several_files_and_units_are_all_returned(tmp_path: Path) -> None:
    write(tmp_path, "one/a.yaml", "kind: Agent\n")
    write(tmp_path, "two/b.json", '{"kind": "Location", "apiVersion": "v2beta1", "spec": {"shards": 0}}')
    errors = validate_paths([str(tmp_path / "one"), str(tmp_path / "two"), str(tmp_path / "missing.yaml")])
    assert triples(errors, tmp_path) == {
        ("one/a.yaml", "/apiVersion", "required field is missing"),
        ("one/a.yaml", "/ref", "required field is missing"),
        ("one/a.yaml", "/metadata", "required field is missing"),
        ("one/a.yaml", "/spec", "required field is missing"),
        ("two/b.json", "/spec/shards", "0 is less than the minimum of 1"),
        ("missing.yaml", "", "no such file or directory"),
    }


def test_json_pointer_escapes_slash_and_tilde(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    file = write(tmp_path, "l.yaml", "kind: Location\napiVersion: v2beta1\nspec: {cache: {'a/b~c': 1}}\n")
    with caplog.at_level(logging.WARNING, logger="routr_ray.config"):
        assert validate_paths([str(file)]) == []  # unknown fields are warnings, never errors
    assert caplog.messages == [f"{file}: /spec/cache/a~1b~0c: unknown field, ignored"]


# --- what a path means ---------------------------------------------------------------------------------


def test_a_directory_includes_its_resources_subdirectory_and_nothing_deeper(tmp_path: Path) -> None:
    write(tmp_path, "resources/credentials.yaml", CREDENTIALS)
    write(tmp_path, "resources/deeper/ignored.yaml", "not: [valid")
    write(tmp_path, "notes.txt", "not a config file")
    config = load_config_dir(tmp_path)
    assert [c.ref for c in config.resources.credentials] == ["credentials-01"]
    assert config == ConfigSet(resources=config.resources)


def test_refs_resolve_across_files_of_one_directory_but_not_across_directories(tmp_path: Path) -> None:
    write(tmp_path, "a/credentials.yaml", CREDENTIALS)
    write(
        tmp_path,
        "b/peer.yaml",
        """\
        apiVersion: v2beta1
        kind: Peer
        ref: peer-01
        metadata: { name: Asterisk }
        spec: { aor: "sip:conference@sip.local", username: asterisk, credentialsRef: credentials-01 }
        """,
    )
    assert load_resources(tmp_path / "a", tmp_path / "b").peers[0].credentials_ref == "credentials-01"
    errors = validate_paths([str(tmp_path / "a"), str(tmp_path / "b")])
    assert triples(errors) == {
        (
            "peer.yaml",
            "/spec/credentialsRef",
            "dangling ref: there is no Credentials with ref 'credentials-01'",
        )
    }


def test_empty_directory_is_an_error(tmp_path: Path) -> None:
    assert triples(validate_paths([str(tmp_path)]), tmp_path.parent) == {
        (tmp_path.name, "", "no .yaml, .yml, .json or .toml files in this directory")
    }


def test_unknown_and_missing_kind(tmp_path: Path) -> None:
    write(tmp_path, "r.yaml", "- {kind: Gateway}\n- {apiVersion: v2beta1}\n- 42\n")
    assert triples(validate_paths([str(tmp_path)])) == {
        (
            "r.yaml",
            "/0/kind",
            "unknown kind 'Gateway'; expected one of EdgePort, MessageDispatcher, Location, Registry, APIServer, "
            "Observability, MediaRelay, ConnectTokens, Agent, Peer, Domain, Number, Trunk, Credentials, AccessControlList",
        ),
        ("r.yaml", "/1/kind", "required field is missing"),
        (
            "r.yaml",
            "/2",
            "expected a mapping with apiVersion, kind, ref, metadata and spec; got the number 42",
        ),
    }


def test_lower_case_kinds_are_accepted_as_in_routr(tmp_path: Path) -> None:
    write(tmp_path, "c.yaml", CREDENTIALS.replace("kind: Credentials", "kind: credentials"))
    assert load_resources(tmp_path).credentials[0].username == "1001"


def test_routr_registry_kind_configures_the_trunk_registrar(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Routr's Registry document (routr.md §1.5) is read (docs/trunks.md): registerInterval is the first back-off,
    methods the Allow header; Routr's requesterAddr/apiAddr/edgePorts are accepted with a warning."""
    write(tmp_path, "registry.yaml", "kind: Registry\napiVersion: v2beta1\nspec:\n  requesterAddr: requester:51909\n"
          "  registerInterval: 20\n  methods: [INVITE, MESSAGE]\n  edgePorts: [{address: sip01:5060}]\n"
          "  edgePortRef: edgeport-02\n  expires: 300\n")
    with caplog.at_level(logging.WARNING, logger="routr_ray.config"):
        config = load_config_dir(tmp_path)
    assert config.registry is not None
    assert (config.registry.retry_interval, config.registry.methods, config.registry.expires,
            config.registry.edge_port_ref, config.registry.gin) == (20.0, ("INVITE", "MESSAGE"), 300, "edgeport-02",
                                                                    True)
    assert any("requesterAddr is not used" in m for m in caplog.messages)
    write(tmp_path, "bad.yaml", "kind: Registry\napiVersion: v2beta1\nspec: {expires: 5}\n")
    errors = validate_paths([str(tmp_path / "bad.yaml")])
    assert errors and "expires" in str(errors[0])


# --- file formats --------------------------------------------------------------------------------------


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    file = write(tmp_path, "bad.yaml", "kind: Location\nspec: [unclosed\n")
    (error,) = validate_paths([str(file)])
    assert (error.file, error.pointer) == (str(file), "")
    assert error.reason.startswith("YAML syntax error at line 3 column 1:")


def test_yaml_duplicate_key_is_an_error(tmp_path: Path) -> None:
    file = write(tmp_path, "c.yaml", CREDENTIALS.replace('password: "1234"', 'password: "1234", password: x'))
    assert triples(validate_paths([str(file)])) == {
        ("c.yaml", "", "YAML: the key 'password' appears twice in one mapping (line 5)")
    }


def test_json_syntax_error_and_json_resources(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad/x.json", '{"kind": "Agent",}')
    (error,) = validate_paths([str(bad)])
    assert error.reason.startswith("JSON syntax error at line 1 column 18:")
    good = write(
        tmp_path,
        "good/c.json",
        '[{"apiVersion": "v2", "kind": "Credentials", "ref": "c1", "metadata": {"name": "n"},'
        ' "spec": {"credentials": {"username": "u", "password": "p"}}}]',
    )
    assert load_resources(good).credentials[0].ref == "c1"


def test_toml_is_read_like_routr_does(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "location.toml",
        """\
        kind = "Location"
        apiVersion = "v2beta1"
        [spec]
        shards = 4
        """,
    )
    assert load_config_dir(tmp_path).location is not None
    assert validate_paths([str(file)]) == []


def test_empty_file_is_a_warning_not_an_error(tmp_path: Path) -> None:
    write(tmp_path, "empty.yaml", "")
    assert validate_paths([str(tmp_path)]) == []


def test_a_second_location_or_dispatcher_in_one_unit_is_an_error(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "kind: Location\napiVersion: v2beta1\nspec: {}\n")
    write(tmp_path, "b.yaml", "kind: Location\napiVersion: v2beta1\nspec: {}\n")
    assert triples(validate_paths([str(tmp_path)])) == {
        ("b.yaml", "/kind", f"a second Location: one is allowed, the first is in {tmp_path / 'a.yaml'}")
    }


def test_load_functions_raise_with_every_error(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        "e.yaml",
        "kind: EdgePort\napiVersion: v2beta1\nspec: {transport: [{protocol: x, port: 0}]}\n",
    )
    with pytest.raises(ConfigInvalid) as raised:
        load_edgeport(file)
    assert {(e.pointer, e.reason) for e in raised.value.errors} == {
        ("/spec/transport/0/protocol", "must be one of udp, tcp, tls, ws, wss, UDP, TCP, TLS, WS, WSS; got the string 'x'"),
        ("/spec/transport/0/port", "0 is less than the minimum of 1"),
    }  # fmt: skip
    assert str(file) in str(raised.value)


def test_load_edgeport_wants_exactly_one_edgeport(tmp_path: Path) -> None:
    file = write(tmp_path, "l.yaml", "kind: Location\napiVersion: v2beta1\nspec: {}\n")
    with pytest.raises(ConfigInvalid) as raised:
        load_edgeport(file)
    assert [str(e) for e in raised.value.errors] == [
        f"{file}: /: expected exactly one EdgePort document, found 0"
    ]


def test_errors_come_in_argument_order_then_file_then_position(tmp_path: Path) -> None:
    write(tmp_path, "d/b.yaml", "- {kind: X}\n" * 11)
    write(tmp_path, "d/a.yaml", "- {kind: Y}\n")
    loose = write(tmp_path, "loose.yaml", "kind: Z\n")
    errors = validate_paths([str(loose), str(tmp_path / "d")])
    assert [(Path(e.file).name, e.pointer) for e in errors] == [
        ("loose.yaml", "/kind"),
        ("a.yaml", "/0/kind"),
        *(("b.yaml", f"/{index}/kind") for index in range(11)),
    ]
