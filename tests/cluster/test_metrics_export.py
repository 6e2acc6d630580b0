"""SIP counters of an EdgePort actor read back from a scrape of Ray's metrics export port (issue 7 item 5).

The actor is the production ``EdgePortActor`` (it runs the Ray metrics bridge,
``routr_ray.actors.metrics.RayMetricsBridge``): OPTIONS to the edge itself is answered locally, so no dispatcher is
needed. The port comes from ``ray.nodes()`` (``MetricsExportPort``), so the session's ``ray.init``
needs no change. Ray exports every ~5-10 s: the test polls for up to 40 s.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from routr_ray.actors.edgeport import deploy_edgeport
from routr_ray.config.edgeport import EdgePortConfig, HealthConfig, Transport, TransportProtocol
from tests.support.probes import metric_value, options_ping, scrape
from tests.support.redis_server import free_port

REQUESTS = 7


@pytest.fixture(scope="module")
def edge(ray_session: None) -> Iterator[tuple[Any, str, int, int]]:
    ref = f"metrics-{uuid.uuid4().hex[:6]}"
    health_port = free_port()
    config = EdgePortConfig(
        ref=ref,
        bind_addr="127.0.0.1",
        transports=(Transport(TransportProtocol.UDP, 0, "127.0.0.1"),),
        health=HealthConfig(enabled=True, port=health_port, bind_addr="127.0.0.1"),
    )
    actor, _ = deploy_edgeport(config)
    (port,) = [p for proto, _, p in ray.get(actor.ready.remote(), timeout=60) if proto == "udp"]
    try:
        yield actor, ref, port, health_port
    finally:
        ray.kill(actor, no_restart=True)


def test_sip_counters_are_scraped_from_rays_metrics_export_port(edge: tuple[Any, str, int, int]) -> None:
    actor, ref, port, health_port = edge
    for _ in range(REQUESTS):
        reply = options_ping(port, timeout=2.0)
        # no dispatcher behind this EdgePort: it is not ready and says so (issue 13 item 4)
        assert reply is not None and reply.startswith(b"SIP/2.0 503 ")
    export_port = ray.nodes()[0]["MetricsExportPort"]
    url = f"http://127.0.0.1:{export_port}/metrics"
    deadline = time.monotonic() + 40
    seen_in = seen_out = 0.0
    while time.monotonic() < deadline:
        samples = scrape(url)
        seen_in = metric_value(samples, "ray_routr_sip_messages_total", edgeport=ref, method="OPTIONS", direction="in",
                        transport="udp", status_class="request")
        seen_out = metric_value(samples, "ray_routr_sip_messages_total", edgeport=ref, method="OPTIONS", direction="out",
                         transport="udp", status_class="5xx")
        if seen_in >= REQUESTS and seen_out >= REQUESTS:
            break
        time.sleep(1.0)
    assert ray.get(actor.metrics_flushes.remote()) >= 1
    assert (seen_in, seen_out) == (REQUESTS, REQUESTS)
    # the same numbers as the EdgePort's own /metrics
    own = scrape(f"http://127.0.0.1:{health_port}/metrics")
    assert metric_value(own, "routr_sip_messages_total", method="OPTIONS", direction="in") == REQUESTS
    # gauges and the histogram's parts come through too (no dispatcher call: the count is 0)
    names = {n for n, lbls in samples if ("edgeport", ref) in lbls}
    assert {"ray_routr_edge_active_connections", "ray_routr_edge_active_transactions",
            "ray_routr_edge_dispatcher_latency_seconds_bucket",
            "ray_routr_edge_dispatcher_latency_seconds_count"} <= names
