"""Where the server's CPU goes: per-process CPU by Ray role, and py-spy's raw stacks summarised."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

from sipbench import procs


def role_of(cmd: str) -> str:
    if cmd.startswith("ray::"):
        return cmd.split()[0][5:]
    for name in ("raylet", "gcs_server", "routr-ray", "dashboard", "log_monitor", "kamailio", "redis-server"):
        if name in cmd:
            return name
    return cmd.split()[0].rsplit("/", 1)[-1] if cmd else "?"


def cpu_by_role(pids: list[int]) -> dict[str, float]:
    by_role: Counter[str] = Counter()
    for pid in pids:
        by_role[role_of(procs.command_line(pid))] += procs.cpu_seconds([pid])
    return dict(by_role)


def start_py_spy(pids: dict[str, list[int]], seconds: int, out_dir: Path) -> list[tuple[str, subprocess.Popen[bytes], Path]]:
    """py-spy record on each listed process: raw collapsed stacks, only samples holding the GIL (Python CPU)."""
    binary = shutil.which("py-spy")
    if binary is None:
        return []
    started = []
    for role, role_pids in pids.items():
        for pid in role_pids:
            out = out_dir / f"pyspy-{role.replace(':', '_')}-{pid}.txt"
            proc = subprocess.Popen(
                [binary, "record", "-p", str(pid), "-d", str(seconds), "-r", "200", "--gil", "--format", "raw",
                 "--nonblocking", "-o", str(out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            started.append((role, proc, out))
    return started


def summarise_raw(path: Path, top: int = 12) -> list[str]:
    """Top functions by inclusive and self samples from py-spy's collapsed-stack output."""
    if not path.exists():
        return ["(no py-spy output)"]
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        frames = stack.split(";")
        total += count
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += count
    if not total:
        return ["(no samples)"]
    lines = [f"{total} samples; self:"]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in own.most_common(top)]
    lines.append("  inclusive (routr_ray frames):")
    ours = [(name, n) for name, n in inclusive.most_common() if "routr_ray" in name]
    lines += [f"    {100 * n / total:5.1f}%  {name}" for name, n in ours[:top]]
    return lines


def _short(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (routr_ray/x/y.py)"
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("routr_ray/", "site-packages/", "lib/python3"):
        if marker in where:
            where = where[where.index(marker):]
            break
    return f"{name} ({where})" if where else name
