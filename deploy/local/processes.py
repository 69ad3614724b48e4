"""A generic process runner: start, health-check and stop named background processes.

Each component is a ``Component`` (name, command, readiness check, log file). Processes run in their
own session so one signal to the process group stops everything they spawned, and their pid files
live under the stack folder so ``down`` works from another shell. Starting a running component is a
no-op; stopping leaves no process behind (SIGTERM, then SIGKILL after a grace period). Restarting
is the supervisor's business (``supervisor.py``); this module only reports that a process is gone
and clears what it left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class StackError(Exception):
    """A component could not be installed, started or reached; the message names it and its log."""


@dataclass(frozen=True, slots=True)
class Component:
    """One process of the local stack."""

    name: str
    argv: Sequence[str]
    ready: Callable[[], bool]
    ports: Sequence[int] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    prepare: Callable[[], None] | None = None
    after_ready: Callable[[], None] | None = None
    ready_timeout_s: float = 60.0
    stop_timeout_s: float = 20.0
    stop_signal: signal.Signals = signal.SIGTERM


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True when something accepts TCP connections on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def http_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True when ``url`` answers 200; an error status or no answer (yet) is simply False."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - http://
            return int(resp.status) == 200
    except (urllib.error.URLError, OSError):
        # HTTPError (a 503 while a dependency starts) is a URLError; refused or reset is OSError.
        return False


def http_answers(url: str, timeout_s: float = 1.0) -> bool:
    """True when anything answers HTTP at ``url``, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s):  # noqa: S310 - loopback http://
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for error messages."""
    try:
        content = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(content[-lines:])


def describe_exit(returncode: int | None) -> str:
    """How a process ended, for people: ``killed by SIGKILL``, ``exit status 1``."""
    if returncode is None:
        return "exited (status unknown: not started by this supervisor)"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class Runner:
    """Starts and stops components, keeping pid files and logs under ``home``."""

    def __init__(self, home: Path, *, echo: Callable[[str], None] = print) -> None:
        self.home = home
        self.run_dir = home / "run"
        self.log_dir = home / "logs"
        self._echo = echo
        # Children started by this runner, kept so stop() can reap them (no zombies, no warnings)
        # and so an exit's status is known.
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._probe_errors: dict[str, str] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def _pid_path(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def pid(self, name: str) -> int | None:
        """The pid of a running component, or None (stale pid files are removed)."""
        proc = self._procs.get(name)
        if proc is not None:
            # Ask Popen first: reaping the child elsewhere would lose its exit status.
            return proc.pid if proc.poll() is None else None
        path = self._pid_path(name)
        try:
            pid = int(path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if pid_alive(pid):
            return pid
        path.unlink(missing_ok=True)
        return None

    def probe(self, comp: Component) -> bool:
        """The component's readiness check, which never raises: any error counts as not ready.

        The last error is kept for the "not ready after Ns" message instead of a traceback.
        """
        try:
            ok = comp.ready()
        except Exception as exc:  # the one boundary for every readiness check
            self._probe_errors[comp.name] = f"{type(exc).__name__}: {exc}"
            return False
        if ok:
            self._probe_errors.pop(comp.name, None)
        return ok

    def start(self, comp: Component, *, cancelled: Callable[[], bool] = lambda: False) -> bool:
        """Start a component unless it already runs, wait until it is ready; True if started.

        ``cancelled`` is polled while waiting: when it turns True the component is stopped and
        StackError raised (Ctrl-C or ``down`` during a slow start).
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path(comp.name)
        started = time.monotonic()
        if self.pid(comp.name) is not None:
            if not self.probe(comp):
                self._wait_ready(comp, log, None, cancelled)
            self._echo(f"[stack] {comp.name}: already running (pid {self.pid(comp.name)})")
            return False
        for port in comp.ports:
            if port_open(port):
                raise StackError(
                    f"{comp.name}: port {port} is already in use by another process; "
                    f"stop it or change the port (see docs/configuration.md)"
                )
        if comp.prepare is not None:
            comp.prepare()
        env = {**os.environ, **comp.env}
        with log.open("ab") as out:
            out.write(f"\n==== start {time.strftime('%Y-%m-%dT%H:%M:%S')} ====\n".encode())
            out.flush()
            try:
                proc = subprocess.Popen(
                    list(comp.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=comp.cwd,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise StackError(f"{comp.name}: cannot execute {comp.argv[0]}: {exc}") from exc
        self._pid_path(comp.name).write_text(str(proc.pid))
        self._procs[comp.name] = proc
        self._wait_ready(comp, log, proc, cancelled)
        if comp.after_ready is not None:
            try:
                comp.after_ready()
            except StackError:
                self.stop(comp.name, comp.stop_timeout_s, comp.stop_signal)
                raise
            except Exception as exc:  # set-up steps: topics, indexes, the bucket
                self.stop(comp.name, comp.stop_timeout_s, comp.stop_signal)
                raise StackError(
                    f"{comp.name}: set-up after start failed: {type(exc).__name__}: {exc}"
                ) from exc
        took = time.monotonic() - started
        self._echo(f"[stack] {comp.name}: ready in {took:.1f}s (pid {proc.pid}, log {log})")
        return True

    def _wait_ready(
        self,
        comp: Component,
        log: Path,
        proc: subprocess.Popen[bytes] | None,
        cancelled: Callable[[], bool],
    ) -> None:
        deadline = time.monotonic() + comp.ready_timeout_s
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                self._pid_path(comp.name).unlink(missing_ok=True)
                self._procs.pop(comp.name, None)
                self._kill_leftovers(proc.pid)
                raise StackError(
                    f"{comp.name}: {describe_exit(proc.returncode)} before it was ready; "
                    f"log {log}:\n{tail(log)}"
                )
            if cancelled():
                self.stop(comp.name, comp.stop_timeout_s, comp.stop_signal)
                raise StackError(f"{comp.name}: start cancelled")
            if self.probe(comp):
                return
            time.sleep(0.25)
        self.stop(comp.name, comp.stop_timeout_s, comp.stop_signal)
        last = self._probe_errors.pop(comp.name, None)
        reason = f" (last check: {last})" if last else ""
        raise StackError(
            f"{comp.name}: not ready after {comp.ready_timeout_s:.0f}s{reason}; "
            f"log {log}:\n{tail(log)}"
        )

    def stop(
        self, name: str, timeout_s: float = 20.0, sig: signal.Signals = signal.SIGTERM
    ) -> bool:
        """Stop a component's whole process group; True if something was running."""
        pid = self.pid(name)
        if pid is None:
            self._procs.pop(name, None)
            return False
        _signal_group(pid, sig)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.1)
        if _group_alive(pid):
            self._echo(f"[stack] {name}: did not stop in {timeout_s:.0f}s, killing")
            self._kill_leftovers(pid)
        proc = self._procs.pop(name, None)
        if proc is not None:
            proc.wait()
        self._pid_path(name).unlink(missing_ok=True)
        self._echo(f"[stack] {name}: stopped")
        return True

    def exited(self, names: Sequence[str]) -> list[str]:
        """The components among ``names`` whose process is gone."""
        return [name for name in names if self.pid(name) is None]

    def reap(self, name: str) -> str:
        """Clear what a component that exited left behind; say how it ended.

        Its children may still hold its process group (PostgreSQL's backends, nginx's workers,
        still bound to the port): they are killed so the component can start again cleanly.
        """
        proc = self._procs.pop(name, None)
        path = self._pid_path(name)
        pgid: int | None = None
        if proc is not None:
            proc.wait()
            pgid = proc.pid
        else:
            with contextlib.suppress(FileNotFoundError, ValueError):
                pgid = int(path.read_text().strip())
        if pgid is not None:
            self._kill_leftovers(pgid)
        path.unlink(missing_ok=True)
        return describe_exit(proc.returncode if proc is not None else None)

    @staticmethod
    def _kill_leftovers(pgid: int, timeout_s: float = 10.0) -> None:
        if not _group_alive(pgid):
            return
        _signal_group(pgid, signal.SIGKILL)
        deadline = time.monotonic() + timeout_s
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    """True while a process with this pid exists (a zombie child of ours is reaped: False)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    return pid_alive(pgid) or _has_members(pgid)


def _has_members(pgid: int) -> bool:
    # After the leader exits, children may still hold the group; /proc tells without signalling.
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            return True
    return False


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
