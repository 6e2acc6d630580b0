"""The soak run: one long SIPp run at a fixed rate while the server's memory and CPU are sampled.

Issue 8's target: the server's RSS stays within ±10 % over a 10-minute run at half the max rate. Drift is
measured from the first sample after a warm-up (caches, Ray's worker pools and the Location fill up first) to
the last sample.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sipbench import procs
from sipbench.servers import ServerProcess
from sipbench.sipp import SippResult, SippRun

DRIFT_LIMIT = 0.10


@dataclass
class Sample:
    elapsed: float
    rss_kib: int
    pss_kib: int
    server_cpu: float          # share of one core over the interval before this sample
    sipp_cpu: float
    other_cpu: float
    successful: int
    failed: int
    store_rss_kib: int | None = None   # redis-server, when the Location is in Redis

    def line(self) -> str:
        store = f"  redis-server RSS {self.store_rss_kib / 1024:6.1f} MiB" if self.store_rss_kib is not None else ""
        return (f"  {self.elapsed:6.0f}s  RSS {self.rss_kib / 1024:7.1f} MiB  PSS {self.pss_kib / 1024:7.1f} MiB  "
                f"server {100 * self.server_cpu:5.1f}%  sipp {100 * self.sipp_cpu:4.0f}%  "
                f"other {100 * self.other_cpu:4.0f}%  ok {self.successful:>8} fail {self.failed:>6}{store}")


@dataclass
class SoakResult:
    scenario: str
    rate: float
    seconds: float
    warmup: float
    samples: list[Sample] = field(default_factory=list)
    result: SippResult | None = None
    server_cpu_seconds: float = 0.0
    load: str = ""

    def baseline(self) -> Sample | None:
        """The first sample taken after the warm-up."""
        return next((s for s in self.samples if s.elapsed >= self.warmup), None)

    def drift(self) -> float | None:
        base = self.baseline()
        if base is None or not self.samples or self.samples[-1] is base or base.rss_kib == 0:
            return None
        return (self.samples[-1].rss_kib - base.rss_kib) / base.rss_kib

    def summary(self) -> list[str]:
        lines = []
        r = self.result
        if r is not None:
            p50, p99 = r.percentile(50), r.percentile(99)
            lat = f"p50 {p50:.1f} ms p99 {p99:.1f} ms" if p50 is not None and p99 is not None else "no latency samples"
            per_op = 1e6 * self.server_cpu_seconds / r.successful if r.successful else float("nan")
            lines.append(f"soak {self.scenario} at {self.rate:.0f}/s for {self.seconds:.0f}s: achieved "
                         f"{r.achieved_rate:.1f}/s, ok {r.successful}, failed {100 * r.failed_ratio:.2f}% "
                         f"(target < 1 %), {lat}, server CPU {per_op:.0f} µs/op (load {self.load})")
        if not self.samples:
            lines.append("soak: no memory sample")
            return lines
        rss = [s.rss_kib / 1024 for s in self.samples]
        lines.append(f"soak RSS MiB: first {rss[0]:.1f}, min {min(rss):.1f}, max {max(rss):.1f}, last {rss[-1]:.1f}"
                     f" ({len(rss)} samples)")
        base, drift = self.baseline(), self.drift()
        if base is None or drift is None:
            lines.append(f"soak RSS drift: n/a (no two samples after the {self.warmup:.0f}s warm-up)")
        else:
            verdict = "within" if abs(drift) <= DRIFT_LIMIT else "OUTSIDE"
            pss_base, pss_last = base.pss_kib, self.samples[-1].pss_kib
            pss = f"; PSS {100 * (pss_last - pss_base) / pss_base:+.1f}%" if pss_base else ""
            lines.append(f"soak RSS drift {100 * drift:+.1f}% from {base.rss_kib / 1024:.1f} MiB at "
                         f"{base.elapsed:.0f}s to {self.samples[-1].rss_kib / 1024:.1f} MiB at "
                         f"{self.samples[-1].elapsed:.0f}s: {verdict} ±{100 * DRIFT_LIMIT:.0f} %{pss}")
        return lines


def run_soak(
    server: ServerProcess,
    start: Callable[[], SippRun],
    soak: SoakResult,
    interval: float,
    extra_pids: Callable[[], list[int]] = list,
    store: ServerProcess | None = None,
) -> SoakResult:
    """Starts the SIPp run, samples the server tree every `interval` s until SIPp ends (and once at its end).

    Each sample re-reads the tree's pids (Ray starts and stops workers). `extra_pids` are other client
    processes (the UAS) counted with SIPp; `store` is the Location's redis-server, sampled on its own."""
    def client_seconds() -> float:
        # SIPp's CPU from /proc while it runs, from RUSAGE_CHILDREN once reaped (poll() reaps it)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        alive = [run.proc.pid] if run.proc.returncode is None else []
        return kids.ru_utime + kids.ru_stime + procs.cpu_seconds([*alive, *extra_pids()])

    cpu0 = server.cpu_seconds()
    run = start()
    t0 = time.monotonic()
    last_t, last_cpu = t0, cpu0
    last_client = client_seconds()
    last_busy = procs.machine_busy_seconds()
    next_at = t0 + interval

    def sample() -> None:
        nonlocal last_t, last_cpu, last_client, last_busy
        now, cpu = time.monotonic(), server.cpu_seconds()
        client = client_seconds()
        busy = procs.machine_busy_seconds()
        span = max(now - last_t, 1e-3)
        server_cpu = max(0.0, cpu - last_cpu)   # a worker that exited takes its CPU time with it
        client_cpu = max(0.0, client - last_client)
        rss, pss = server.memory_kib()
        ok, failed = run.progress()
        item = Sample(now - t0, rss, pss, server_cpu / span, client_cpu / span,
                      max(0.0, busy - last_busy - server_cpu - client_cpu) / span, ok, failed,
                      store.memory_kib()[0] if store is not None else None)
        soak.samples.append(item)
        print(item.line(), flush=True)
        last_t, last_cpu, last_client, last_busy = now, cpu, client, busy

    while run.poll() is None and time.monotonic() < run.deadline:
        now = time.monotonic()
        if now >= next_at:
            sample()
            next_at += interval
        time.sleep(min(0.5, max(0.05, next_at - time.monotonic())))
    if not soak.samples or time.monotonic() - last_t > 1.0:
        sample()
    soak.result = run.wait()
    soak.server_cpu_seconds = max(0.0, server.cpu_seconds() - cpu0)
    soak.load = procs.loadavg()
    return soak
