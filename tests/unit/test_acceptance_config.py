"""The suite tests what ships (issue 13 item 3): the acceptance server runs config/ with only its ports moved, the
extras server differs from config/ only where its files say why, and the README's "Register a softphone" section
says what config/ holds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from routr_ray.config import load_config_dir
from routr_ray.config.connect_tokens import read_public_keys
from routr_ray.config.edgeport import TransportProtocol
from tests.acceptance.autoscale.test_autoscale import AUTOSCALE
from tests.support.acceptance import (
    ACCEPTANCE,
    CONFIG_DIR,
    EXTRAS,
    MEDIA,
    MEDIA_CONFIG_DIR,
    MEDIA_RTPENGINES,
    SHIPPED,
    SHIPPED_CONFIG_DIR,
    copy_config,
)

REPO = Path(__file__).resolve().parents[2]


def _documents(path: Path) -> list[object]:
    return list(yaml.safe_load_all(path.read_text()))


def _differences(a: object, b: object, where: str = "") -> Iterator[tuple[str, object, object]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            yield from _differences(a.get(key), b.get(key), f"{where}/{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _differences(x, y, f"{where}/{index}")
    elif a != b:
        yield where, a, b


def _port_of(value: object) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.rpartition(":")[2].isdigit():
        return int(value.rpartition(":")[2])
    return None


@pytest.mark.parametrize("profile", [SHIPPED, EXTRAS, MEDIA, AUTOSCALE], ids=lambda p: p.name)
def test_the_rewrite_moves_ports_and_nothing_else(profile, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    copy = copy_config(profile, tmp_path / "config")
    source_files = sorted(p.relative_to(SHIPPED_CONFIG_DIR) for p in SHIPPED_CONFIG_DIR.rglob("*.yaml"))
    moved = 0
    for relative in source_files:
        original = profile.overlay / relative if profile.overlay and (profile.overlay / relative).exists() else (
            SHIPPED_CONFIG_DIR / relative)
        for where, before, after in _differences(_documents(original), _documents(copy / relative)):
            assert where.endswith(("/port", "/bindAddr")), f"{relative}{where}: {before!r} -> {after!r}"
            assert profile.ports[_port_of(before)] == _port_of(after), f"{relative}{where}"  # type: ignore[index]
            moved += 1
    assert moved >= 8  # 5 SIP transports, health, dispatcher, Location (and the trunk's provider)


def test_the_rewritten_shipped_config_loads_with_the_test_ports(tmp_path: Path) -> None:
    config = load_config_dir(copy_config(SHIPPED, tmp_path / "config"))
    (edge,) = config.edgeports
    assert edge.bind_addr == "0.0.0.0" and edge.external_addrs == ()
    assert {t.protocol: t.port for t in edge.transports} == {
        TransportProtocol.UDP: SHIPPED.sip_port, TransportProtocol.TCP: SHIPPED.sip_port,
        TransportProtocol.TLS: SHIPPED.tls_port, TransportProtocol.WS: SHIPPED.ws_port,
        TransportProtocol.WSS: SHIPPED.wss_port}
    (trunk,) = config.resources.trunks
    assert trunk.outbound is not None and trunk.outbound.uris[0].port == SHIPPED.trunk_port


def test_the_extras_server_differs_from_the_shipped_config_only_where_its_files_say_why(tmp_path: Path) -> None:
    overlay_files = sorted(p.relative_to(CONFIG_DIR) for p in CONFIG_DIR.rglob("*.yaml"))
    assert [str(p) for p in overlay_files] == ["connect-tokens.yaml", "dispatcher.yaml", "edgeport.yaml", "edgeport2.yaml",
                                               "resources/acls.yaml", "resources/agents-extra.yaml",
                                               "resources/trunks-extra.yaml"]
    for relative in overlay_files:
        assert "why" in (CONFIG_DIR / relative).read_text().lower(), f"{relative} must say why it differs"
    differences = {}
    for relative in (p for p in overlay_files if p.name in ("dispatcher.yaml", "edgeport.yaml", "acls.yaml")):
        for where, before, after in _differences(_documents(SHIPPED_CONFIG_DIR / relative),
                                                 _documents(CONFIG_DIR / relative)):
            differences[f"{relative}{where}"] = (before, after)
    edge = differences.pop("edgeport.yaml/0/spec/localnets")
    assert edge[0] is None and "192.0.2.0/24" in edge[1]  # type: ignore[operator]
    assert differences.pop("edgeport.yaml/0/spec/externalAddrs") == ([], ["203.0.113.9"])
    shipped_processors, extras_processors = differences.pop("dispatcher.yaml/0/spec/processors")
    assert extras_processors[1:] == shipped_processors  # type: ignore[index]
    assert extras_processors[0]["ref"] == "down-processor"  # type: ignore[index]
    shipped_allow, extras_allow = differences.pop("resources/acls.yaml/0/0/spec/accessControlList/allow")
    assert extras_allow == [*shipped_allow, "192.0.2.0/24"]  # type: ignore[misc]
    assert not differences, differences
    extras = load_config_dir(copy_config(EXTRAS, tmp_path / "config"))
    second = extras.edgeports
    assert [e.ref for e in second] == ["edgeport-01", "edgeport-02"]  # the first stays the trunk registrar's
    assert {t.protocol: t.port for t in second[1].transports} == {TransportProtocol.TCP: 17060,
                                                                  TransportProtocol.WS: 17062}
    added = _documents(CONFIG_DIR / "resources" / "agents-extra.yaml")[0]
    assert [d["ref"] for d in added] == ["credentials-1003", "agent-1003"]  # type: ignore[index,union-attr]
    trunks = _documents(CONFIG_DIR / "resources" / "trunks-extra.yaml")[0]
    assert [d["ref"] for d in trunks] == ["credentials-reg", "trunk-reg", "number-reg", "trunk-fo",  # type: ignore[index,union-attr]
                                          "number-fo", "trunk-ls", "number-ls", "trunk-ka", "number-ka"]
    assert load_config_dir(SHIPPED_CONFIG_DIR).connect_tokens is None  # web agents: only here
    tokens = extras.connect_tokens
    assert tokens is not None and tokens.audience == "routr-ray-acceptance"
    (key,) = read_public_keys(tokens)  # the public half of the tests' signing key, and nothing else
    signing_key = (ACCEPTANCE / "webrtc" / "tokens" / "test-signing-key.pem").read_bytes()
    private = serialization.load_pem_private_key(signing_key, password=None)
    assert private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo).decode().strip() == key
    shipped_trunks = _documents(SHIPPED_CONFIG_DIR / "resources" / "trunks.yaml")[0]
    assert not any(t["spec"]["outbound"].get("sendRegister") for t in shipped_trunks)  # type: ignore[index,union-attr]


def test_the_media_server_differs_from_the_shipped_config_only_where_its_files_say_why() -> None:
    overlay_files = sorted(p.relative_to(MEDIA_CONFIG_DIR) for p in MEDIA_CONFIG_DIR.rglob("*.yaml"))
    assert [str(p) for p in overlay_files] == ["dispatcher.yaml", "media.yaml"]
    for relative in overlay_files:
        assert "why" in (MEDIA_CONFIG_DIR / relative).read_text().lower(), f"{relative} must say why it differs"
    differences = {}
    for relative in overlay_files:
        for where, before, after in _differences(_documents(SHIPPED_CONFIG_DIR / relative),
                                                 _documents(MEDIA_CONFIG_DIR / relative)):
            differences[f"{relative}{where}"] = (before, after)
    shipped_middlewares, media_middlewares = differences.pop("dispatcher.yaml/0/spec/middlewares")
    assert shipped_middlewares is None  # shipped: commented out, the same entry as here
    assert media_middlewares == [{"ref": "media-relay", "addr": "serve://rtpengine", "postProcessor": True,
                                  "internalMetadata": True, "responses": "requested"}]
    shipped_engines, media_engines = differences.pop("media.yaml/0/spec/rtpengines")
    assert [e["addr"] for e in media_engines] == [f"127.0.0.1:{ng}" for ng, _, _ in MEDIA_RTPENGINES]  # type: ignore[index,union-attr]
    assert differences.pop("media.yaml/0/spec/timeoutSeconds") == (1, 0.5)
    assert differences.pop("media.yaml/0/spec/pingIntervalSeconds") == (2, 0.5)
    assert not differences, differences
    shipped_comment = (SHIPPED_CONFIG_DIR / "dispatcher.yaml").read_text()
    for line in ("ref: media-relay", "addr: serve://rtpengine", "postProcessor: true", "internalMetadata: true",
                 "responses: requested"):
        assert f"#     {line}" in shipped_comment or f"#   - {line}" in shipped_comment, line


def test_the_readme_register_a_softphone_section_is_true() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("### Register a softphone"):]
    section = section[:section.index("\n## ")]
    config = load_config_dir(SHIPPED_CONFIG_DIR)
    resources = config.resources
    (domain,) = resources.domains
    assert f"domain `{domain.domain_uri}`" in section
    passwords = {c.ref: c.password for c in resources.credentials}
    for agent in resources.agents:
        assert f"`{agent.username}`" in section
        assert f"password `{passwords[agent.credentials_ref]}`" in section
    (edge,) = config.edgeports
    ports = {t.protocol: t.port for t in edge.transports}
    expected = (f"UDP/TCP {ports[TransportProtocol.UDP]}, TLS {ports[TransportProtocol.TLS]}, "
                f"WS {ports[TransportProtocol.WS]}, WSS {ports[TransportProtocol.WSS]}")
    assert expected in section
    assert ports[TransportProtocol.UDP] == ports[TransportProtocol.TCP]
    (trunk,) = resources.trunks
    assert trunk.outbound is not None
    uri = trunk.outbound.uris[0]
    assert f"{uri.host}:{uri.port}" in section
    assert re.search(r"\bsip\.local\b", section)


def _shipped_ports() -> set[int]:
    """Every port config/ names (``port:`` values and the ports of ``bindAddr``s): what a test server must move so
    that it never collides with another server of the same session, nor with the README's own run."""
    found: set[int] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("port", "bindAddr", "metricsPort") and _port_of(value) is not None:
                    found.add(_port_of(value))  # type: ignore[arg-type]
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for path in SHIPPED_CONFIG_DIR.rglob("*.yaml"):
        walk(_documents(path))
    return found


