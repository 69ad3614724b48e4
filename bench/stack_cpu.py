"""CPU seconds of each component of the running local stack over a measured window.

Each component's pid file is ``<home>/run/<name>.pid``; a component's CPU is the user + system
time of that process and all its descendants (PostgreSQL's backends, which put themselves in
process groups of their own, and nginx's workers included), read from ``/proc``. Processes that
start and exit inside the window are missed, which for the stack's long-lived processes is nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _trees() -> dict[int, float]:
    """CPU seconds of every process visible in /proc plus all its descendants."""
    own: dict[int, float] = {}
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        own[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    totals = dict(own)
    for pid, seconds in own.items():
        ancestor = parent.get(pid, 0)
        while ancestor > 1:
            if ancestor in totals:
                totals[ancestor] += seconds
            ancestor = parent.get(ancestor, 0)
    return totals


def components(home: Path) -> dict[str, int]:
    """Component name -> pid (its process group) of every running component."""
    found = {}
    for pid_file in sorted((home / "run").glob("*.pid")):
        try:
            found[pid_file.stem] = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
    return found


class StackCpu:
    """``start()`` then ``stop()``: each component's CPU seconds in between."""

    def __init__(self, home: Path) -> None:
        self._home = home
        self._before: dict[int, float] = {}
        self._pids: dict[str, int] = {}

    def start(self) -> None:
        self._pids = components(self._home)
        self._before = _trees()

    def stop(self) -> dict[str, float]:
        after = _trees()
        return {
            name: round(after.get(pid, 0.0) - self._before.get(pid, 0.0), 3)
            for name, pid in self._pids.items()
            if name != "supervisor"
        }
