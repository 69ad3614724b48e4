"""The local stack's supervisor and runner with tiny real processes (no stack needed)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import urllib.error
from email.message import Message
from pathlib import Path

import pytest

from deploy.local.datadirs import (
    check_traversable,
    prepare_shared_folder,
    prune_orphans,
    remove_shared_folder,
    shared_folder,
    stack_id,
)
from deploy.local.processes import Component, Runner, StackError
from deploy.local.state import FAILED, READY, STOPPED, read_status
from deploy.local.supervision import RestartPolicy
from deploy.local.supervisor import Supervisor, running_supervisor, supervisor_lock

FAST = RestartPolicy(max_restarts=3, stable_after_s=60.0, first_delay_s=0.01, max_delay_s=0.05)
SLEEPER = [sys.executable, "-c", "import time; time.sleep(600)"]


def _until(condition: object, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not callable(condition) or not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _always() -> bool:
    return True


def _never() -> bool:
    return False


def _http_503() -> bool:
    raise urllib.error.HTTPError("http://x/readyz", 503, "Service Unavailable", Message(), None)


def test_probe_turns_errors_into_not_ready_and_names_the_last_one(tmp_path: Path) -> None:
    """A readiness check raising HTTPError 503 is 'not ready' and the timeout names it, no trace."""
    lines: list[str] = []
    runner = Runner(tmp_path, echo=lines.append)
    comp = Component("svc", SLEEPER, ready=_http_503, ready_timeout_s=1.0)
    assert runner.probe(comp) is False
    with pytest.raises(StackError) as failed:
        runner.start(comp)
    message = str(failed.value)
    assert message.startswith("svc: not ready after 1s (last check: HTTPError: HTTP Error 503")
    assert "Traceback" not in message
    assert runner.pid("svc") is None


def test_ready_after_a_few_failed_checks_prints_one_line(tmp_path: Path) -> None:
    """A component that answers 503 twice, then 200, starts with one 'ready' line."""
    lines: list[str] = []
    runner = Runner(tmp_path, echo=lines.append)
    answers = iter([False, False])

    def ready() -> bool:
        return next(answers, True) or _http_503()

    comp = Component("svc", SLEEPER, ready=ready)
    assert runner.start(comp)
    assert len(lines) == 1
    assert lines[0].startswith("[stack] svc: ready in ")
    runner.stop("svc")


def test_already_running_but_not_ready_yet_waits_without_a_traceback(tmp_path: Path) -> None:
    """`up` again while a service still answers 503: wait for it, no HTTPError escapes."""
    first = Runner(tmp_path, echo=lambda _l: None)
    first.start(Component("svc", SLEEPER, ready=_always))
    lines: list[str] = []
    again = Runner(tmp_path, echo=lines.append)  # another shell: knows it by its pid file
    answers = iter([False])

    def ready() -> bool:
        return next(answers, True) or _http_503()

    try:
        assert again.start(Component("svc", SLEEPER, ready=ready)) is False
        assert lines == [f"[stack] svc: already running (pid {again.pid('svc')})"]
    finally:
        first.stop("svc")


def test_exit_before_ready_says_how_it_ended(tmp_path: Path) -> None:
    """A process that dies during its start fails with its exit status and its log's tail."""
    runner = Runner(tmp_path, echo=lambda _l: None)
    comp = Component(
        "bad", [sys.executable, "-c", "print('boom'); raise SystemExit(3)"], ready=_never
    )
    with pytest.raises(StackError, match=r"(?s)bad: exit status 3 before it was ready; log .*boom"):
        runner.start(comp)


def test_reap_kills_what_a_dead_leader_left_in_its_group(tmp_path: Path) -> None:
    """After kill -9 of a component, its children (still holding the group) are killed too."""
    runner = Runner(tmp_path, echo=lambda _l: None)
    script = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        "time.sleep(600)"
    )
    comp = Component("parent", [sys.executable, "-c", script], ready=_always)
    runner.start(comp)
    pid = runner.pid("parent")
    assert pid is not None
    _until(lambda: len(_group_members(pid)) == 2)
    os.kill(pid, signal.SIGKILL)
    _until(lambda: runner.pid("parent") is None)
    assert runner.reap("parent") == "killed by SIGKILL"
    assert _group_members(pid) == []


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def test_supervisor_restarts_a_killed_component_with_the_same_command(tmp_path: Path) -> None:
    """kill -9 of a supervised process: restarted, counted in state.json, 'ready' again."""
    lines: list[str] = []
    runner = Runner(tmp_path, echo=lines.append)
    comps = [Component("a", SLEEPER, ready=_always), Component("b", SLEEPER, ready=_always)]
    sup = Supervisor(comps, runner, policy=FAST, echo=lines.append, poll_s=0.05)
    sup.start_all()
    first = runner.pid("a")
    assert first is not None
    watcher = threading.Thread(target=sup.watch)
    watcher.start()
    try:
        os.kill(first, signal.SIGKILL)

        def restarted() -> bool:
            status = read_status(runner.run_dir)
            a = status.component("a") if status else None
            return a is not None and a.state == READY and a.restarts == 1

        _until(restarted)
        assert runner.pid("a") not in (None, first)
        status = read_status(runner.run_dir)
        assert status is not None
        a = status.component("a")
        assert a is not None
        assert a.last_exit == "killed by SIGKILL"
        assert any("a: killed by SIGKILL; restart 1 in 0.0s" in line for line in lines)
    finally:
        sup.request_stop()
        watcher.join()
        sup.stop_all()
    final = read_status(runner.run_dir)
    assert final is not None
    assert final.phase == STOPPED
    assert runner.pid("a") is None
    assert runner.pid("b") is None


