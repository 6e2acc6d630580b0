"""SIP benchmark: SIPp against routr-ray (and Debian's Kamailio) on 127.0.0.1.

    scripts/in-netns python benchmarks/bench_sip.py [--vs-kamailio] [--redis | --both-stores] [--quick]
                                                    [--soak 600 [--soak-rate R] [--soak-scenario register|calls]]

Starts `routr-ray run --config benchmarks/config --no-dashboard` (UDP 5160; memory Location, or with --redis a
throw-away redis-server and `--redis URL`; --both-stores does the whole run once with each), then with SIPp
(Debian `sip-tester`):

1. REGISTER with digest (sipp/register_auth.xml, users user00000… password secret): a ramp of rates, each for
   --step-seconds, stopping at the first step with ≥ 1 % failed or < 95 % of the target rate achieved;
2. calls INVITE…BYE through the proxy to a registered SIPp UAS (uac_proxy.xml ↔ uas_proxy.xml), caller trusted
   by IP ACL (no digest on INVITE, as in Kamailio's config): the same kind of ramp;
3. calls with digest on every INVITE (uac_proxy_auth.xml; routr-ray only: Kamailio's config never challenges);
4. each scenario again at half its highest passing rate, for the latency figures (target: p99 ≤ 50 ms);
5. with --soak SECONDS (routr-ray only; `--only soak` skips the ramps): one SIPp run of that length at
   --soak-rate (default half the scenario's highest passing rate), sampling RSS/PSS/CPU of the server tree
   every 15 s, and the RSS drift after a 60 s warm-up (target: within ±10 % over 10 minutes).

For every step it prints the achieved rate, failures, SIPp p50/p99 response time, server CPU per
registration/call (utime+stime of the server's whole process tree from /proc), the CPU the rest of the machine
used meanwhile ("other", from /proc/stat) and the 1-minute load average. At the end: RSS/PSS of the server tree.
--vs-kamailio runs the same scenarios against `kamailio` (benchmarks/kamailio/kamailio.cfg, UDP 5170, 2 workers,
-A WITH_AUTH) in the same run and prints the ratios. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sipbench import procs, profile  # noqa: E402
from sipbench.resources import RESOURCES_DIR, count_users, uas_csv, users_csv  # noqa: E402
from sipbench.servers import BENCH_DIR, KamailioServer, RedisProcess, RoutrServer, ServerProcess  # noqa: E402
from sipbench.sipp import SippClient, SippResult, SippRun, start_uas  # noqa: E402
from sipbench.soak import SoakResult, run_soak  # noqa: E402

ROUTR_PORT = 5160          # benchmarks/config/edgeport.yaml
KAMAILIO_PORT = 5170
CLIENT_PORT = {"routr-ray": 5161, "kamailio": 5171}
UAS_PORT = {"routr-ray": 5180, "kamailio": 5181}

REGISTER_RATES = (200, 500, 1000, 2000, 3000, 5000, 8000, 12000, 16000, 20000, 25000)
CALL_RATES = (50, 100, 200, 500, 1000, 1500, 2000, 3000, 4000, 5000)
QUICK_REGISTER_RATES = (200, 500, 1000, 2000, 5000, 10000, 20000)
QUICK_CALL_RATES = (50, 200, 500, 1000, 2000, 4000)
SOAK_RAMP = {"register": "register-digest", "calls": "calls-acl"}   # --soak-scenario → the ramp giving its rate
RAMPS = ("register", "calls", "calls-digest")


@dataclass
class Step:
    scenario: str
    result: SippResult
    server_cpu: float
    client_cpu: float
    other_cpu: float
    seconds: float
    load: str
    roles: dict[str, float] = field(default_factory=dict)

    @property
    def cpu_us_per_call(self) -> float:
        return 1e6 * self.server_cpu / self.result.successful if self.result.successful else float("nan")

    def line(self) -> str:
        r = self.result
        p50, p99 = r.percentile(50), r.percentile(99)
        lat = f"p50 {p50:6.1f} ms p99 {p99:7.1f} ms" if p50 is not None and p99 is not None else "p50 -      p99 -      "
        return (f"  {r.target_rate:>6.0f}/s → {r.achieved_rate:8.1f}/s  ok {r.successful:>7} fail "
                f"{100 * r.failed_ratio:5.2f}% retr {r.retransmissions:>6}  {lat}  "
                f"server {100 * self.server_cpu / self.seconds:5.1f}% = {self.cpu_us_per_call:7.0f} µs/op  "
                f"sipp {100 * self.client_cpu / self.seconds:4.0f}%  other {100 * self.other_cpu / self.seconds:4.0f}%"
                f"  load {self.load}  {'PASS' if r.passed() else 'FAIL'}")


@dataclass
class Outcome:
    server: str                # label: "routr-ray [Location: memory]", "kamailio"
    kind: str = ""             # "routr-ray" or "kamailio": which ports and which comparisons
    steps: dict[str, list[Step]] = field(default_factory=dict)
    half: dict[str, Step] = field(default_factory=dict)
    memory: dict[str, tuple[int, int]] = field(default_factory=dict)
    store_memory: dict[str, tuple[int, int, int | None]] = field(default_factory=dict)  # redis RSS, PSS, keys
    notes: list[str] = field(default_factory=list)
    idle_cpu: float = 0.0  # server CPU (cores) with no traffic: Ray's own background work
    soak: SoakResult | None = None

    def max_rate(self, scenario: str) -> float | None:
        passing = [s.result.achieved_rate for s in self.steps.get(scenario, []) if s.result.passed()]
        return max(passing) if passing else None

    def best_step(self, scenario: str) -> Step | None:
        passing = [s for s in self.steps.get(scenario, []) if s.result.passed()]
        return max(passing, key=lambda s: s.result.achieved_rate) if passing else None


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.users_file = workdir / "users.csv"
        self.users_file.write_text(users_csv(args.users))
        self.uas_file = workdir / "uas.csv"
        self.uas_file.write_text(uas_csv())
        self.redis: RedisProcess | None = None   # the Location's redis-server while routr-ray runs on Redis
        self.store: str | None = None            # "memory" or "Redis" while routr-ray runs

    # ---- one step ---------------------------------------------------------------------------------

    def measure(self, server: ServerProcess, uas_pid: int | None, scenario: str,
                run: Callable[[], SippResult]) -> Step:
        server_pids = server.pids()
        uas_pids = procs.tree_pids(uas_pid) if uas_pid else []
        roles_before = profile.cpu_by_role(server_pids)
        cpu0, uas0, busy0 = server.cpu_seconds(), procs.cpu_seconds(uas_pids), procs.machine_busy_seconds()
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        result = run()
        seconds = time.monotonic() - t0
        kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu1, uas1, busy1 = server.cpu_seconds(), procs.cpu_seconds(uas_pids), procs.machine_busy_seconds()
        roles_after = profile.cpu_by_role(server.pids())
        client = (kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime) + (uas1 - uas0)
        server_cpu = cpu1 - cpu0
        roles = {k: v - roles_before.get(k, 0.0) for k, v in roles_after.items() if v - roles_before.get(k, 0.0) > 0}
        step = Step(scenario, result, server_cpu, client, max(0.0, busy1 - busy0 - server_cpu - client),
                    seconds, procs.loadavg(), roles)
        print(step.line(), flush=True)
        if result.returncode not in (0, 1) or not result.calls:
            print(f"    sipp exit {result.returncode}; see {result.workdir}", flush=True)
        return step

    def ramp(self, outcome: Outcome, server: ServerProcess, uas_pid: int | None, scenario: str,
             rates: tuple[int, ...], run: Callable[[float, float, bool], SippResult]) -> None:
        print(f"{outcome.server}: {scenario}", flush=True)
        steps = outcome.steps.setdefault(scenario, [])
        for rate in rates:
            if self.args.max_rate and rate > self.args.max_rate:
                break
            step = self.measure(server, uas_pid, scenario, lambda r=rate: run(r, self.args.step_seconds, False))
            steps.append(step)
            if not step.result.passed():
                if step.result.successful == 0 and len(steps) == 1:
                    self.trace(outcome, scenario, run)
                break
            time.sleep(self.args.settle)
        best = outcome.max_rate(scenario)
        if best is not None and not self.args.no_half:
            half = max(1.0, best / 2)
            print(f"{outcome.server}: {scenario} at half the highest passing rate", flush=True)
            outcome.half[scenario] = self.measure(server, uas_pid, scenario,
                                                  lambda: run(half, self.args.step_seconds, False))

    def trace(self, outcome: Outcome, scenario: str, run: Callable[[float, float, bool], SippResult]) -> None:
        """Nothing passed at the lowest rate: 3 calls with -trace_msg, for the report."""
        result = run(1, 3, True)
        traces = sorted(result.workdir.glob("*_messages.log")) if result.workdir else []
        note = f"{scenario}: no call succeeded; SIP trace of 3 calls: {traces[0] if traces else result.workdir}"
        outcome.notes.append(note)
        print(f"    {note}", flush=True)

    # ---- one server -------------------------------------------------------------------------------

    def snapshot(self, outcome: Outcome, server: ServerProcess, when: str) -> None:
        outcome.memory[when] = server.memory_kib()
        if self.redis is not None and outcome.kind == "routr-ray":
            outcome.store_memory[when] = (*self.redis.memory_kib(), self.redis.dbsize())

    def run_server(self, server: ServerProcess, kind: str, label: str, port: int, with_auth_calls: bool) -> Outcome:
        outcome = Outcome(label, kind)
        args = self.args
        files = self.workdir / label.split()[0] / (self.store or "")
        client = SippClient(f"127.0.0.1:{port}", CLIENT_PORT[kind], files,
                            socket_per_call=self.args.sipp_sockets == "per-call")
        self.snapshot(outcome, server, "idle")
        idle0, t0 = server.cpu_seconds(), time.monotonic()
        time.sleep(self.args.idle_seconds)
        outcome.idle_cpu = (server.cpu_seconds() - idle0) / (time.monotonic() - t0)
        print(f"{label}: idle server CPU {100 * outcome.idle_cpu:.1f}% of a core (no traffic, "
              f"{self.args.idle_seconds:.0f}s; load {procs.loadavg()})", flush=True)
        reg_rates = QUICK_REGISTER_RATES if args.quick else REGISTER_RATES
        call_rates = QUICK_CALL_RATES if args.quick else CALL_RATES
        soak = args.soak > 0 and kind == "routr-ray"
        if "register" in args.only:
            self.ramp(outcome, server, None, "register-digest", reg_rates,
                      lambda r, s, t: client.run("register_auth.xml", r, s, inf=self.users_file, trace_msg=t))
            self.snapshot(outcome, server, "after REGISTER")
            if args.profile and isinstance(server, RoutrServer):
                self.profile_step(outcome, server, None, "register-digest",
                                  lambda r: client.run("register_auth.xml", r, args.step_seconds, inf=self.users_file))
        hold = args.hold_ms
        if {"calls", "calls-digest"} & args.only or (soak and args.soak_scenario == "calls"):
            with self.uas_running(outcome, port, UAS_PORT[kind], files) as uas_pid:
                if uas_pid is None:
                    return outcome
                if "calls" in args.only:
                    self.ramp(outcome, server, uas_pid, "calls-acl", call_rates,
                              lambda r, s, t: client.run("uac_proxy.xml", r, s, service="uas", hold_ms=hold,
                                                         trace_msg=t))
                if with_auth_calls and "calls-digest" in args.only:
                    self.ramp(outcome, server, uas_pid, "calls-digest", call_rates,
                              lambda r, s, t: client.run("uac_proxy_auth.xml", r, s, inf=self.users_file,
                                                         service="uas", hold_ms=hold, trace_msg=t))
                if {"calls", "calls-digest"} & args.only:
                    self.snapshot(outcome, server, "after calls")
                if args.profile and isinstance(server, RoutrServer) and "calls" in args.only:
                    self.profile_step(outcome, server, uas_pid, "calls-acl", lambda r: client.run(
                        "uac_proxy.xml", r, args.step_seconds, service="uas", hold_ms=hold))
                if soak and args.soak_scenario == "calls":
                    self.soak(outcome, server, uas_pid, lambda r, s: client.start(
                        "uac_proxy.xml", r, s, service="uas", hold_ms=hold, name="soak-calls"))
        if soak and args.soak_scenario == "register":
            self.soak(outcome, server, None, lambda r, s: client.start(
                "register_auth.xml", r, s, inf=self.users_file, name="soak-register"))
        return outcome

    @contextmanager
    def uas_running(self, outcome: Outcome, port: int, uas_port: int, files: Path) -> Iterator[int | None]:
        """Registers the callee `uas` at 127.0.0.1:`uas_port` and runs SIPp's uas_proxy.xml there; yields its pid,
        or None (with a note) when it could not register."""
        reg = SippClient(f"127.0.0.1:{port}", uas_port, files).run(
            "register_auth.xml", 1, 1, inf=self.uas_file, name="register-uas")
        if reg.successful != 1:
            outcome.notes.append(f"the UAS did not register (see {reg.workdir}); no call run")
            print(f"  {outcome.notes[-1]}", flush=True)
            yield None
            return
        uas = start_uas(files, uas_port, trace_msg=self.args.trace_uas)
        try:
            time.sleep(0.5)
            yield uas.pid
        finally:
            uas.terminate()
            try:
                uas.wait(timeout=5)
            except Exception:  # noqa: BLE001
                uas.kill()

    def soak(self, outcome: Outcome, server: ServerProcess, uas_pid: int | None,
             start: Callable[[float, float], SippRun]) -> None:
        """One long run at a fixed rate (--soak-rate, or half the ramp's highest passing rate), memory sampled."""
        args = self.args
        rate = args.soak_rate
        if not rate:
            best = outcome.max_rate(SOAK_RAMP[args.soak_scenario])
            if best is None:
                outcome.notes.append(f"soak skipped: no passing {SOAK_RAMP[args.soak_scenario]} step to halve")
                print(f"  {outcome.notes[-1]}", flush=True)
                return
            rate = max(1.0, best / 2)
        time.sleep(args.settle)
        print(f"{outcome.server}: soak {args.soak_scenario} at {rate:.0f}/s for {args.soak:.0f}s, sampling every "
              f"{args.soak_interval:.0f}s (drift measured after a {args.soak_warmup:.0f}s warm-up)", flush=True)
        uas_pids = (lambda: procs.tree_pids(uas_pid)) if uas_pid else list
        outcome.soak = run_soak(server, lambda: start(rate, args.soak),
                                SoakResult(args.soak_scenario, rate, args.soak, args.soak_warmup),
                                args.soak_interval, extra_pids=uas_pids,
                                store=self.redis if outcome.kind == "routr-ray" else None)
        self.snapshot(outcome, server, "after soak")
        for line in outcome.soak.summary():
            print(f"  {line}", flush=True)

    def profile_step(self, outcome: Outcome, server: RoutrServer, uas_pid: int | None, scenario: str,
                     run: Callable[[float], SippResult]) -> None:
        """py-spy on every Ray worker during one step of `scenario` at its highest passing rate (or the first)."""
        rate = outcome.max_rate(scenario) or (REGISTER_RATES if scenario.startswith("register") else CALL_RATES)[0]
        out_dir = self.workdir / "profile" / scenario
        out_dir.mkdir(parents=True, exist_ok=True)
        spies = profile.start_py_spy(server.ray_processes(), int(self.args.step_seconds), out_dir)
        if not spies:
            outcome.notes.append("py-spy not found: no profile")
            return
        print(f"{outcome.server}: {scenario} at {rate:.0f}/s under py-spy", flush=True)
        step = self.measure(server, uas_pid, f"{scenario} (profiled)", lambda: run(rate))
        outcome.steps.setdefault(f"{scenario} (profiled)", []).append(step)
        for role, proc, out in spies:
            try:
                proc.wait(timeout=30)
            except Exception:  # noqa: BLE001
                proc.kill()
            cpu = step.roles.get(role, 0.0)
            print(f"  py-spy {role} ({out.name}; {1e6 * cpu / max(step.result.successful, 1):.0f} µs CPU/op):")
            for line in profile.summarise_raw(out):
                print(f"    {line}")

    # ---- everything -------------------------------------------------------------------------------

    def run(self) -> list[Outcome]:
        outcomes = []
        stores = ["memory", "Redis"] if self.args.both_stores else ["Redis" if self.args.redis else "memory"]
        for store in stores:
            outcomes.append(self.run_routr(store))
        self.store = None
        if self.args.vs_kamailio:
            kamailio = KamailioServer(self.workdir, KAMAILIO_PORT)
            try:
                kamailio.start()
                print(f"kamailio ready; load {procs.loadavg()}", flush=True)
                outcomes.append(self.run_server(kamailio, "kamailio", "kamailio", KAMAILIO_PORT,
                                                with_auth_calls=False))
            finally:
                kamailio.stop()
        return outcomes

    def run_routr(self, store: str) -> Outcome:
        """routr-ray with its Location in memory or in a throw-away redis-server of its own."""
        self.store = store
        label = f"routr-ray [Location: {store}]"
        server_dir = self.workdir / "routr-ray" / store
        server_dir.mkdir(parents=True, exist_ok=True)
        routr = None
        try:
            if store == "Redis":
                self.redis = RedisProcess(server_dir)
                self.redis.start()
            routr = RoutrServer(server_dir, self.args.config, ROUTR_PORT, self.redis.url if self.redis else None)
            t0 = time.monotonic()
            routr.start()
            where = f"Redis, redis-server at {self.redis.url}" if self.redis else "memory"
            print(f"routr-ray ready in {time.monotonic() - t0:.0f}s (Location: {where}); load {procs.loadavg()}",
                  flush=True)
            return self.run_server(routr, "routr-ray", label, ROUTR_PORT, with_auth_calls=True)
        finally:
            if routr is not None:
                routr.stop()
            if self.redis is not None:
                self.redis.stop()
                self.redis = None


def report(outcomes: list[Outcome], args: argparse.Namespace) -> None:
    print("\n=== summary (UDP, 127.0.0.1; max rate = highest step with < 1 % failed and ≥ 95 % of target) ===")
    names = {"register-digest": "REGISTER+digest /s", "calls-acl": "calls /s (IP-ACL caller)",
             "calls-digest": "calls /s (digest INVITE)"}
    for outcome in outcomes:
        print(f"{outcome.server}: (idle server CPU {100 * outcome.idle_cpu:.1f}% of a core is included in µs/op)")
        for scenario, label in names.items():
            if scenario not in outcome.steps:
                continue
            best = outcome.best_step(scenario)
            half = outcome.half.get(scenario)
            if best is None:
                print(f"  {label:26} none passed (lowest step: {outcome.steps[scenario][0].line().strip()})")
                continue
            text = (f"  {label:26} {best.result.achieved_rate:8.0f}  server CPU {best.cpu_us_per_call:6.0f} µs/op "
                    f"(load {best.load})")
            if half is not None and half.result.rtts_ms:
                text += (f"; at half rate ({half.result.target_rate:.0f}/s): p50 {half.result.percentile(50):.1f} ms "
                         f"p99 {half.result.percentile(99):.1f} ms, fail {100 * half.result.failed_ratio:.2f}%")
            print(text)
        for when, (rss, pss) in outcome.memory.items():
            print(f"  memory {when:16} RSS {rss / 1024:7.0f} MiB  PSS {pss / 1024:7.0f} MiB (whole process tree)")
        for when, (rss, _pss, keys) in outcome.store_memory.items():
            print(f"  redis-server {when:16} RSS {rss / 1024:7.1f} MiB, {keys if keys is not None else '?'} keys "
                  f"(the Location's store; not in the tree above)")
        best_calls = outcome.best_step("calls-acl")
        if best_calls is not None and best_calls.roles:
            parts = sorted(best_calls.roles.items(), key=lambda kv: -kv[1])[:8]
            share = ", ".join(f"{k} {1e6 * v / max(best_calls.result.successful, 1):.0f}" for k, v in parts)
            print(f"  CPU µs per call by process at {best_calls.result.target_rate:.0f}/s: {share}")
        if outcome.soak is not None:
            for line in outcome.soak.summary():
                print(f"  {line}")
        for note in outcome.notes:
            print(f"  note: {note}")
    theirs = next((o for o in outcomes if o.kind == "kamailio"), None)
    for ours in (o for o in outcomes if o.kind == "routr-ray" and theirs is not None):
        assert theirs is not None
        print(f"ratio {ours.server} / kamailio:")
        for scenario in ("register-digest", "calls-acl"):
            if scenario not in ours.steps or scenario not in theirs.steps:
                continue
            a, b = ours.max_rate(scenario), theirs.max_rate(scenario)
            if a and b:
                sa, sb = ours.best_step(scenario), theirs.best_step(scenario)
                cpu = sa.cpu_us_per_call / sb.cpu_us_per_call if sa and sb else float("nan")
                print(f"  {names[scenario]:26} {a / b:6.3f} of the rate, {cpu:6.1f}× the CPU per operation")
            else:
                print(f"  {names[scenario]:26} n/a (a side has no passing step)")
    print(f"targets (issue 8): REGISTER ≥ 2000/s, calls ≥ 500/s, p99 ≤ 50 ms at half the max rate, "
          f"RSS ±10 % over a 10-minute soak at half the max rate. Files: {args.workdir_used}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vs-kamailio", action="store_true", help="also run Debian's kamailio, print the ratio")
    parser.add_argument("--redis", action="store_true", help="Location in a throw-away redis-server")
    parser.add_argument("--both-stores", action="store_true",
                        help="run routr-ray twice, Location in memory then in Redis, and report both")
    parser.add_argument("--config", type=Path, default=BENCH_DIR / "config")
    parser.add_argument("--only", default="register,calls,calls-digest",
                        help="comma list of register, calls, calls-digest (the ramps), or soak (no ramp)")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=2.0, help="pause between steps (s)")
    parser.add_argument("--hold-ms", type=int, default=1000, help="call hold between ACK and BYE")
    parser.add_argument("--sipp-sockets", choices=("one", "per-call"), default="one",
                        help="SIPp client sockets: one for all calls (-t u1, default), or one per call (-t un: the "
                             "source ports of many phones, which SO_REUSEPORT spreads over EdgePort workers)")
    parser.add_argument("--max-rate", type=float, default=0, help="do not try steps above this rate")
    parser.add_argument("--quick", action="store_true", help="fewer, coarser ramp steps")
    parser.add_argument("--no-half", action="store_true", help="skip the half-rate latency steps")
    parser.add_argument("--idle-seconds", type=float, default=5.0, help="idle CPU baseline before the ramps")
    parser.add_argument("--profile", action="store_true", help="py-spy every Ray worker during one call step")
    parser.add_argument("--trace-uas", action="store_true", help="SIPp -trace_msg on the UAS (slow)")
    parser.add_argument("--workdir", type=Path, help="keep SIPp/server files here (default: a temp dir)")
    soak = parser.add_argument_group("soak (routr-ray only; after the ramps)")
    soak.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                      help="one long SIPp run of this length with RSS/PSS/CPU sampled (issue 8: 600)")
    soak.add_argument("--soak-rate", type=float, default=0.0, metavar="R",
                      help="its rate (default: half the scenario's highest passing ramp rate)")
    soak.add_argument("--soak-scenario", choices=sorted(SOAK_RAMP), default="register")
    soak.add_argument("--soak-interval", type=float, default=15.0, help="seconds between memory samples")
    soak.add_argument("--soak-warmup", type=float, default=60.0,
                      help="drift is measured from the first sample after this many seconds")
    args = parser.parse_args(argv)
    args.only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = args.only - {*RAMPS, "soak"}
    if unknown or not args.only:
        parser.error(f"--only: unknown {', '.join(sorted(unknown)) or 'empty list'}; "
                     f"choose from {', '.join((*RAMPS, 'soak'))}")
    if "soak" in args.only and args.soak <= 0:
        parser.error("--only soak needs --soak SECONDS")
    if args.soak > 0 and not args.soak_rate and args.soak_scenario not in args.only:
        parser.error(f"--soak without the {args.soak_scenario} ramp (--only) needs --soak-rate")
    args.users = count_users(RESOURCES_DIR)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-sip-"))
    workdir.mkdir(parents=True, exist_ok=True)
    args.workdir_used = workdir
    stores = "memory, then Redis" if args.both_stores else "Redis" if args.redis else "memory"
    soak = f", soak {args.soak_scenario} {args.soak:.0f}s" if args.soak > 0 else ""
    print(f"bench_sip: Location {stores}{soak}, {args.users} users, steps of {args.step_seconds:.0f}s, "
          f"hold {args.hold_ms} ms, "
          f"{os.cpu_count()} CPUs, load {procs.loadavg()}, files in {workdir}", flush=True)
    outcomes = Bench(args, workdir).run()
    report(outcomes, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
