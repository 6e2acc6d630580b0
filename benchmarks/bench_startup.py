"""Start-to-ready of ``routr-ray run``: seconds from the command's start until a REGISTER with digest gets 200.

    scripts/in-netns python3 benchmarks/bench_startup.py [--runs 3] [--config config] [--modes no-dashboard,dashboard]

Each run starts ``routr-ray run --config DIR`` (with ``--no-dashboard`` in that mode) in its own session and,
from the moment it is started, sends every ``--interval`` seconds an OPTIONS to the EdgePort itself and a
REGISTER of 1001@sip.local (password 1234, the example agent) that answers the 401 challenge; it records when the
first OPTIONS got 200, when the first REGISTER with digest got 200 and when the command printed "ready", then
stops the server (SIGTERM) and waits for it to exit. After "ready" is printed one more REGISTER is sent at once:
``honest`` says whether it got 200 (it must: "ready" means a REGISTER succeeds). Where a cgroup v1 ``cpuacct``
hierarchy is writable (Linux, root), each run's process tree is put in a cgroup of its own and ``cpu`` is the CPU
time it used until the first REGISTER got 200: on a shared machine that figure moves much less than wall time.
``load`` is the 1-minute load average when the run ended. ``--floor`` also times a bare local Ray + Serve app with
one trivial replica (``ray.init``, ``serve.start``, ``serve.run``): what any Serve app pays on the same machine.
Prints one line per run and the min / median per mode.
Ray binds every interface: run it inside ``scripts/in-netns`` (the ports of the config must be free there).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
CPUACCT = Path("/sys/fs/cgroup/cpuacct")

from tests.support.probes import options_ping, register_with_digest  # noqa: E402


@dataclass
class Run:
    mode: str
    ready_printed: float | None = None  # seconds after the start
    options_200: float | None = None
    register_200: float | None = None
    honest: bool | None = None  # a REGISTER sent right after "ready" got 200
    stopped_in: float | None = None
    cpu: float | None = None  # CPU seconds of the run's process tree until the REGISTER got 200
    load: float | None = None


class CpuGroup:
    """A cgroup v1 cpuacct group for one run (None where that cannot be made)."""

    def __init__(self) -> None:
        self.path: Path | None = CPUACCT / f"routr-bench-{uuid.uuid4().hex[:8]}"
        try:
            self.path.mkdir()
        except OSError:
            self.path = None

    def wrap(self, args: list[str]) -> list[str]:
        if self.path is None:
            return args
        return ["sh", "-c", f'echo $$ > {self.path}/cgroup.procs && exec "$@"', "sh", *args]

    def seconds(self) -> float | None:
        if self.path is None:
            return None
        return int((self.path / "cpuacct.usage").read_text()) / 1e9

    def remove(self) -> None:
        if self.path is not None:
            for _ in range(50):  # empty once every process of the run has exited
                try:
                    self.path.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)


def _watch_output(process: subprocess.Popen[bytes], started: float, run: Run, log: list[str]) -> None:
    assert process.stdout is not None
    for raw in process.stdout:
        line = raw.decode(errors="replace")
        log.append(line)
        if run.ready_printed is None and "is ready in" in line:
            run.ready_printed = time.monotonic() - started


def _status(line: bytes | None) -> int | None:
    if not line:
        return None
    parts = line.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def one_run(config: Path, mode: str, port: int, interval: float, timeout: float, code: Path = REPO) -> Run:
    run = Run(mode)
    args = [sys.executable, "-m", "routr_ray.cli", "run", "--config", str(config.resolve())]
    if mode == "no-dashboard":
        args.append("--no-dashboard")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(code)}
    log: list[str] = []
    group = CpuGroup()
    started = time.monotonic()
    process = subprocess.Popen(group.wrap(args), cwd=code, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True)
    reader = threading.Thread(target=_watch_output, args=(process, started, run, log), daemon=True)
    reader.start()
    try:
        while time.monotonic() - started < timeout and process.poll() is None:
            tick = time.monotonic()
            if run.options_200 is None:
                try:
                    if _status(options_ping(port, timeout=interval)) == 200:
                        run.options_200 = time.monotonic() - started
                except OSError:  # ICMP port unreachable: nothing listens yet
                    pass
            if run.register_200 is None:
                try:
                    if register_with_digest(port, timeout=interval) == 200:
                        run.register_200 = time.monotonic() - started
                        run.cpu = group.seconds()
                except OSError:
                    pass
            if run.ready_printed is not None and run.honest is None:
                try:
                    run.honest = register_with_digest(port, timeout=2.0) == 200
                except OSError:
                    run.honest = False
            if run.register_200 is not None and run.options_200 is not None and run.honest is not None:
                break
            time.sleep(max(0.0, interval - (time.monotonic() - tick)))
    finally:
        run.load = os.getloadavg()[0]
        stopping = time.monotonic()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
            run.stopped_in = time.monotonic() - stopping
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        reader.join(timeout=5)
        group.remove()
    if run.register_200 is None:
        print("".join(log[-40:]), file=sys.stderr)
    return run


FLOOR = """
import shutil, tempfile, time
t0 = time.monotonic()
import ray
from ray import serve
temp = tempfile.mkdtemp(prefix="routr-floor-", dir="/tmp")
ray.init(include_dashboard=DASHBOARD, _temp_dir=temp, log_to_driver=False, configure_logging=False)
@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Hello:
    async def __call__(self) -> int:
        return 1
