"""Running SIPp (Debian ``sip-tester``) and reading its statistics and response times."""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SIPP = "sipp"
SCENARIO_DIR = Path(__file__).resolve().parent.parent / "sipp"
SOCKET_BUFFER = 4 * 1024 * 1024  # perf.md §2: default buffers drop packets on a 50 ms stall


@dataclass
class SippResult:
    """One SIPp client run (one step of a ramp)."""

    target_rate: float
    calls: int                  # calls SIPp was asked to make (-m)
    created: int = 0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    creation_seconds: float = 0.0    # from start until the last call was created
    rtts_ms: list[float] = field(default_factory=list)
    repartition: dict[str, int] = field(default_factory=dict)
    returncode: int = 0
    workdir: Path | None = None

    @property
    def unfinished(self) -> int:
        return max(0, self.calls - self.successful - self.failed)

    @property
    def failed_ratio(self) -> float:
        return (self.failed + self.unfinished) / self.calls if self.calls else 1.0

    @property
    def achieved_rate(self) -> float:
        return self.created / self.creation_seconds if self.creation_seconds > 0 else 0.0

    def passed(self, max_failed: float = 0.01, min_rate_share: float = 0.95) -> bool:
        """perf.md §2: < 1 % failed and ≥ 95 % of the target rate achieved."""
        return self.failed_ratio < max_failed and self.achieved_rate >= min_rate_share * self.target_rate

    def percentile(self, q: float) -> float | None:
        if not self.rtts_ms:
            return None
        ordered = sorted(self.rtts_ms)
        return ordered[min(len(ordered) - 1, int(q / 100.0 * len(ordered)))]


def _epoch(cell: str) -> float:
    # "2026-11-26\t04:34:52.411038\t1795667692.411038"
    return float(cell.split("\t")[-1])


def parse_stat_csv(path: Path, result: SippResult) -> None:
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    if len(lines) < 2:
        return
    header = lines[0].split(";")
    rows = [dict(zip(header, line.split(";"), strict=False)) for line in lines[1:]]
    last = rows[-1]

    def count(row: dict[str, str], name: str) -> int:
        try:
            return int(row.get(name, "0") or 0)
        except ValueError:
            return 0

    result.created = count(last, "TotalCallCreated")
    result.successful = count(last, "SuccessfulCall(C)")
    result.failed = count(last, "FailedCall(C)")
    result.retransmissions = count(last, "Retransmissions(C)")
    start = _epoch(last["StartTime"])
    done = next((r for r in rows if count(r, "TotalCallCreated") >= result.created), last)
    # the dump after the last creation is up to one period (1 s) late: interpolate from the previous dump, at the
    # creation rate of the last full period before it (the last period may hold only a few calls, made at its start)
    index = rows.index(done)
    if index > 0:
        before = rows[index - 1]
        made_before = count(before, "TotalCallCreated")
        t0, t1 = _epoch(before["CurrentTime"]), _epoch(done["CurrentTime"])
        steady = rows[index - 2] if index > 1 else None
        if steady is not None and t0 > _epoch(steady["CurrentTime"]):
            rate = (made_before - count(steady, "TotalCallCreated")) / (t0 - _epoch(steady["CurrentTime"]))
        else:
            rate = (count(done, "TotalCallCreated") - made_before) / (t1 - t0) if t1 > t0 else 0
        end = min(t1, t0 + (result.created - made_before) / rate) if rate > 0 else t1
    else:
        end = _epoch(done["CurrentTime"])
    result.creation_seconds = max(end - start, 1e-3)
    result.repartition = {
        name.split("_", 1)[1]: count(last, name) for name in header
        if name.startswith("ResponseTimeRepartition1_")
    }


def parse_rtt_csv(path: Path) -> list[float]:
    """`-trace_rtt` lines: date_ms;response_time_ms;rtd_no."""
    values = []
    for line in path.read_text(errors="replace").splitlines()[1:]:
        parts = line.split(";")
        if len(parts) >= 2:
            try:
                values.append(float(parts[1]))
            except ValueError:
                continue
    return values


def sipp_timeout_seconds(seconds: float, hold_ms: int | None) -> int:
    """SIPp's own `-timeout` for a run meant to create calls for `seconds`: a late run (up to 25 % slow) still
    ends by itself, whether it is a 10 s ramp step or a 10-minute soak."""
    return int(seconds * 1.25 + 20 + (hold_ms or 0) / 1000)


