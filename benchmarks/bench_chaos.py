"""Chaos benchmark (issue 18 item 6): SIPp calls and REGISTERs at a steady rate while one component is disrupted.

    scripts/in-netns python benchmarks/bench_chaos.py [--seconds 120] [--call-rate 50] [--register-rate 200]
        [--replicas 2] [--phases baseline,kill-connect,kill-shard,kill-dispatcher,rolling-update,edge-config,scale]
        [--memory] [--workdir DIR]

Starts a throw-away redis-server and `routr-ray run --config <copy of benchmarks/config> --redis URL` (UDP 5160;
Connect at ``--replicas`` replicas: ``autoscaling: {minReplicas: N, maxReplicas: N}`` in the copy's
dispatcher.yaml), registers every benchmark user (``Expires: 3600``) and the SIPp UAS callee, then runs each phase:

* SIPp calls INVITE…BYE through the proxy (``uac_proxy.xml``, trusted caller, ``--hold-ms``) at ``--call-rate`` and
  REGISTERs with digest (``register_auth.xml``, the same users again) at ``--register-rate``, both for
  ``--seconds``;
* at ``--disrupt-at`` of the phase (a share of ``--seconds``) the phase's disruption:

  ========================  ===============================================================================
  ``baseline``              nothing
  ``kill-connect``          SIGKILL to one Connect replica process (Serve starts another)
  ``kill-shard``            SIGKILL to one Location shard process (Ray restarts it; it reloads from Redis)
  ``kill-dispatcher``       SIGKILL to the dispatcher replica process
  ``kill-edgeport``         SIGKILL to the EdgePort actor process (Ray restarts it on the same port)
  ``rolling-update``        ``routr-ray deploy`` of the same config with ``ROUTR_RAY_RELEASE`` changed: every
                            processor and the dispatcher get a new version, as new code would (Serve's rolling
                            update)
  ``edge-config``           edgeport.yaml's rate limit and ACL changed, then ``routr-ray deploy``
  ``scale``                 Connect to ``--replicas`` + 1 replicas at the disruption, back at two thirds
  ``redeploy``              ``routr-ray deploy`` of the config unchanged (what a deploy's own work costs)
  ``join``                  a Ray driver joins the cluster, runs one task, waits 10 s and leaves (what any
                            ``routr-ray deploy`` costs the running server before it changes anything)
  ========================  ===============================================================================

and prints, per phase: calls and REGISTERs made, failed share (failed + unfinished), p50/p99 of INVITE → 200 and
of REGISTER → 200, and **lost bindings**: the users (and the UAS) registered before the phase that Location no
longer finds after it (FindRoutes on its gRPC API, 127.0.0.1:52902). The issue's target: < 1 % failed calls and
0 lost bindings in every phase. Every process it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sipbench import procs  # noqa: E402
from sipbench.profile import role_of  # noqa: E402
from sipbench.resources import UAS_USER, count_users, uas_csv, user_name, users_csv  # noqa: E402
from sipbench.servers import BENCH_DIR, RedisProcess, RoutrServer  # noqa: E402
from sipbench.sipp import SippClient, SippResult, start_uas  # noqa: E402

ROUTR_PORT = 5160          # benchmarks/config/edgeport.yaml
LOCATION_ADDR = "127.0.0.1:52902"  # benchmarks/config/location.yaml
CALLS_PORT, REGISTER_PORT, UAS_PORT, PRELOAD_PORT = 5261, 5262, 5280, 5263
PHASES = ("baseline", "kill-connect", "kill-shard", "kill-dispatcher", "kill-edgeport", "rolling-update",
          "edge-config", "scale", "join", "redeploy")
DEFAULT_PHASES = ("baseline", "kill-connect", "kill-shard", "rolling-update", "edge-config", "scale")


@dataclass
class Phase:
    name: str
    calls: SippResult
    registers: SippResult
    lost: list[str] = field(default_factory=list)
    checked: int = 0
    events: list[str] = field(default_factory=list)

    def line(self) -> str:
        def part(label: str, r: SippResult) -> str:
            p50, p99 = r.percentile(50), r.percentile(99)
            lat = f"p50 {p50:6.1f} p99 {p99:7.1f} ms" if p50 is not None and p99 is not None else "p50 - p99 -"
            return (f"{label} {r.successful:>6}/{r.calls:<6} failed {100 * r.failed_ratio:5.2f}% "
                    f"(retr {r.retransmissions}) {lat}")

        return (f"{self.name:<16} {part('calls', self.calls)} | {part('REGISTER', self.registers)} | "
                f"lost bindings {len(self.lost)}/{self.checked}")


def location_missing(aors: list[str], timeout: float = 5.0) -> list[str]:
    """The AORs Location's gRPC API finds no route for (an unreachable API counts every one as missing)."""
    import grpc

    from routr_ray.proto.gen import location_pb2, location_pb2_grpc

    missing = []
    with grpc.insecure_channel(LOCATION_ADDR) as channel:
        stub = location_pb2_grpc.LocationStub(channel)
        for aor in aors:
            try:
                found = stub.FindRoutes(location_pb2.FindRoutesRequest(aor=aor), timeout=timeout)
            except grpc.RpcError:
                missing.append(aor)
                continue
            if not found.routes:
                missing.append(aor)
    return missing