def test_a_dependent_waits_for_what_it_needs_to_be_restarted_first(tmp_path: Path) -> None:
    """ "b" dies, then "a" (which "b" needs) dies while "b" restarts: both come back, no loop."""
    lines: list[str] = []
    runner = Runner(tmp_path, echo=lines.append)
    checks = 0

    def b_ready() -> bool:
        nonlocal checks
        checks += 1
        a_pid = runner.pid("a")
        if checks == 2 and a_pid is not None:
            os.kill(a_pid, signal.SIGKILL)  # "a" dies while "b" is being restarted
            return False
        return runner.pid("a") is not None

    comps = [
        Component("a", SLEEPER, ready=_always),
        Component("b", SLEEPER, ready=b_ready, ready_timeout_s=0.5),
    ]
    sup = Supervisor(comps, runner, policy=FAST, echo=lines.append, poll_s=0.05)
    sup.start_all()
    b_pid = runner.pid("b")
    assert b_pid is not None
    watcher = threading.Thread(target=sup.watch)
    watcher.start()
    try:
        os.kill(b_pid, signal.SIGKILL)

        def both_back() -> bool:
            status = read_status(runner.run_dir)
            return status is not None and all(
                (c := status.component(n)) is not None and c.state == READY and c.restarts >= 1
                for n in "ab"
            )

        def settled() -> bool:
            status = read_status(runner.run_dir)
            return both_back() or (status is not None and status.phase == FAILED)

        _until(settled)
        status = read_status(runner.run_dir)
        assert status is not None
        assert status.phase != FAILED
    finally:
        sup.request_stop()
        watcher.join()
        sup.stop_all()


def test_crash_loop_stops_the_stack_naming_component_and_log(tmp_path: Path) -> None:
    """A component that keeps exiting is restarted 3 times, then the whole stack stops."""
    lines: list[str] = []
    runner = Runner(tmp_path, echo=lines.append)
    flaky = Component(
        "flaky", [sys.executable, "-c", "import time; time.sleep(0.3)"], ready=_always
    )
    steady = Component("steady", SLEEPER, ready=_always)
    sup = Supervisor([steady, flaky], runner, policy=FAST, echo=lines.append, poll_s=0.05)
    sup.start_all()
    assert sup.watch() == 1
    sup.stop_all()
    log = runner.log_path("flaky")
    loop = [line for line in lines if "crash loop" in line]
    assert len(loop) == 1
    assert loop[0].startswith("[stack] flaky: crash loop (4 exits in a row")
    assert loop[0].endswith(f"stopping the stack; log {log}")
    status = read_status(runner.run_dir)
    assert status is not None
    assert status.phase == FAILED
    assert "flaky: crash loop" in status.error
    flaky_status = status.component("flaky")
    assert flaky_status is not None
    assert flaky_status.restarts == 3
    assert runner.pid("steady") is None


def test_one_supervisor_per_home(tmp_path: Path) -> None:
    """While one supervisor holds a home, a second is refused and the first one's pid is known."""
    run_dir = tmp_path / "run"
    assert running_supervisor(run_dir) is None
    with supervisor_lock(run_dir):
        assert running_supervisor(run_dir) == os.getpid()
        with pytest.raises(StackError, match="another supervisor"), supervisor_lock(run_dir):
            pass
    assert running_supervisor(run_dir) is None


def test_shared_folder_is_per_home_and_fresh_for_a_recreated_home(tmp_path: Path) -> None:
    """A home re-created at the same path gets a fresh folder; clean and pruning remove them."""
    system = tmp_path / "system"
    home = tmp_path / "home"
    folder, stale = prepare_shared_folder(home, system)
    assert (folder, stale) == (shared_folder(home, system), False)
    assert folder.stat().st_mode & 0o777 == 0o755
    (folder / "postgres").mkdir()
    assert prepare_shared_folder(home, system) == (folder, False)
    assert (folder / "postgres").exists()

    (home / "stack-id").unlink()  # the home was deleted and created again
    assert prepare_shared_folder(home, system) == (folder, True)
    assert not (folder / "postgres").exists()

    other = tmp_path / "other-home"
    prepare_shared_folder(other, system)
    stack_id(other)
    (other / "stack-id").unlink()
    assert prune_orphans(system, in_use=lambda _f: False) == [shared_folder(other, system)]
    assert remove_shared_folder(home, system) == folder
    assert not folder.exists()


def test_private_parent_is_reported_not_crashed_on(tmp_path: Path) -> None:
    """A 0700 folder on the way to the data names itself in a clear error."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    private.chmod(0o700)
    with pytest.raises(StackError, match=r"postgres: .*private is not traversable"):
        check_traversable(private / "data")
