"""The stack's supervisor: starts every component in order, restarts what exits, stops them all.

One supervisor per stack home, foreground (``make run``) or in the background (``make stack-up``,
``make test``): it holds ``run/supervisor.lock`` for its lifetime, writes its pid to
``run/supervisor.pid`` and its view of the stack to ``run/state.json`` (``state.py``). A component
that exits while the stack runs is restarted, with the same command line, ports and data, after
the backoff of ``supervision.py``; a crash loop stops the whole stack with a message naming the
component and its log. SIGTERM, SIGINT or SIGHUP stop the stack in reverse start order.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import FrameType

from deploy.local.processes import Component, Runner, StackError
from deploy.local.state import (
    FAILED,
    READY,
    RESTARTING,
    RUNNING,
    STARTING,
    STOPPED,
    STOPPING,
    ComponentStatus,
    StackStatus,
    write_status,
)
from deploy.local.supervision import RestartPolicy, RestartRecord, exited, started


class Supervisor:
    """Owns the stack's processes for as long as it runs."""

    def __init__(
        self,
        components: Sequence[Component],
        runner: Runner,
        *,
        policy: RestartPolicy | None = None,
        echo: Callable[[str], None] = print,
        clock: Callable[[], float] = time.monotonic,
        poll_s: float = 0.5,
    ) -> None:
        self._components = list(components)
        self._runner = runner
        self._policy = policy or RestartPolicy()
        self._echo = echo
        self._clock = clock
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._records = {c.name: RestartRecord() for c in self._components}
        # Why the last restart attempt of a component failed, until the next attempt.
        self._failed_start: dict[str, str] = {}
        self._status = StackStatus(
            phase=STARTING,
            supervisor_pid=os.getpid(),
            components=tuple(ComponentStatus(c.name) for c in self._components),
        )
        self._publish()

    def request_stop(self) -> None:
        """Ask the supervisor to stop the stack (safe from a signal handler)."""
        self._stop.set()

    def start_all(self) -> None:
        """Start (or adopt) every component in order; on failure stop them all and raise."""
        try:
            for comp in self._components:
                if self._stop.is_set():
                    raise StackError("start cancelled")
                self._records[comp.name] = started(self._records[comp.name], self._clock())
                self._runner.start(comp, cancelled=self._stop.is_set)
                self._set(comp.name, state=READY, pid=self._runner.pid(comp.name))
        except StackError as exc:
            self._echo(f"[stack] error: {exc}")
            self._status = replace(self._status, phase=FAILED, error=str(exc).splitlines()[0])
            self.stop_all()
            raise
        self._status = replace(self._status, phase=RUNNING)
        self._publish()

    def watch(self) -> int:
        """Until asked to stop, restart what exits; 1 after a crash loop, else 0."""
        while not self._stop.wait(self._poll_s):
            for comp in self._components:
                if self._stop.is_set():
                    break
                if self._runner.pid(comp.name) is None and not self._recover(comp):
                    return 1
        return 0

    def stop_all(self) -> None:
        """Stop every component, newest first."""
        failed = self._status.phase == FAILED
        self._status = replace(self._status, phase=FAILED if failed else STOPPING)
        self._publish()
        for comp in reversed(self._components):
            self._runner.stop(comp.name, comp.stop_timeout_s, comp.stop_signal)
            self._set(comp.name, state=STOPPED, pid=None)
        self._status = replace(self._status, phase=FAILED if failed else STOPPED)
        self._publish()

    def _recover(self, comp: Component) -> bool:
        """Restart a component that exited; False when it is in a crash loop.

        A restart that does not get ready is not retried here but on the watch loop's next pass,
        after the components before it: a relay cannot get ready while the controller it needs
        is down too, and the controller comes first in the list.
        """
        how = self._failed_start.pop(comp.name, None) or self._runner.reap(comp.name)
        log = self._runner.log_path(comp.name)
        record, verdict = exited(self._policy, self._records[comp.name], self._clock())
        self._records[comp.name] = record
        if not verdict.restart:
            message = (
                f"{comp.name}: crash loop ({verdict.streak} exits in a row, none after "
                f"running {self._policy.stable_after_s:.0f}s; last: {how}); "
                f"stopping the stack; log {log}"
            )
            self._echo(f"[stack] {message}")
            self._status = replace(self._status, phase=FAILED, error=message)
            self._set(comp.name, state=FAILED, pid=None, last_exit=how)
            return False
        stamp = time.strftime("%H:%M:%S")
        self._echo(
            f"[stack] {stamp} {comp.name}: {how}; restart {record.restarts} "
            f"in {verdict.delay_s:.1f}s (log {log})"
        )
        self._set(comp.name, state=RESTARTING, pid=None, restarts=record.restarts, last_exit=how)
        if self._stop.wait(verdict.delay_s):
            return True
        self._records[comp.name] = started(record, self._clock())
        try:
            self._runner.start(comp, cancelled=self._stop.is_set)
        except StackError as exc:
            if self._stop.is_set():
                return True
            # The first line says why; the log is named once, in the next line printed.
            reason = str(exc).splitlines()[0].split("; log ", 1)[0]
            how = f"restart failed ({reason.removeprefix(f'{comp.name}: ')})"
            self._failed_start[comp.name] = how
            self._set(comp.name, state=RESTARTING, pid=None, last_exit=how)
            return True
        self._set(comp.name, state=READY, pid=self._runner.pid(comp.name))
        return True

    def _set(
        self,
        name: str,
        *,
        state: str,
        pid: int | None,
        restarts: int | None = None,
        last_exit: str | None = None,
    ) -> None:
        current = self._status.component(name) or ComponentStatus(name)
        updated = replace(
            current,
            state=state,
            pid=pid,
            restarts=current.restarts if restarts is None else restarts,
            last_exit=current.last_exit if last_exit is None else last_exit,
        )
        self._status = self._status.with_component(updated)
        self._publish()

    def _publish(self) -> None:
        write_status(self._runner.run_dir, self._status)