def last_stat_row(path: Path) -> dict[str, str]:
    """The newest complete row of a SIPp `-trace_stat` file that SIPp may be writing right now."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    header = lines[0].split(";")
    for line in reversed(lines[1:]):
        cells = line.split(";")
        if len(cells) >= len(header) - 1:
            return dict(zip(header, cells, strict=False))
    return {}


@dataclass
class SippRun:
    """One SIPp client process, started and not yet waited for."""

    proc: subprocess.Popen[bytes]
    result: SippResult
    deadline: float          # time.monotonic() after which it is killed
    run_dir: Path

    def poll(self) -> int | None:
        return self.proc.poll()

    def progress(self) -> tuple[int, int]:
        """(successful, failed) calls so far, from the statistics SIPp dumps every second."""
        row = last_stat_row(self.run_dir / "stat.csv")

        def count(name: str) -> int:
            try:
                return int(row.get(name, "0") or 0)
            except ValueError:
                return 0

        return count("SuccessfulCall(C)"), count("FailedCall(C)")

    def wait(self) -> SippResult:
        try:
            self.result.returncode = self.proc.wait(timeout=max(0.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.result.returncode = self.proc.wait()
        if (self.run_dir / "stat.csv").exists():
            parse_stat_csv(self.run_dir / "stat.csv", self.result)
        for rtt in self.run_dir.glob("*_rtt.csv"):
            self.result.rtts_ms.extend(parse_rtt_csv(rtt))
        return self.result


@dataclass
class SippClient:
    """Where and how to drive one server."""

    server: str                      # host:port
    local_port: int
    workdir: Path
    socket_per_call: bool = False    # SIPp -t un: each call from its own port (spreads over EdgePort workers)

    def run(
        self,
        scenario: str,
        rate: float,
        seconds: float,
        *,
        inf: Path | None = None,
        service: str | None = None,
        hold_ms: int | None = None,
        trace_msg: bool = False,
        name: str = "",
    ) -> SippResult:
        """Runs `scenario` at `rate` for `seconds` and waits for it."""
        return self.start(scenario, rate, seconds, inf=inf, service=service, hold_ms=hold_ms,
                          trace_msg=trace_msg, name=name).wait()

    def start(
        self,
        scenario: str,
        rate: float,
        seconds: float,
        *,
        inf: Path | None = None,
        service: str | None = None,
        hold_ms: int | None = None,
        trace_msg: bool = False,
        name: str = "",
    ) -> SippRun:
        """Starts `scenario` at `rate` for `seconds` (rate × seconds calls; an injection file cycles)."""
        calls = max(1, int(rate * seconds))
        run_dir = self.workdir / f"{name or Path(scenario).stem}-{int(rate)}-{time.monotonic_ns()}"
        run_dir.mkdir(parents=True)
        scenario_file = run_dir / Path(scenario).name
        shutil.copy(SCENARIO_DIR / scenario, scenario_file)
        # calls in flight are bounded so that a stalled server cannot make SIPp allocate without limit
        limit = max(50, int(rate * (5 + (hold_ms or 0) / 1000)))
        timeout = sipp_timeout_seconds(seconds, hold_ms)
        args = [
            SIPP, self.server, "-sf", scenario_file.name, "-i", "127.0.0.1", "-p", str(self.local_port),
            "-r", str(int(rate)), "-rp", "1000", "-m", str(calls), "-l", str(limit),
            "-nostdin", "-buff_size", str(SOCKET_BUFFER), "-max_recv_loops", "10000",
            "-trace_stat", "-stf", "stat.csv", "-fd", "1",
            "-trace_rtt", "-rtt_freq", "100", "-trace_err",
            "-recv_timeout", "5000", "-timeout", f"{timeout}s",
        ]
        if self.socket_per_call:
            args += ["-t", "un", "-max_socket", "15000"]  # a socket (source port) per call, as many phones
        if inf is not None:
            args += ["-inf", str(inf)]
        if service is not None:
            args += ["-s", service]
        if hold_ms is not None:
            args += ["-d", str(hold_ms)]
        if trace_msg:
            args += ["-trace_msg"]
        with open(run_dir / "sipp.out", "wb") as out:
            proc = subprocess.Popen(args, cwd=run_dir, stdout=out, stderr=subprocess.STDOUT)
        result = SippResult(target_rate=rate, calls=calls, workdir=run_dir)
        # SIPp stops itself at -timeout; the kill is for a SIPp that hangs past it
        return SippRun(proc, result, time.monotonic() + timeout + 40, run_dir)


def start_uas(workdir: Path, port: int, trace_msg: bool = False) -> subprocess.Popen[bytes]:
    """The callee: ``uas_proxy.xml`` on 127.0.0.1:`port` until killed."""
    run_dir = workdir / f"uas-{port}"
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copy(SCENARIO_DIR / "uas_proxy.xml", run_dir / "uas_proxy.xml")
    args = [SIPP, "-sf", "uas_proxy.xml", "-i", "127.0.0.1", "-p", str(port), "-nostdin",
            "-buff_size", str(SOCKET_BUFFER), "-max_recv_loops", "10000", "-trace_err"]
    if trace_msg:
        args.append("-trace_msg")
    out = open(run_dir / "sipp.out", "wb")  # noqa: SIM115 - closed with the process by the caller's stop
    return subprocess.Popen(args, cwd=run_dir, stdout=out, stderr=subprocess.STDOUT)
