"""Issue 21 "Done when", on a real `routr-ray run` driven by SIPp: one trace across processes, every dashboard
metric with samples, `routr-ray status` from the metrics.

Its own server: config/ as shipped with tests/acceptance/observability/config laid over it (tracing on, every
transaction sampled, to the OTLP receiver this module runs on 127.0.0.1:27317) and its ports moved to 27xxx; call
events to the log sink (the events panel has data). 1002 registers, 1001 calls it and holds the call 20 s (calls in
progress are read meanwhile), then hangs up.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.acceptance import (
    CONTACT_PORTS,
    SHIPPED_CONFIG_DIR,
    Profile,
    Server,
    Sipp,
    SippProcess,
    _serve,
)
from tests.support.otlp import OtlpReceiver, ReceivedSpan
from tests.support.probes import metric_value, scrape
from tests.unit.test_observability_dashboard import DASHBOARD, dashboard_series

HERE = Path(__file__).resolve().parent
RECEIVER_PORT = 27317
PORTS = {5060: 27060, 5061: 27061, 5062: 27062, 5063: 27063, 8080: 27080, 51901: 27901, 51902: 27902, 5080: 27090,
         9464: 27464}
OBSERVABILITY = Profile(
    "observability", SHIPPED_CONFIG_DIR, PORTS, 27060, 27061, 27062, 27063, 27090,
    {"1001": "1234", "1002": "1234", "asterisk": "1234"}, overlay=HERE / "config",
    env={"ROUTR_RAY_EVENTS_LOG": "1", "OTEL_BSP_SCHEDULE_DELAY": "500"},
)
METRICS_URL = f"http://127.0.0.1:{PORTS[9464]}/metrics"
SERVER_KIND = 2  # OTLP Span.SpanKind: SPAN_KIND_SERVER
CLIENT_KIND = 3


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver(RECEIVER_PORT).start()
    try:
        yield receiver
    finally:
        receiver.stop()


@pytest.fixture(scope="module")
def server(receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(OBSERVABILITY, tmp_path_factory)


@pytest.fixture(scope="module")
def call(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """The SIPp run every test here reads: 1002 registers, 1001 calls it (held 20 s), what was seen during the
    call, then the hang-up."""
    sipp = Sipp(tmp_path_factory.mktemp("sipp-observability"), OBSERVABILITY)
    sipp.assert_ok(sipp.register("1002"))
    try:  # the binding stays while the tests read (bindings by domain), then goes
        callee = sipp.uas("agent_call/uas.xml", CONTACT_PORTS["1002"], keys={"me": "1002"}, timeout_s=90)
        caller = sipp.start("observability/uac_held.xml", service="1002", keys={"caller": "1001"},
                            auth=("1001", sipp.password("1001")), timeout_s=90)
        during = _while_the_call_is_up(server, caller)
        results = caller.result(timeout=90), callee.result(timeout=30)
        sipp.assert_ok(*results)
        yield {"during": during, "caller": results[0]}
    finally:
        sipp.unregister("1002")


def _while_the_call_is_up(server: Server, caller: SippProcess) -> dict[str, object]:
    """Calls in progress in Ray's export, and `routr-ray status`, while the caller holds the call."""
    deadline = time.monotonic() + 18
    active = 0.0
    while time.monotonic() < deadline and caller.process.poll() is None:
        try:
            active = metric_value(scrape(METRICS_URL), "ray_routr_calls_active")
        except OSError:
            active = 0.0
        if active >= 1:
            break
        time.sleep(1.0)
    address = re.search(r"Ray address\s+(\S+)", server.log_path.read_text(errors="replace"))
    assert address is not None, server.log_tail()
    status = subprocess.run([sys.executable, "-m", "routr_ray.cli", "status", "--address", address.group(1)],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    return {"active": active, "status": status.stdout + status.stderr, "still_up": caller.process.poll() is None}


def _wait_for(receiver: OtlpReceiver, found: object, seconds: float = 30.0) -> list[ReceivedSpan]:
    deadline = time.monotonic() + seconds
    while True:
        spans = receiver.snapshot()
        if found(spans) or time.monotonic() > deadline:  # type: ignore[operator]
            return spans
        time.sleep(0.5)


def _call_traces(spans: list[ReceivedSpan]) -> list[list[ReceivedSpan]]:
    """The traces whose root is the EdgePort's span of an INVITE answered 200, with a Location shard span."""
    by_trace: dict[str, list[ReceivedSpan]] = {}
    for span in spans:
        by_trace.setdefault(span.trace_id, []).append(span)
    found = []
    for trace in by_trace.values():
        roots = [s for s in trace if not s.parent_id]
        if (len(roots) == 1 and roots[0].name == "SIP INVITE" and roots[0].attributes.get("sip.status_code") == 200
                and any(s.component == "location-shard" for s in trace)):
            found.append(trace)
    return found


def test_one_trace_links_the_edgeport_connect_and_the_location_shard(call: dict[str, object],
                                                                     receiver: OtlpReceiver) -> None:
    spans = _wait_for(receiver, lambda spans: bool(_call_traces(spans)))
    traces = _call_traces(spans)
    assert traces, f"no INVITE trace reaches a Location shard; {len(spans)} spans: " \
                   f"{sorted({(s.component, s.name) for s in spans})}"
    trace = traces[0]
    by_id = {s.span_id: s for s in trace}
    for span in trace:  # parent to child, nothing dangling
        assert not span.parent_id or span.parent_id in by_id, f"{span.component} {span.name}: parent not in the trace"
    (root,) = [s for s in trace if not s.parent_id]
    assert root.component == "edgeport" and root.kind == SERVER_KIND
    assert root.attributes["sip.method"] == "INVITE" and root.attributes["sip.call_direction"] == "agent-to-agent"
    assert root.attributes["sip.call_id"]

    def chain(span: ReceivedSpan) -> list[tuple[str, str]]:
        path = []
        while span.parent_id:
            span = by_id[span.parent_id]
            path.append((span.component, span.name))
        return path

    shard = next(s for s in trace if s.component == "location-shard" and s.name == "location.find")
    assert shard.kind == SERVER_KIND
    path = chain(shard)
    assert path[0] == ("processor-connect", "location.find")  # Connect's client span of the call
    assert ("processor-connect", "connect.route") in path
    assert ("processor-connect", "connect INVITE") in path
    assert ("edgeport", "routr.dispatch") in path  # the embedded dispatch, in the EdgePort's process
    assert path[-1] == ("edgeport", "SIP INVITE")
    downstream = [s for s in trace if s.component == "edgeport" and s.kind == CLIENT_KIND]
    assert downstream and downstream[0].attributes["sip.status_code"] == 200


# Dashboard series a feature this server does not run makes: a trunk registration (config/ ships trunk-01 with
# `sendRegister: false`) and OPTIONS keepalives (config/ ships no trunk or peer with `keepalive`).
# tests/acceptance/trunks checks the registration and `routr_trunk_target_up` series on the extras server
# (trunk-reg, trunk-ka); tests/cluster/test_trunk_registrar.py checks `routr_peer_keepalive_targets`.
ONLY_WHEN_CONFIGURED = {"routr_trunk_registration_state", "routr_trunk_target_up", "routr_peer_keepalive_targets"}


def test_every_dashboard_metric_has_samples_after_the_run(call: dict[str, object]) -> None:
    wanted = dashboard_series(json.loads(DASHBOARD.read_text())) - ONLY_WHEN_CONFIGURED
    deadline = time.monotonic() + 60
    while True:
        samples = scrape(METRICS_URL)
        names = {name for name, _ in samples}
        missing = {name for name in wanted if "ray_" + name not in names}
        ended = metric_value(samples, "ray_routr_call_duration_seconds_count") >= 1  # the BYE, a moment ago
        if (not missing and ended) or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    assert not missing, f"no samples in Ray's export for {sorted(missing)}"
    # and they carry this run: the call, its REGISTERs and INVITEs, the Location lookups
    assert metric_value(samples, "ray_routr_calls_total", result="answered") >= 1
    assert metric_value(samples, "ray_routr_call_duration_seconds_count") >= 1
    assert metric_value(samples, "ray_routr_connect_requests_total", method="INVITE", direction="agent-to-agent",
                        outcome="forwarded") >= 1
    assert metric_value(samples, "ray_routr_connect_auth_total", result="challenged") >= 2
    assert metric_value(samples, "ray_routr_location_operations_total", operation="find", result="OK") >= 1
    assert metric_value(samples, "ray_routr_location_domain_bindings", domain="sip.local") >= 0
    assert metric_value(samples, "ray_routr_events_published_total", event="call.started") >= 1
    assert metric_value(samples, "ray_routr_link_calls_total", path="link") >= 1


def test_calls_in_progress_and_status_while_the_call_is_up(call: dict[str, object]) -> None:
    during = call["during"]
    assert isinstance(during, dict)
    assert during["active"] >= 1, during
    status = str(during["status"])
    assert "Calls in progress: " in status, status
    assert re.search(r"Calls in progress: [1-9]", status), status
    assert re.search(r"Registered users:  [1-9]\d* \(bindings: [1-9]", status), status
    assert "Trunks:" in status