# --- one supervisor per stack home ---------------------------------------------------------------


def _lock_path(run_dir: Path) -> Path:
    return run_dir / "supervisor.lock"


def pid_path(run_dir: Path) -> Path:
    return run_dir / "supervisor.pid"


def running_supervisor(run_dir: Path) -> int | None:
    """The pid of the supervisor of this stack home, or None when none runs.

    The lock, not the pid file, decides: a supervisor killed with -9 leaves its pid file behind,
    but the kernel releases its lock.
    """
    try:
        fd = os.open(_lock_path(run_dir), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(pid_path(run_dir).read_text().strip())
        return -1  # locked, pid file not written yet
    finally:
        os.close(fd)
    return None


@contextlib.contextmanager
def supervisor_lock(run_dir: Path) -> Iterator[None]:
    """Hold this home's supervisor lock and pid file; StackError if another supervisor has it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(_lock_path(run_dir), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        other = running_supervisor(run_dir)
        raise StackError(
            f"another supervisor (pid {other}) already runs this stack; "
            "`make stack-status` shows it, `make stack-down` stops it"
        ) from None
    pid_path(run_dir).write_text(str(os.getpid()))
    try:
        yield
    finally:
        pid_path(run_dir).unlink(missing_ok=True)
        os.close(fd)


def supervise(
    components: Sequence[Component],
    runner: Runner,
    *,
    echo: Callable[[str], None] = print,
    on_ready: Callable[[], None] = lambda: None,
    policy: RestartPolicy | None = None,
) -> int:
    """Run the stack until a signal or a crash loop; the exit status for the command line."""
    with supervisor_lock(runner.run_dir):
        sup = Supervisor(components, runner, policy=policy, echo=echo)

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            sup.request_stop()

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, on_signal)
        try:
            sup.start_all()
        except StackError:
            return 1  # start_all said why, then stopped what it had started
        on_ready()
        status = sup.watch()
        sup.stop_all()
        return status
