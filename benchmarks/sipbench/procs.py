"""Processes seen through /proc: a process tree's CPU time and memory, machine load, free ports, stopping."""

from __future__ import annotations

import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcId:
    """A pid plus its start time, so that a recycled pid is never mistaken for ours."""

    pid: int
    start: int


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return text[text.rindex(")") + 2:].split()


def children_map() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def tree_pids(root: int) -> list[int]:
    """`root` and all its descendants (by parent pid) that are alive now."""
    tree = children_map()
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(tree.get(pid, ()))
    return found


def proc_ids(pids: list[int]) -> list[ProcId]:
    ids = []
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ids.append(ProcId(pid, int(fields[19])))
    return ids


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime (+ reaped children's) of these processes, in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            ticks += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / CLOCK_TICKS


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """(RSS, PSS) in KiB summed over the processes (PSS shares shared pages fairly between them)."""
    rss = pss = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("Rss:"):
                rss += int(line.split()[1])
            elif line.startswith("Pss:"):
                pss += int(line.split()[1])
    return rss, pss


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_busy_seconds() -> float:
    """CPU seconds spent not idle by the whole machine (all cores) since boot."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def kill_ids(ids: list[ProcId], sig: int = signal.SIGKILL) -> int:
    """Send `sig` to each listed process that is still the same process; returns how many were signalled."""
    sent = 0
    for proc in ids:
        fields = _stat_fields(proc.pid)
        if fields is None or int(fields[19]) != proc.start:
            continue
        try:
            os.kill(proc.pid, sig)
            sent += 1
        except ProcessLookupError:
            pass
    return sent


def wait_gone(ids: list[ProcId], timeout: float) -> list[ProcId]:
    """Waits until none of `ids` is alive (zombies count as gone); returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = ids
    while True:
        alive = [p for p in alive if _alive(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.1)


def _alive(proc: ProcId) -> bool:
    fields = _stat_fields(proc.pid)
    return fields is not None and int(fields[19]) == proc.start and fields[0] != "Z"
