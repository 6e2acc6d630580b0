"""Issue 18 "Done when": Connect with ``minReplicas: 1, maxReplicas: 2`` scales up under SIPp load and back down
after it, with 0 failed calls, while the EdgePort keeps sending over the link.

Its own server: config/ as shipped with tests/acceptance/autoscale/config laid over it (Connect autoscaled, short
delays) and its ports moved to 26xxx. 1002 registers (a SIPp UAS); 1001 calls it (INVITE with digest, 200, ACK,
BYE) at 30 calls/s for 30 s (the burst) while a second caller places 1 call/s all along (the background: calls in
progress while the second replica drains). A watcher process (a Ray driver of the server's cluster) reads Serve's
count of running Connect replicas and the link registry's servers of ``processor-connect`` twice a second.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.acceptance import (
    CONTACT_PORTS,
    READY_TIMEOUT,
    SHIPPED_CONFIG_DIR,
    Profile,
    Server,
    Sipp,
    _serve,
)
from tests.support.probes import metric_value, scrape

HERE = Path(__file__).resolve().parent
PORTS = {5060: 26060, 5061: 26061, 5062: 26062, 5063: 26063, 8080: 26080, 51901: 26901, 51902: 26902, 5080: 26090,
         9464: 26464}
AUTOSCALE = Profile("autoscale", SHIPPED_CONFIG_DIR, PORTS, 26060, 26061, 26062, 26063, 26090,
                    {"1001": "1234", "1002": "1234", "asterisk": "1234"}, overlay=HERE / "config")
METRICS_URL = f"http://127.0.0.1:{PORTS[9464]}/metrics"
SERVICE = "processor-connect"
# Messages in flight at Connect (both replicas), measured here on 2 busy cores: the burst 0.16-0.54 (median of the
# 1-s reports), the background alone (1 call/s) 0.008-0.025 at most. The overlay's targetOngoingRequests (0.05)
# sits between the two with a margin of about 3 on each side.
BURST_RATE, BURST_SECONDS = 30, 30
BACKGROUND_RATE, BACKGROUND_SECONDS = 1, 60
SETTLED_FOR = 8.0  # lookBackSeconds 4 + upscaleDelaySeconds 2, and a margin
UP_WITHIN = 45.0  # from the start of the load to a second replica running (decision in seconds; a replica starts
DOWN_WITHIN = 40.0  # in 5-20 s on a loaded 2-core box); from the end of the burst to one replica again

WATCHER = """
import json, sys, time
import ray
from ray import serve
from ray.serve._private.common import DeploymentID
from ray.serve.context import _get_global_client
ray.init(address=sys.argv[1], namespace="routr", log_to_driver=False, configure_logging=False)
registry = ray.get_actor("link-registry", namespace="routr")
deployment_id = DeploymentID(name=sys.argv[2], app_name="routr")

def load():
    # the newest report of each replica (Serve's private test hook: informative only, None when it changed)
    try:
        controller = _get_global_client()._controller
        series = ray.get(controller._get_metrics_for_deployment_for_testing.remote(deployment_id), timeout=10)
        return sum(s[-1].value for s in series.get("routr_messages_in_flight", []) if s)
    except Exception:
        return None

while True:
    app = serve.status().applications.get("routr")
    deployment = app.deployments.get(sys.argv[2]) if app is not None else None
    states = {str(getattr(s, "value", s)): n for s, n in deployment.replica_states.items()} if deployment else {}
    links = ray.get(registry.summary.remote(), timeout=10).get(sys.argv[2], [])
    print(json.dumps({"t": time.monotonic(), "running": states.get("RUNNING", 0), "states": states,
                      "links": len(links), "load": load()}), flush=True)
    time.sleep(0.5)
