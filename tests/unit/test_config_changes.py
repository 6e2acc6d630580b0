"""The config comparison behind `routr-ray deploy` on a running server (routr_ray/config/changes.py, issue 18)."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from routr_ray.config import load_config_dir
from routr_ray.config.changes import (
    EDGEPORT_RULES,
    IN_PLACE,
    LOCATION_RULES,
    REFUSED,
    ShardLayout,
    edgeport_diff,
    location_diff,
    refusal_message,
    refusals_of,
    shards_diff,
)
from routr_ray.config.edgeport import (
    ConnectionLimits,
    EdgePortConfig,
    HealthConfig,
    RateLimit,
    SecurityContext,
    SourceFilter,
    Transport,
    TransportProtocol,
)
from routr_ray.config.location import CacheConfig, CacheProvider, LocationConfig, RedisParameters

REPO = Path(__file__).resolve().parents[2]
BASE = EdgePortConfig()


def test_every_edgeport_and_location_field_has_a_rule() -> None:
    """A field added later must be classified (an unknown one is refused, but say so on purpose)."""
    assert {f.name for f in dataclasses.fields(EdgePortConfig)} == set(EDGEPORT_RULES)
    assert {f.name for f in dataclasses.fields(LocationConfig)} == set(LOCATION_RULES)


def test_the_same_config_is_unchanged() -> None:
    diff = edgeport_diff(BASE, dataclasses.replace(BASE), file="edgeport.yaml")
    assert not diff.changed and diff.summary() == "EdgePort edgeport-01: unchanged"


@pytest.mark.parametrize(("change", "field"), [
    ({"rate_limit": RateLimit(requests_per_second=5, burst=10)}, "spec.rateLimit"),
    ({"access_control_list": SourceFilter(deny=(ipaddress.ip_network("10.0.0.0/8"),))}, "spec.accessControlList"),
    ({"methods": ("REGISTER", "INVITE")}, "spec.methods"),
    ({"localnets": ("10.1.0.1/16",)}, "spec.localnets"),
    ({"external_addrs": ("203.0.113.7",)}, "spec.externalAddrs"),
    ({"security_context": SecurityContext(certificate="/c.pem", private_key="/k.pem")}, "spec.securityContext"),
    ({"limits": ConnectionLimits(max_connections=5)}, "spec.limits"),
    ({"processor_token": "a-new-token-of-some-length"}, "spec.processor.token"),
    ({"log_level": "DEBUG"}, "spec.logLevel"),
])
def test_guards_acl_limits_nat_tls_and_log_level_apply_in_place(change: dict[str, object], field: str) -> None:
    diff = edgeport_diff(BASE, dataclasses.replace(BASE, **change))  # type: ignore[arg-type]
    assert diff.in_place == (field,)
    assert diff.refusals == ()


@pytest.mark.parametrize(("change", "field", "words"), [
    ({"transports": (Transport(TransportProtocol.UDP, 5070),)}, "spec.transport", "port"),
    ({"transports": (*BASE.transports, Transport(TransportProtocol.TCP, 5060))}, "spec.transport", "protocol"),
    ({"bind_addr": "127.0.0.1"}, "spec.bindAddr", "listeners"),
    ({"health": HealthConfig(port=9999)}, "spec.health", "port"),
    ({"workers": 2}, "spec.workers", "worker"),
    ({"processor_addr": "127.0.0.1:51901"}, "spec.processor.addr", "dispatcher"),
])
def test_listeners_and_layout_are_refused_naming_file_field_and_reason(
        change: dict[str, object], field: str, words: str) -> None:
    diff = edgeport_diff(BASE, dataclasses.replace(BASE, **change), file="config/edgeport.yaml")  # type: ignore[arg-type]
    (refusal,) = diff.refusals
    assert refusal.file == "config/edgeport.yaml" and refusal.field == field
    assert words in refusal.reason
    assert str(refusal).startswith(f"config/edgeport.yaml: {field}: ")


def test_a_mixed_change_lists_both_kinds() -> None:
    new = dataclasses.replace(BASE, rate_limit=RateLimit(burst=1), transports=(Transport(TransportProtocol.UDP, 5999),))
    diff = edgeport_diff(BASE, new)
    assert diff.in_place == ("spec.rateLimit",)
    assert [r.field for r in diff.refusals] == ["spec.transport"]
    assert "updated in place: spec.rateLimit" in diff.summary() and "refused: spec.transport" in diff.summary()


def test_another_dispatch_mode_or_batching_is_refused() -> None:
    diff = edgeport_diff(BASE, BASE, deploy_settings=("dispatcher", ""), running_settings=("embedded", ""))
    assert [c.how for c in diff.changes] == [REFUSED]
    assert not edgeport_diff(BASE, BASE, deploy_settings=("embedded", ""), running_settings=("embedded", "")).changed


def _redis(host: str = "127.0.0.1", port: int = 7000, password: str | None = None) -> CacheConfig:
    return CacheConfig(CacheProvider.REDIS, RedisParameters(host=host, port=port, password=password))


def test_location_api_replaced_shards_provider_and_redis_refused() -> None:
    old = LocationConfig(cache=_redis())
    redis = location_diff(old, dataclasses.replace(old, cache=_redis(password="rotated")))
    assert [r.field for r in redis.refusals] == ["spec.cache.parameters"] and not redis.in_place
    api = location_diff(old, dataclasses.replace(old, bind_addr="127.0.0.1:61902", token="t" * 20))
    assert api.replaced == ("spec.bindAddr", "spec.token") and not api.refusals
    shards = location_diff(old, dataclasses.replace(old, shards=4), file="config/location.yaml")
    assert [str(r).split(": ")[:2] for r in shards.refusals] == [["config/location.yaml", "spec.shards"]]
    provider = location_diff(old, dataclasses.replace(old, cache=CacheConfig()))
    assert [r.field for r in provider.refusals] == ["spec.cache.provider"]
    assert "lose" in provider.refusals[0].reason
    assert not location_diff(LocationConfig(), LocationConfig()).changed


def test_running_shards_refuse_another_count_provider_or_redis() -> None:
    running = ShardLayout(2, "redis", "abc")
    assert not shards_diff(running, ShardLayout(2, "redis", "abc")).changed
    (count,) = shards_diff(running, ShardLayout(4, "redis", "abc"), file="config/location.yaml").refusals
    assert str(count).startswith("config/location.yaml: spec.shards: 2 shards run, 4 asked for")
    (provider,) = shards_diff(running, ShardLayout(2, "memory", "")).refusals
    assert provider.field == "spec.cache.provider" and "redis, memory asked for" in provider.reason
    (store,) = shards_diff(running, ShardLayout(2, "redis", "def")).refusals
    assert store.field == "spec.cache.parameters"


def test_the_refusal_message_lists_every_refusal() -> None:
    diffs = [edgeport_diff(BASE, dataclasses.replace(BASE, workers=3), file="a.yaml"),
             location_diff(LocationConfig(), LocationConfig(shards=3), file="b.yaml")]
    text = refusal_message(refusals_of(diffs), hint="or stop and start")
    first, second, hint = text.splitlines()
    assert first.startswith("a.yaml: spec.workers: ") and first.endswith("nothing was changed)")
    assert second.startswith("b.yaml: spec.shards: ")
    assert hint == "or stop and start"


def test_no_address_or_port_is_ever_changed_in_place() -> None:
    """Attack (docs/security.md): a deploy cannot make a port listen somewhere else, e.g. the loopback-only health
    port on every interface, or the SIP listeners on another address: every field that binds is refused."""
    wider = dataclasses.replace(
        BASE, bind_addr="0.0.0.0",
        transports=tuple(dataclasses.replace(t, bind_addr="0.0.0.0") for t in BASE.transports),
        health=dataclasses.replace(BASE.health, bind_addr="0.0.0.0"))
    local = dataclasses.replace(
        BASE, bind_addr="127.0.0.1",
        transports=tuple(dataclasses.replace(t, bind_addr="127.0.0.1") for t in BASE.transports))
    diff = edgeport_diff(local, wider)
    assert not diff.in_place
    assert {r.field for r in diff.refusals} == {"spec.bindAddr", "spec.transport", "spec.health"}
    binding = {"bind_addr", "transports", "health", "workers", "placement"}
    assert {name for name, rule in EDGEPORT_RULES.items() if rule.how != IN_PLACE} >= binding


def test_the_loader_says_which_file_each_part_came_from(tmp_path: Path) -> None:
    config = load_config_dir(REPO / "config")
    assert config.file_of("EdgePort/edgeport-01", "?").endswith("config/edgeport.yaml")
    assert config.file_of("Location", "?").endswith("config/location.yaml")
    assert config.file_of("EdgePort/nope", "default") == "default"


def test_log_level_is_read_and_checked(tmp_path: Path) -> None:
    text = (REPO / "config" / "edgeport.yaml").read_text()
    (tmp_path / "edgeport.yaml").write_text(text.replace("  workers: 1", "  logLevel: debug\n  workers: 1"))
    assert load_config_dir(tmp_path).edgeports[0].log_level == "DEBUG"
    assert edgeport_diff(BASE, load_config_dir(tmp_path).edgeports[0]).changes[-1].how == IN_PLACE