class Chaos:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.config = workdir / "config"
        self.users_file = workdir / "users.csv"
        self.users_file.write_text(users_csv(args.users))
        self.uas_file = workdir / "uas.csv"
        self.uas_file.write_text(uas_csv())
        self.aors = [f"sip:{user_name(i)}@127.0.0.1" for i in range(args.users)] + [f"sip:{UAS_USER}@127.0.0.1"]
        self.redis: RedisProcess | None = None
        self.server: RoutrServer | None = None
        self.release = 0
        self.deploys = 0

    # ---- configuration ----------------------------------------------------------------------------

    def write_config(self, replicas: int) -> None:
        """benchmarks/config copied once, with Connect at ``replicas`` replicas."""
        if not self.config.exists():
            shutil.copytree(self.args.config, self.config)  # resources/ is a symlink: its files are copied
        path = self.config / "dispatcher.yaml"
        document = yaml.safe_load(path.read_text())
        for entry in document["spec"]["processors"]:
            if entry["addr"] == "serve://connect":
                entry["autoscaling"] = {"minReplicas": replicas, "maxReplicas": replicas}
        path.write_text(yaml.safe_dump(document, sort_keys=False))

    def change_edge_config(self) -> None:
        path = self.config / "edgeport.yaml"
        document = yaml.safe_load(path.read_text())
        spec = document["spec"]
        spec["rateLimit"]["requestsPerSecond"] = int(spec["rateLimit"]["requestsPerSecond"]) + 50
        spec["accessControlList"]["deny"] = [*spec["accessControlList"].get("deny", []), "198.51.100.0/24"]
        path.write_text(yaml.safe_dump(document, sort_keys=False))

    def ray_address(self) -> str:
        assert self.server is not None
        for line in self.server.log_path.read_text(errors="replace").splitlines():
            if line.strip().startswith("Ray address"):
                return line.split()[-1]
        raise RuntimeError(f"no Ray address in {self.server.log_path}")

    def deploy(self, **env: str) -> str:
        """``routr-ray deploy`` of the config directory onto the running cluster; how it went, where its output is."""
        if self.release and "ROUTR_RAY_RELEASE" not in env:  # the release rolled out stays: no roll back
            env["ROUTR_RAY_RELEASE"] = f"chaos-{self.release}"
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "routr_ray.cli", "deploy", "--address", self.ray_address(), str(self.config)],
            capture_output=True, text=True, timeout=300, env={**os.environ, **env},
        )
        self.deploys += 1
        log = self.workdir / f"deploy-{self.deploys}.log"
        log.write_text(done.stdout + done.stderr)
        return f"deploy exit {done.returncode} after {time.monotonic() - started:.1f}s (output: {log})"

    def join(self) -> str:
        """A bare Ray driver on the cluster: one task, 10 s, gone."""
        started = time.monotonic()
        address = self.ray_address()
        code = (f"import ray, time; ray.init(address={address!r}, logging_level='ERROR'); "
                "ray.get(ray.remote(lambda: 1).remote()); time.sleep(10); ray.shutdown()")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        return f"a Ray driver joined and left: exit {done.returncode} after {time.monotonic() - started:.1f}s"

    # ---- disruptions ------------------------------------------------------------------------------

    def kill_role(self, match: Callable[[str], bool], what: str) -> str:
        assert self.server is not None
        for pid in self.server.pids():
            cmd = procs.command_line(pid)
            if cmd.startswith("ray::") and match(role_of(cmd)):
                os.kill(pid, signal.SIGKILL)
                return f"SIGKILL {what} (pid {pid}, {role_of(cmd)})"
        return f"no {what} process found"

    def disrupt(self, phase: str, at: float, seconds: float) -> list[str]:
        """Runs ``phase``'s disruption ``at`` seconds into the phase; the lines that say what was done."""
        events: list[str] = []
        time.sleep(at)
        started = time.monotonic()

        def note(text: str) -> None:
            events.append(f"t+{at + time.monotonic() - started:5.1f}s {text}")

        if phase == "kill-connect":
            note(self.kill_role(lambda r: "connect" in r.lower(), "a Connect replica"))
        elif phase == "kill-shard":
            note(self.kill_role(lambda r: "shard" in r.lower(), "a Location shard"))
        elif phase == "kill-dispatcher":
            note(self.kill_role(lambda r: "dispatcher" in r.lower(), "the dispatcher replica"))
        elif phase == "kill-edgeport":
            note(self.kill_role(lambda r: "edgeport" in r.lower(), "the EdgePort"))
        elif phase == "rolling-update":
            self.release += 1
            note(self.deploy(ROUTR_RAY_RELEASE=f"chaos-{self.release}"))
        elif phase == "edge-config":
            self.change_edge_config()
            note(self.deploy())
        elif phase == "redeploy":
            note(self.deploy())
        elif phase == "join":
            note(self.join())
        elif phase == "scale":
            self.write_config(self.args.replicas + 1)
            note(f"Connect to {self.args.replicas + 1} replicas: " + self.deploy())
            time.sleep(max(0.0, seconds / 3))
            self.write_config(self.args.replicas)
            note(f"Connect back to {self.args.replicas} replicas: " + self.deploy())
        return events

    # ---- the run ----------------------------------------------------------------------------------

    def start(self) -> None:
        self.write_config(self.args.replicas)
        if not self.args.memory:
            self.redis = RedisProcess(self.workdir)
            self.redis.start()
            redis_url = self.redis.url
            # in the copy's location.yaml (not `run --redis`): `routr-ray deploy` reads the same store from it
            path = self.config / "location.yaml"
            document = yaml.safe_load(path.read_text())
            document["spec"]["cache"] = {"provider": "redis", "parameters": redis_url}
            path.write_text(yaml.safe_dump(document, sort_keys=False))
        self.server = RoutrServer(self.workdir, self.config, ROUTR_PORT,
                                  extra_args=("--log-dir", str(self.workdir / "ray-logs")))
        t0 = time.monotonic()
        self.server.start()
        print(f"routr-ray ready in {time.monotonic() - t0:.1f}s (Location: {'memory' if self.args.memory else 'Redis'}"
              f", Connect replicas: {self.args.replicas}); log {self.server.log_path}", flush=True)

    def preload(self) -> None:
        client = SippClient(f"127.0.0.1:{ROUTR_PORT}", PRELOAD_PORT, self.workdir / "preload")
        rate = 200.0
        result = client.run("register_auth.xml", rate, self.args.users / rate, inf=self.users_file, name="preload")
        uas = SippClient(f"127.0.0.1:{ROUTR_PORT}", UAS_PORT, self.workdir / "preload").run(
            "register_auth.xml", 1, 1, inf=self.uas_file, name="register-uas")
        missing = location_missing(self.aors)
        print(f"preload: {result.successful}/{result.calls} users and {uas.successful}/1 UAS registered; "
              f"Location finds {len(self.aors) - len(missing)}/{len(self.aors)}", flush=True)
        self.aors = [aor for aor in self.aors if aor not in set(missing)]

    def phase(self, name: str) -> Phase:
        args = self.args
        files = self.workdir / name
        calls = SippClient(f"127.0.0.1:{ROUTR_PORT}", CALLS_PORT, files).start(
            "uac_proxy.xml", args.call_rate, args.seconds, service=UAS_USER, hold_ms=args.hold_ms, name="calls")
        registers = SippClient(f"127.0.0.1:{ROUTR_PORT}", REGISTER_PORT, files).start(
            "register_auth.xml", args.register_rate, args.seconds, inf=self.users_file, name="register")
        events: list[str] = []
        worker = threading.Thread(
            target=lambda: events.extend(self.disrupt(name, args.disrupt_at * args.seconds, args.seconds)),
            daemon=True)
        worker.start()
        call_result, register_result = calls.wait(), registers.wait()
        worker.join(timeout=600)
        lost = location_missing(self.aors)
        return Phase(name, call_result, register_result, lost, len(self.aors), events)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        if self.redis is not None:
            self.redis.stop()

    def run(self) -> list[Phase]:
        results = []
        self.start()
        uas = None
        try:
            self.preload()  # registers the UAS from its port: SIPp's UAS starts listening there after
            uas = start_uas(self.workdir, UAS_PORT)
            time.sleep(0.5)
            for name in self.args.phases:
                print(f"phase {name}: {self.args.call_rate:.0f} calls/s + {self.args.register_rate:.0f} "
                      f"REGISTER/s for {self.args.seconds:.0f}s", flush=True)
                result = self.phase(name)
                for event in result.events:
                    print(f"  {event}", flush=True)
                print(f"  {result.line()}", flush=True)
                if result.lost:
                    print(f"  lost: {', '.join(result.lost[:10])}{' …' if len(result.lost) > 10 else ''}")
                results.append(result)
                time.sleep(self.args.settle)
        finally:
            if uas is not None:
                uas.terminate()
                try:
                    uas.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    uas.kill()
            self.stop()
        return results


