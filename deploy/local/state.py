"""The supervisor's view of the stack, kept in ``<home>/run/state.json`` for other commands.

The supervisor rewrites the file (atomically: write, then rename) at every change; ``stack
status``, ``stack up`` and ``stack down`` read it from other shells. Restart counts live here,
one per component, for as long as that supervisor runs (a new ``up`` starts them at 0).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

# Phases of the whole stack, as the supervisor sees it.
STARTING, RUNNING, STOPPING, STOPPED, FAILED = (
    "starting",
    "running",
    "stopping",
    "stopped",
    "failed",
)
# States of one component.
WAITING, READY, RESTARTING = "waiting", "ready", "restarting"


@dataclass(frozen=True, slots=True)
class ComponentStatus:
    """One component: its state, current pid and how often it was restarted."""

    name: str
    state: str = WAITING
    pid: int | None = None
    restarts: int = 0
    last_exit: str = ""


@dataclass(frozen=True, slots=True)
class StackStatus:
    """The whole stack: the supervisor's phase, the error that ended it, every component."""

    phase: str
    supervisor_pid: int | None
    components: tuple[ComponentStatus, ...] = ()
    error: str = ""

    def component(self, name: str) -> ComponentStatus | None:
        return next((c for c in self.components if c.name == name), None)

    def with_component(self, updated: ComponentStatus) -> StackStatus:
        parts = tuple(updated if c.name == updated.name else c for c in self.components)
        return replace(self, components=parts)


def status_path(run_dir: Path) -> Path:
    return run_dir / "state.json"


def write_status(run_dir: Path, status: StackStatus) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = status_path(run_dir)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(asdict(status), indent=1) + "\n")
    tmp.replace(path)


def read_status(run_dir: Path) -> StackStatus | None:
    """The last status the supervisor wrote, or None when there is none (or it is unreadable)."""
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
        raw = json.loads(status_path(run_dir).read_text())
        parts = tuple(ComponentStatus(**c) for c in raw["components"])
        return StackStatus(
            phase=str(raw["phase"]),
            supervisor_pid=raw["supervisor_pid"],
            components=parts,
            error=str(raw.get("error", "")),
        )
    return None
