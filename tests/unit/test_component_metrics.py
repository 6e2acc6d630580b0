"""Issue 21: every component's metrics (Location by domain and readiness, Connect, links, the process) read back
as Prometheus text, with label values from closed sets only."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from routr_ray.link.stats import LinkStats
from routr_ray.location import LocationService
from routr_ray.location.aor import aor_domain
from routr_ray.location.metrics import LocationMetrics
from routr_ray.location.ops import apply_ops, encode_add
from routr_ray.observability.process_metrics import LinkCollector, process_registry
from routr_ray.processors.connect.metrics import ConnectMetrics
from routr_ray.proto.gen import location_pb2

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(registry: CollectorRegistry) -> Samples:
    found: Samples = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def add(aor: str, host: str) -> tuple[str, bytes]:
    return encode_add(location_pb2.AddRouteRequest(aor=aor, route=location_pb2.Route(host=host, expires=60)))


def test_the_domain_of_an_aor() -> None:
    assert aor_domain("sip:1001@sip.local") == "sip.local"
    assert aor_domain("sips:1001@sip.local:5061;transport=tls") == "sip.local"
    assert aor_domain("sip:[2001:db8::1]:5060") == "[2001:db8::1]"
    assert aor_domain("sip:sip.local") == "sip.local"
    assert aor_domain("backend:voicemail") == "backend"


async def test_location_bindings_by_domain_and_readiness() -> None:
    service = LocationService(sweep_interval=0)
    metrics = LocationMetrics(0)
    loading = [True]
    metrics.watch(lambda: service.binding_count, lambda: service.aor_count, ready=lambda: not loading[0],
                  by_domain=service.bindings_by_domain)
    await apply_ops(service, [add("sip:a@one.test", "10.0.0.1"), add("sip:a@one.test", "10.0.0.2"),
                              add("sip:b@two.test", "10.0.0.3")], metrics)
    got = samples(metrics.registry)
    assert got[("routr_location_domain_bindings", (("domain", "one.test"), ("shard", "0")))] == 2
    assert got[("routr_location_domain_bindings", (("domain", "two.test"), ("shard", "0")))] == 1
    assert got[("routr_location_shard_ready", (("shard", "0"),))] == 0
    loading[0] = False
    assert samples(metrics.registry)[("routr_location_shard_ready", (("shard", "0"),))] == 1


async def test_domains_past_the_limit_are_other() -> None:
    service = LocationService(sweep_interval=0)
    await apply_ops(service, [add(f"sip:u@d{i}.test", f"10.0.0.{i + 1}") for i in range(5)])
    counts = service.bindings_by_domain(limit=3)
    assert len(counts) == 4 and counts["other"] == 2 and sum(counts.values()) == 5


def test_connect_counts_decisions_with_bounded_labels() -> None:
    metrics = ConnectMetrics()
    metrics.decided("INVITE", "agent-to-agent", None, 0.002)
    metrics.decided("REGISTER", None, 200, 0.001)
    metrics.decided("FOO", "made-up", 404, 0.001)
    metrics.access("challenged")
    metrics.access("ok")
    metrics.access("anything")
    metrics.banned()
    got = samples(metrics.registry)
    assert got[("routr_connect_requests_total", (("direction", "agent-to-agent"), ("method", "INVITE"),
                                                 ("outcome", "forwarded")))] == 1
    assert got[("routr_connect_requests_total", (("direction", "none"), ("method", "REGISTER"),
                                                 ("outcome", "2xx")))] == 1
    assert got[("routr_connect_requests_total", (("direction", "other"), ("method", "OTHER"),
                                                 ("outcome", "4xx")))] == 1
    assert got[("routr_connect_auth_total", (("result", "other"),))] == 1
    assert got[("routr_connect_bans_total", ())] == 1
    assert got[("routr_connect_routing_seconds_count", ())] == 3


def test_link_calls_and_in_flight() -> None:
    stats = LinkStats()
    registry = CollectorRegistry()
    registry.register(LinkCollector(stats))
    stats.started("location-shard-0")
    stats.call("location-shard-0", "link")
    stats.call("processor-connect", "ray")
    got = samples(registry)
    assert got[("routr_link_calls_total", (("path", "link"), ("service", "location-shard-0")))] == 1
    assert got[("routr_link_calls_total", (("path", "ray"), ("service", "processor-connect")))] == 1
    assert got[("routr_link_in_flight", (("service", "location-shard-0"),))] == 1
    stats.finished("location-shard-0")
    assert samples(registry)[("routr_link_in_flight", (("service", "location-shard-0"),))] == 0


def test_the_process_registry_has_the_resources_the_alerts_watch() -> None:
    names = {name for name, _ in samples(process_registry())}
    assert {"routr_process_resident_memory_bytes", "routr_process_cpu_seconds_total", "routr_process_open_fds",
            "routr_process_max_fds"} <= names
    assert process_registry() is process_registry()


def test_link_stats_count_through_linked() -> None:
    """``linked`` with no server for the service falls back to the Ray call and counts it."""
    from routr_ray.actors import links
    from routr_ray.link.stats import LINK_STATS

    async def fallback(items: list[int]) -> list[int]:
        return items

    async def run() -> list[int]:
        send = links.linked("test-service", lambda items: b"", lambda data: [], fallback)
        try:
            return list(await send([1, 2]))
        finally:
            links.directory().close()

    before = LINK_STATS.calls.get(("test-service", "ray"), 0)
    assert asyncio.run(run()) == [1, 2]
    assert LINK_STATS.calls[("test-service", "ray")] == before + 1
