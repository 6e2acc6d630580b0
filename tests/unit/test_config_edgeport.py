"""EdgePort config: Routr's example, our additions, defaults and the errors users make."""

from __future__ import annotations

import ipaddress
import textwrap
from dataclasses import FrozenInstanceError
from pathlib import Path

import pytest

from routr_ray.config import (
    ConfigInvalid,
    EdgePortConfig,
    TlsClientAuth,
    Transport,
    TransportProtocol,
    UnknownMethodAction,
    load_edgeport,
    validate_paths,
)

ROUTR_EXAMPLE = Path(__file__).resolve().parents[2] / "tests" / "data" / "config" / "routr" / "edgeport.yaml"


def edgeport_file(tmp_path: Path, spec: str) -> Path:
    path = tmp_path / "edgeport.yaml"
    body = textwrap.indent(textwrap.dedent(spec), "  ")
    path.write_text(f"apiVersion: v2beta1\nkind: EdgePort\nref: ep\nspec:\n{body}")
    return path


def errors_of(path: Path) -> set[tuple[str, str]]:
    return {(e.pointer, e.reason) for e in validate_paths([str(path)])}


def test_routr_example_is_accepted_with_its_values() -> None:
    config = load_edgeport(ROUTR_EXAMPLE)
    assert config.ref == "edgeport-01" and config.region == "default"
    assert config.processor_addr == "dispatcher:51901"
    assert config.unknown_method_action is UnknownMethodAction.DISCARD
    assert config.external_addrs == ("10.111.220.2", "sip01.edgeport.net")
    # Routr writes host bits into localnets (127.0.0.1/8): the network and our address on it; both are kept.
    assert config.localnets == ("127.0.0.1/8", "10.111.221.2/24")
    assert config.methods == ("REGISTER", "MESSAGE", "INVITE", "ACK", "BYE", "CANCEL")
    assert config.transport(TransportProtocol.WSS) == Transport(TransportProtocol.WSS, 5063, "0.0.0.0")
    context = config.security_context
    assert context is not None
    assert (context.key_store, context.trust_store, context.key_store_type) == (
        "/etc/routr/certs/signaling.p12",
        "/etc/routr/certs/signaling.p12",
        "pkcs12",
    )
    assert context.key_store_password == "changeme"
    assert context.client.protocols == ("SSLv3", "TLSv1.2")
    assert context.client.auth_type is TlsClientAuth.DISABLED_ALL
    assert not context.has_pem
    assert "changeme" not in repr(context)


def test_config_objects_are_frozen() -> None:
    config = load_edgeport(ROUTR_EXAMPLE)
    with pytest.raises(FrozenInstanceError):
        config.ref = "other"  # type: ignore[misc]


def test_defaults_for_ports_and_guards(tmp_path: Path) -> None:
    path = edgeport_file(
        tmp_path,
        """\
        bindAddr: 10.0.0.1
        transport:
          - { protocol: UDP }
          - { protocol: tcp }
          - { protocol: tls, bindAddr: 127.0.0.1 }
          - { protocol: ws }
          - { protocol: wss }
        """,
    )
    config = load_edgeport(path)
    assert [(t.protocol.value, t.port, t.bind_addr) for t in config.transports] == [
        ("udp", 5060, "10.0.0.1"),
        ("tcp", 5060, "10.0.0.1"),
        ("tls", 5061, "127.0.0.1"),
        ("ws", 5062, "10.0.0.1"),
        ("wss", 5063, "10.0.0.1"),
    ]
    assert (config.health.port, config.health.bind_addr, config.health.enabled) == (8080, "127.0.0.1", True)
    assert config.processor_addr == "serve://routr"
    assert config.unknown_method_action is UnknownMethodAction.RESPOND
    assert "OPTIONS" in config.methods and config.security_context is None
    assert config.rate_limit.trusted == () and config.access_control_list.deny == ()


def test_guards_and_pem_paths(tmp_path: Path) -> None:
    path = edgeport_file(
        tmp_path,
        """\
        transport: [{ protocol: tls, port: 5061 }]
        securityContext: { certificate: /certs/server.crt, privateKey: /certs/server.key }
        accessControlList: { deny: [0.0.0.0/0], allow: [192.168.1.7] }
        rateLimit: { requestsPerSecond: 20, burst: 40, banSeconds: 300, trusted: [127.0.0.1/32, "::1"] }
        limits: { maxMessageSize: 8192, maxConnections: 50, maxConnectionsPerSource: 5, idleTimeoutSeconds: 30 }
        health: { port: 8081, enabled: false }
        """,
    )
    config = load_edgeport(path)
    assert config.security_context is not None and config.security_context.has_pem
    assert config.security_context.key_store is None
    assert config.access_control_list.allow == (ipaddress.ip_network("192.168.1.7/32"),)
    assert config.rate_limit.trusted == (
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("::1/128"),
    )
    assert (
        config.rate_limit.requests_per_second,
        config.rate_limit.burst,
        config.rate_limit.ban_seconds,
    ) == (
        20.0,
        40,
        300.0,
    )
    assert (config.limits.max_message_size, config.limits.max_connections_per_source) == (8192, 5)
    assert (config.health.port, config.health.enabled) == (8081, False)