def summary(results: list[Phase], args: argparse.Namespace) -> list[str]:
    lines = [f"chaos: {args.call_rate:.0f} calls/s + {args.register_rate:.0f} REGISTER/s, {args.seconds:.0f}s per "
             f"phase, Connect replicas {args.replicas}, Location {'memory' if args.memory else 'Redis'}; "
             "target < 1 % failed calls, 0 lost bindings"]
    for result in results:
        ok = result.calls.failed_ratio < 0.01 and not result.lost
        lines.append(f"  {result.line()}  {'PASS' if ok else 'FAIL'}")
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=BENCH_DIR / "config")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of each phase")
    parser.add_argument("--call-rate", type=float, default=50.0)
    parser.add_argument("--register-rate", type=float, default=200.0)
    parser.add_argument("--hold-ms", type=int, default=1000, help="call hold between ACK and BYE")
    parser.add_argument("--replicas", type=int, default=2, help="Connect replicas")
    parser.add_argument("--users", type=int, default=0, help="users to register (default: the resource set's)")
    parser.add_argument("--phases", default=",".join(DEFAULT_PHASES),
                        help=f"comma-separated, in order; known: {','.join(PHASES)}")
    parser.add_argument("--disrupt-at", type=float, default=1 / 3, help="share of the phase before the disruption")
    parser.add_argument("--settle", type=float, default=5.0, help="pause between phases (s)")
    parser.add_argument("--memory", action="store_true", help="memory Location instead of Redis (bindings die "
                        "with a shard)")
    parser.add_argument("--workdir", type=Path, help="keep SIPp/server files here (default: a temp dir)")
    args = parser.parse_args(argv)
    args.phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = [p for p in args.phases if p not in PHASES]
    if unknown:
        parser.error(f"unknown phase(s) {unknown}; known: {', '.join(PHASES)}")
    available = count_users(args.config / "resources")
    args.users = min(args.users or available, available)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.environ.get("ROUTR_RAY_IN_NETNS") != "1":
        print("run it inside scripts/in-netns: Ray binds every interface", file=sys.stderr)
        return 2
    # the server and every `routr-ray deploy` onto it run without Ray's token auth, as the test suites do (inside
    # the loopback-only namespace of scripts/in-netns)
    os.environ["RAY_AUTH_MODE"] = "disabled"
    with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        results = Chaos(args, workdir).run()
    print()
    for line in summary(results, args):
        print(line)
    failed = [r for r in results if r.calls.failed_ratio >= 0.01 or r.lost]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