serve.start(http_options={"host": "127.0.0.1", "port": 0})
serve.run(Hello.bind(), name="floor", route_prefix="/floor")
print(f"FLOOR {time.monotonic() - t0:.2f}", flush=True)
ray.shutdown()
shutil.rmtree(temp, ignore_errors=True)
"""


def floor_run(mode: str) -> float | None:
    """Seconds for a bare local Ray + Serve with one trivial replica (what any Serve app pays on this machine)."""
    code = FLOOR.replace("DASHBOARD", "False" if mode == "no-dashboard" else "True")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    for line in out.stdout.splitlines():
        if line.startswith("FLOOR "):
            return float(line.split()[1])
    print(out.stderr[-2000:], file=sys.stderr)
    return None


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--config", type=Path, default=REPO / "config")
    parser.add_argument("--modes", default="no-dashboard,dashboard")
    parser.add_argument("--port", type=int, default=5060, help="the EdgePort's UDP port in the config")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between probes")
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--floor", action="store_true",
                        help="also time a bare Ray + Serve app with one trivial replica, per mode (the floor)")
    parser.add_argument("--code", type=Path, action="append",
                        help="a routr-ray source tree to run (PYTHONPATH); several: their runs alternate, so that "
                        "the load of a shared machine falls on each alike (default: this repository)")
    args = parser.parse_args()
    if os.environ.get("ROUTR_RAY_IN_NETNS") != "1":
        sys.exit("run inside scripts/in-netns: Ray binds every interface")
    codes: list[Path] = args.code or [REPO]
    results: dict[str, list[Run]] = {}
    print(f"{'mode':<24} {'run':>3} {'ready':>7} {'OPTIONS':>7} {'REGISTER':>8} {'honest':>6} {'stop':>6} "
          f"{'cpu':>6} {'load':>5}")
    for mode in args.modes.split(","):
        for i in range(args.runs):
            for code in codes:
                label = mode if len(codes) == 1 else f"{mode}@{code.name}"
                run = one_run(args.config, mode, args.port, args.interval, args.timeout, code.resolve())
                results.setdefault(label, []).append(run)
                print(f"{label:<24} {i + 1:>3} {_fmt(run.ready_printed)}  {_fmt(run.options_200)}  "
                      f"{_fmt(run.register_200)}   {run.honest!s:>5} {_fmt(run.stopped_in)} {_fmt(run.cpu)} "
                      f"{run.load or 0:5.1f}", flush=True)
    floors: dict[str, list[float]] = {}
    if args.floor:
        for mode in args.modes.split(","):
            for _ in range(args.runs):
                seconds = floor_run(mode)
                if seconds is not None:
                    floors.setdefault(mode, []).append(seconds)
                print(f"{'floor ' + mode:<24}     {_fmt(seconds)}", flush=True)
    print()
    print("start-to-ready (s, first REGISTER with digest answered 200):")
    for mode, runs in results.items():
        times = [r.register_200 for r in runs if r.register_200 is not None]
        printed = [r.ready_printed for r in runs if r.ready_printed is not None]
        if not times:
            print(f"  {mode:<24} no run became ready")
            continue
        cpus = [r.cpu for r in runs if r.cpu is not None]
        cpu = f"; CPU median {statistics.median(cpus):.1f} s" if cpus else ""
        print(f"  {mode:<24} min {min(times):5.1f}  median {statistics.median(times):5.1f}  "
              f"(\"ready\" printed: median {statistics.median(printed) if printed else float('nan'):5.1f}; "
              f"{sum(1 for r in runs if r.honest)}/{len(runs)} honest{cpu})")
    for mode, seconds in floors.items():
        print(f"  {'floor ' + mode:<24} min {min(seconds):5.1f}  median {statistics.median(seconds):5.1f}  "
              "(bare Ray + Serve, one trivial replica)")


if __name__ == "__main__":
    main()