def test_every_test_server_moves_every_port_the_shipped_config_opens() -> None:
    """Several `routr-ray run`s share one test session (and the README run uses the shipped ports): a port map
    that forgets one (the metrics export port did) makes two servers collide."""
    from tests.acceptance.api.test_api_provisioning import API_PORTS
    from tests.acceptance.autoscale.test_autoscale import PORTS as AUTOSCALE_PORTS
    from tests.acceptance.observability.test_observability import PORTS as OBSERVABILITY_PORTS
    from tests.attack.test_restart_keeps_calls import PORTS as RESTART_PORTS
    from tests.support.acceptance import EXTRAS_PORTS, MEDIA_PORTS, SHIPPED_PORTS

    shipped = _shipped_ports()
    assert {5060, 8080, 9464, 51901, 51902}.issubset(shipped)
    maps = {"shipped": SHIPPED_PORTS, "extras": EXTRAS_PORTS, "media": MEDIA_PORTS, "api": API_PORTS,
            "observability": OBSERVABILITY_PORTS, "restart": RESTART_PORTS, "autoscale": AUTOSCALE_PORTS}
    for name, ports in maps.items():
        assert shipped <= set(ports), f"{name} does not move {sorted(shipped - set(ports))}"
    targets = [port for ports in maps.values() for port in ports.values()]
    assert len(targets) == len(set(targets)), "two test servers use the same port"