def test_trunks_and_peers_rate_limit(tmp_path: Path) -> None:
    default = load_edgeport(edgeport_file(tmp_path, "transport: [{ protocol: udp }]\n"))
    assert (default.rate_limit.trunks_and_peers.requests_per_second,
            default.rate_limit.trunks_and_peers.burst) == (1000.0, 2000)
    path = edgeport_file(
        tmp_path,
        """
        transport: [{ protocol: udp }]
        rateLimit: { trunksAndPeers: { requestsPerSecond: 50, burst: 80, networks: [203.0.113.0/24] } }
        """,
    )
    limit = load_edgeport(path).rate_limit.trunks_and_peers
    assert (limit.requests_per_second, limit.burst) == (50.0, 80)
    assert limit.networks == (ipaddress.ip_network("203.0.113.0/24"),)
    bad = edgeport_file(tmp_path, "transport: [{ protocol: udp }]\nrateLimit: { trunksAndPeers: { burst: 0 } }\n")
    assert errors_of(bad)


def test_tls_without_any_security_context_is_valid(tmp_path: Path) -> None:
    # The edge generates a development certificate; validation never opens files.
    assert errors_of(edgeport_file(tmp_path, "transport: [{ protocol: wss }]\n")) == set()


def test_bad_types_are_errors(tmp_path: Path) -> None:
    path = edgeport_file(
        tmp_path,
        """\
        transport: { protocol: udp }
        methods: INVITE
        externalAddrs: [1.2.3.4, 42]
        rateLimit: { trusted: 127.0.0.1/32, burst: 1.5 }
        health: { port: "8080" }
        """,
    )
    assert errors_of(path) == {
        ("/spec/transport", "expected a list, got a mapping"),
        ("/spec/methods", "expected a list, got the string 'INVITE'"),
        ("/spec/externalAddrs/1", "expected a string, got the number 42 (quote it in YAML)"),
        ("/spec/rateLimit/trusted", "expected a list, got the string '127.0.0.1/32'"),
        ("/spec/rateLimit/burst", "expected an integer, got the number 1.5"),
        ("/spec/health/port", "expected an integer, got the string '8080'"),
    }


def test_missing_required_fields(tmp_path: Path) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(
        "kind: EdgePort\nspec:\n  transport: [{ port: 5060 }]\n  securityContext: { certificate: /c.pem }\n"
    )
    assert errors_of(path) == {
        ("/apiVersion", "required field is missing"),
        ("/spec/transport/0/protocol", "required field is missing"),
    }
    path.write_text("kind: EdgePort\napiVersion: v2\nspec: { methods: [INVITE] }\n")
    assert errors_of(path) == {("/spec/transport", "required field is missing")}


def test_routr_transport_assertions(tmp_path: Path) -> None:
    path = edgeport_file(
        tmp_path,
        """\
        transport:
          - { protocol: udp, port: 5060 }
          - { protocol: tcp, port: 5060 }
          - { protocol: ws, port: 5060 }
          - { protocol: udp, port: 6060 }
        """,
    )
    assert errors_of(path) == {
        ("/spec/transport/2/port", "port 5060 is already used by udp; only udp and tcp may share a port"),
        ("/spec/transport/2/port", "port 5060 is already used by tcp; only udp and tcp may share a port"),
        ("/spec/transport/3/protocol", "udp is configured twice; one entry per protocol"),
    }


def test_same_port_on_different_addresses_is_fine(tmp_path: Path) -> None:
    path = edgeport_file(
        tmp_path,
        "transport: [{ protocol: udp, port: 5060, bindAddr: 127.0.0.1 }, { protocol: ws, port: 5060 }]\n",
    )
    assert errors_of(path) == set()


def test_pem_certificate_needs_its_key(tmp_path: Path) -> None:
    path = edgeport_file(
        tmp_path, "transport: [{ protocol: tls }]\nsecurityContext: { certificate: /c.pem }\n"
    )
    assert errors_of(path) == {
        ("/spec/securityContext/privateKey", "certificate and privateKey (PEM paths) must be given together")
    }