"""


class Watcher:
    """Serve's running replicas of Connect and its link servers, as seen by a driver of the server's cluster."""

    def __init__(self, address: str) -> None:
        self.samples: list[dict[str, object]] = []
        self.process = subprocess.Popen([sys.executable, "-c", WATCHER, address, SERVICE], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True,
                                        env={**os.environ, "RAY_AUTH_MODE": "disabled"})
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.samples.append(json.loads(line))
            except ValueError:
                continue

    def wait(self, predicate, timeout: float, what: str) -> float:  # type: ignore[no-untyped-def]
        """Seconds until the newest sample satisfies ``predicate``."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.samples and predicate(self.samples[-1]):
                return time.monotonic() - start
            assert self.process.poll() is None, "the watcher exited"
            time.sleep(0.25)
        raise AssertionError(f"{what}: not within {timeout:.0f}s; last samples {self.samples[-5:]}")

    def wait_steady(self, predicate, steady: float, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        """Until every sample of the last ``steady`` seconds satisfies ``predicate``."""
        start = time.monotonic()
        since: float | None = None
        while time.monotonic() - start < timeout:
            if self.samples and predicate(self.samples[-1]):
                since = since if since is not None else time.monotonic()
                if time.monotonic() - since >= steady:
                    return
            else:
                since = None
            assert self.process.poll() is None, "the watcher exited"
            time.sleep(0.25)
        raise AssertionError(f"{what}: not for {steady:.0f}s within {timeout:.0f}s; last samples {self.samples[-5:]}")

    def timeline(self, since: float) -> str:
        """The samples as "seconds: running/links" wherever they change (for assertion messages)."""
        points, last = [], None
        for s in self.samples:
            now = (s["running"], s["links"], tuple(sorted(s["states"].items())))  # type: ignore[union-attr]
            if now != last:
                points.append(f"{float(s['t']) - since:+.1f}s: {s['running']} running, {s['links']} links, "  # type: ignore[arg-type]
                              f"{s['states']}")
                last = now
        return "; ".join(points)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(AUTOSCALE, tmp_path_factory)


def link_calls(path: str) -> float:
    """Batches the EdgePort sent to Connect by ``path`` (Ray's metrics export: a few seconds behind)."""
    try:
        return metric_value(scrape(METRICS_URL), "ray_routr_link_calls_total", service=SERVICE, path=path)
    except OSError:
        return 0.0


@pytest.mark.timeout(READY_TIMEOUT + 180)
def test_connect_scales_up_under_sip_load_and_down_after_with_no_failed_call(server: Server, tmp_path: Path) -> None:
    address = re.search(r"Ray address\s+(\S+)", server.log_path.read_text(errors="replace"))
    assert address is not None, server.log_tail()
    watcher = Watcher(address.group(1))
    sipp = Sipp(tmp_path, AUTOSCALE)
    sipp.assert_ok(sipp.register("1002"))
    started_sipps: list[subprocess.Popen[bytes]] = []
    try:
        # idle and settled: one replica, nothing starting or stopping, for longer than a look-back window and the
        # upscale delay (with this low target, one slow message of the start-up can ask for a second replica)
        watcher.wait_steady(lambda s: s["running"] == 1 and s["links"] == 1 and set(s["states"]) == {"RUNNING"},
                            SETTLED_FOR, 90, "one Connect replica serving a link, idle")
        link_before = link_calls("link")
        burst_calls, background_calls = BURST_RATE * BURST_SECONDS, BACKGROUND_RATE * BACKGROUND_SECONDS
        # the callee never stops by itself: SIPp counts a stray ACK (uas.xml) as a call of its own, so a count of
        # the calls to take would end it before the last ones came (and they would get 503: nobody there)
        callee = sipp.uas("autoscale/uas.xml", CONTACT_PORTS["1002"], keys={"me": "1002"},
                          calls=10 * (burst_calls + background_calls), timeout_s=BACKGROUND_SECONDS + 120)
        started_sipps.append(callee.process)
        auth = ("1001", sipp.password("1001"))
        background = sipp.start("agent_call/uac.xml", service="1002", keys={"caller": "1001"}, auth=auth,
                                calls=background_calls, timeout_s=BACKGROUND_SECONDS + 50,
                                extra=("-r", str(BACKGROUND_RATE)))
        started_sipps.append(background.process)
        started = time.monotonic()
        burst = sipp.start("agent_call/uac.xml", service="1002", keys={"caller": "1001"}, auth=auth,
                           calls=burst_calls, timeout_s=BURST_SECONDS + 40,
                           extra=("-r", str(BURST_RATE)))
        started_sipps.append(burst.process)

        up = watcher.wait(lambda s: s["running"] >= 2 and s["links"] >= 2, UP_WITHIN,
                          "a second Connect replica (and its link server) under load")
        burst_result = burst.result(timeout=BURST_SECONDS + 60)
        burst_done = time.monotonic()
        burst_loads = [s["load"] for s in watcher.samples if s["load"] is not None and s["t"] <= burst_done]
        down = watcher.wait(lambda s: s["running"] == 1 and s["links"] == 1 and not s["states"].get("STOPPING"),
                            DOWN_WITHIN, "back to one Connect replica after the burst")
        calm_from = time.monotonic()
        background_result = background.result(timeout=BACKGROUND_SECONDS + 60)
        print("timeline:", watcher.timeline(started))
        calm_loads = [s["load"] for s in watcher.samples if s["load"] is not None and s["t"] >= calm_from]
        sipp.assert_ok(burst_result, background_result)  # every call of both callers completed (the callers' view)

        peak = max(int(s["running"]) for s in watcher.samples)  # type: ignore[call-overload]
        assert peak == 2, "maxReplicas is 2"
        # the link carried the load: the EdgePort's batches to Connect went over it, not the Ray-call fallback
        deadline = time.monotonic() + 30
        while link_calls("link") - link_before < burst_calls and time.monotonic() < deadline:
            time.sleep(2)
        link_after, ray_after = link_calls("link"), link_calls("ray")
        assert link_after - link_before >= burst_calls, (link_before, link_after)
        assert ray_after <= 0.05 * (link_after - link_before), (ray_after, link_after)
        print(f"autoscaling: 2 replicas {up:.1f}s after the load started, 1 again {down:.1f}s after the burst "
              f"ended ({time.monotonic() - started:.0f}s in all); {burst_calls + background_calls} calls, 0 failed; "
              f"link batches {link_after - link_before:.0f}, Ray-call batches {ray_after:.0f}; messages in flight "
              f"reported: burst median {statistics.median(burst_loads or [float('nan')]):.3f} max "
              f"{max(burst_loads, default=float('nan')):.3f}, background only max "
              f"{max(calm_loads, default=float('nan')):.3f}")
        assert burst_done - started < BURST_SECONDS + 30, "the server kept up with the burst's rate"
    finally:
        for process in started_sipps:  # the callee always (it never stops by itself); the callers if they still run
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        watcher.stop()
        sipp.unregister("1002")
