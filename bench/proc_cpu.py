"""CPU time of process trees and of the whole machine, read from /proc (Linux).

A process's CPU is utime + stime of /proc/<pid>/stat, summed over the process and its live
descendants (PostgreSQL does its work in forked backends, nginx in workers); the machine's is
the busy time of /proc/stat's ``cpu`` line. Children that exited inside a window are not
counted (their time moves to the parent's cutime only when it reaps them).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from deploy.local.config import StackConfig

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    ppid: int
    ticks: int  # utime + stime, in clock ticks


def parse_stat(line: str) -> ProcStat:
    """One /proc/<pid>/stat line. The command name may hold spaces and parentheses, so the
    fields are counted from its last ``)``: state is field 3, ppid 4, utime 14, stime 15."""
    head, _, rest = line.rpartition(")")
    if not head or "(" not in head:
        raise ValueError(f"not a /proc/<pid>/stat line: {line[:60]!r}")
    after = rest.split()
    return ProcStat(
        pid=int(head.split("(", 1)[0]), ppid=int(after[1]), ticks=int(after[11]) + int(after[12])
    )


def tree_ticks(stats: Iterable[ProcStat], root: int) -> int:
    """CPU ticks of ``root`` and every live descendant (PostgreSQL's work is in its backends)."""
    children: dict[int, list[ProcStat]] = {}
    by_pid: dict[int, ProcStat] = {}
    for st in stats:
        by_pid[st.pid] = st
        children.setdefault(st.ppid, []).append(st)
    if root not in by_pid:
        return 0
    total, todo = 0, [by_pid[root]]
    while todo:
        st = todo.pop()
        total += st.ticks
        todo.extend(children.get(st.pid, []))
    return total


def machine_busy_ticks(proc_stat_first_line: str) -> int:
    """Busy ticks of all cores from /proc/stat's ``cpu`` line: everything but idle and iowait
    (guest time is already inside user)."""
    values = [int(v) for v in proc_stat_first_line.split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values
    return user + nice + system + irq + softirq + steal


def read_stats() -> list[ProcStat]:
    stats = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats.append(parse_stat((entry / "stat").read_text()))
            except (OSError, ValueError, IndexError):
                continue  # the process ended while we looked
    return stats


def sample(pids: Mapping[str, int]) -> dict[str, int]:
    """Ticks now of each named process tree, plus the whole machine under ``"machine"``."""
    stats = read_stats()
    ticks = {name: tree_ticks(stats, pid) for name, pid in pids.items()}
    ticks["machine"] = machine_busy_ticks(Path("/proc/stat").read_text().splitlines()[0])
    return ticks


def cpu_seconds(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, float]:
    return {name: (after[name] - before.get(name, 0)) / CLK_TCK for name in after}


# Our own processes among a stack's components (the rest are Kafka and the databases).
OURS = ("relay", "controller")


def ms_per_message(component_cpu: Mapping[str, float], count: float) -> dict[str, float]:
    """Milliseconds of CPU per message (``count`` > 0): our processes together, the whole stack."""
    ours = sum(v for k, v in component_cpu.items() if k.startswith(OURS))
    return {
        "ours_cpu_ms_per_msg": round(ours / count * 1000, 3),
        "stack_cpu_ms_per_msg": round(sum(component_cpu.values()) / count * 1000, 3),
    }


def stack_pids(cfg: StackConfig | Path) -> dict[str, int]:
    """The live process of each component the stack's supervisor started (its pid files)."""
    home = cfg if isinstance(cfg, Path) else cfg.home
    pids = {}
    for path in sorted((home / "run").glob("*.pid")):
        try:
            pid = int(path.read_text().strip())
        except ValueError:
            continue
        if path.stem != "supervisor" and Path(f"/proc/{pid}").exists():
            pids[path.stem] = pid
    return pids


class StackCpu:
    """``start()`` then ``stop()``: each running component's CPU seconds in between."""

    def __init__(self, home: Path) -> None:
        self._home = home
        self._pids: dict[str, int] = {}
        self._before: dict[str, int] = {}

    def start(self) -> None:
        self._pids = stack_pids(self._home)
        self._before = sample(self._pids)

    def stop(self) -> dict[str, float]:
        seconds = cpu_seconds(self._before, sample(self._pids))
        return {name: round(v, 3) for name, v in seconds.items() if name != "machine"}