def test_bad_values(tmp_path: Path) -> None:
    path = edgeport_file(
        tmp_path,
        """\
        transport: [{ protocol: udp, port: 70000 }]
        methods: []
        unknownMethodAction: respond
        processor: { addr: "http://dispatcher:51901" }
        accessControlList: { deny: [not-a-network] }
        securityContext: { client: { authType: Sometimes } }
        """,
    )
    assert errors_of(path) == {
        ("/spec/transport/0/port", "70000 is greater than the maximum of 65535"),
        ("/spec/methods", "must list at least one item"),
        ("/spec/unknownMethodAction", "must be one of Discard, Respond; got the string 'respond'"),
        (
            "/spec/processor/addr",
            "expected serve://<deployment> or host:port; the scheme of 'http://dispatcher:51901' is not supported",
        ),
        (
            "/spec/accessControlList/deny/0",
            "expected an IP address or network such as 10.0.0.0/8; got 'not-a-network'",
        ),
        (
            "/spec/securityContext/client/authType",
            "must be one of Disabled, DisabledAll, Required, Wanted; got the string 'Sometimes'",
        ),
    }


@pytest.mark.parametrize("addr", ["serve://routr", "dispatcher:51901", "10.0.0.1:51901", "[::1]:51901"])
def test_processor_addresses_accepted(tmp_path: Path, addr: str) -> None:
    path = edgeport_file(tmp_path, f"transport: [{{ protocol: udp }}]\nprocessor: {{ addr: '{addr}' }}\n")
    assert load_edgeport(path).processor_addr == addr


def test_a_host_port_dispatcher_is_sent_the_configured_token_or_the_dispatchers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROUTR_RAY_DISPATCHER_TOKEN", "from-the-env-0123456789")
    remote = "transport: [{ protocol: udp }]\nprocessor: { addr: 'dispatcher:51901'%s }\n"
    assert load_edgeport(edgeport_file(tmp_path, remote % "")).processor_token == "from-the-env-0123456789"
    own = load_edgeport(edgeport_file(tmp_path, remote % ", token: own-token-0123456789"))
    assert own.processor_token == "own-token-0123456789" and "own-token" not in repr(own)
    in_cluster = "transport: [{ protocol: udp }]\nprocessor: { addr: serve://routr }\n"
    assert load_edgeport(edgeport_file(tmp_path, in_cluster)).processor_token is None  # Ray carries it


def test_lower_case_method_is_a_warning_and_duplicates_collapse(tmp_path: Path) -> None:
    path = edgeport_file(tmp_path, "transport: [{ protocol: udp }]\nmethods: [INVITE, invite, INVITE]\n")
    assert load_edgeport(path).methods == ("INVITE", "invite")


def test_dataclass_defaults_make_a_usable_config() -> None:
    config = EdgePortConfig()
    assert config.transport(TransportProtocol.UDP) == Transport(TransportProtocol.UDP, 5060)
    assert config.transport(TransportProtocol.TLS) is None


def test_load_edgeport_reports_all_errors_in_the_exception(tmp_path: Path) -> None:
    path = edgeport_file(tmp_path, "transport: [{ protocol: udp, port: x }, { protocol: tls, port: y }]\n")
    with pytest.raises(ConfigInvalid) as raised:
        load_edgeport(path)
    assert [e.pointer for e in raised.value.errors] == ["/spec/transport/0/port", "/spec/transport/1/port"]


def test_placement_pins_the_edgeport_by_labels_and_resources(tmp_path: Path) -> None:
    from routr_ray.actors.edgeport import placement_options

    path = edgeport_file(tmp_path, """
        transport: [{protocol: udp}]
        placement:
          labels: {routr-edge: a, zone: eu-1}
          resources: {edge-a: 0.01}
    """)
    config = load_edgeport(path)
    assert config.placement.labels == (("routr-edge", "a"), ("zone", "eu-1"))
    assert config.placement.resources == (("edge-a", 0.01),)
    assert config.placement.describe() == "routr-edge=a, zone=eu-1, edge-a:0.01"
    assert placement_options(config) == {"label_selector": {"routr-edge": "a", "zone": "eu-1"},
                                         "resources": {"edge-a": 0.01}}
    assert not load_edgeport(edgeport_file(tmp_path, "transport: [{protocol: udp}]")).placement
    assert placement_options(load_edgeport(edgeport_file(tmp_path, "transport: [{protocol: udp}]"))) == {}


def test_placement_errors_name_the_field(tmp_path: Path) -> None:
    path = edgeport_file(tmp_path, """
        transport: [{protocol: udp}]
        placement: {labels: {}, resources: {edge-a: 0}, node: x}
    """)
    pointers = {pointer for pointer, _ in errors_of(path)}
    assert {"/spec/placement/labels", "/spec/placement/resources/edge-a"} <= pointers, pointers
