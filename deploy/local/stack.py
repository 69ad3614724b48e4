"""The local stack's command line: ``python -m deploy.local.stack up|down|status|run|exec|clean``.

``deploy/local/install.sh`` installs the binaries first (``make stack-up`` does both). Everything
the stack writes lives under ``.stack/`` (``CHATSTACK_HOME``), except PostgreSQL's data when we are
root (``datadirs.py``); downloads and builds are cached in ``~/.cache/chatstack``
(``CHATSTACK_CACHE``). A supervisor owns the processes (``supervisor.py``): ``run`` is one in the
foreground, ``up`` starts one in the background (``supervise``) and follows its output until every
component is ready, ``down`` asks it to stop everything. ``exec -- CMD`` runs a command with the
stack up and stops it afterwards only if this call started it, which is how ``make test`` runs the
suite.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from deploy.local.broker import kafka_component
from deploy.local.config import REPO, StackConfig, instance_name, service_env, write_private
from deploy.local.database import ferretdb_component, postgres_component
from deploy.local.datadirs import remove_shared_folder
from deploy.local.processes import Component, Runner, StackError
from deploy.local.serving import nginx_component, python_service_component
from deploy.local.state import FAILED, RUNNING, STOPPED, STOPPING, read_status
from deploy.local.storage import clamd_component, s3_component
from deploy.local.supervisor import running_supervisor, supervise

SUPERVISOR = "supervisor"
# What marks a folder as a stack home, so `clean` never deletes anything else.
_HOME_MARKERS = ("env", "run", "stack-id", "data", "logs")


def write_env_file(cfg: StackConfig) -> Path:
    path = cfg.home / "env"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}={value}" for key, value in sorted(service_env(cfg).items())]
    write_private(path, "\n".join(lines) + "\n")
    return path


def components(cfg: StackConfig) -> list[Component]:
    """Every component in start order: infrastructure, services, then the edge.

    The topology variables (``CHATSTACK_CONTROLLERS``, ``_MANAGEMENT``, ``_AUTH``,
    ``_KAFKA_BROKERS``) set how many instances of each run; the first keeps the plain name.
    """
    relays = [
        python_service_component(
            cfg,
            f"relay-{i}",
            "services.relay",
            port,
            extra_env={"CHAT_RELAY_PORT": str(port), "CHAT_RELAY_ID": f"relay-{i}"},
        )
        for i, port in enumerate(cfg.relay_ports, start=1)
    ]
    auth = [
        python_service_component(
            cfg,
            instance_name("auth", i),
            "services.auth",
            port,
            extra_env={"CHAT_AUTH_PORT": str(port)},
        )
        for i, port in enumerate(cfg.auth_ports)
    ]
    controllers = [
        python_service_component(
            cfg,
            instance_name("controller", i),
            "services.controller",
            http_port,
            ports=(grpc_port,),
            extra_env={
                "CHAT_CONTROLLER_GRPC_PORT": str(grpc_port),
                "CHAT_CONTROLLER_HTTP_PORT": str(http_port),
            },
        )
        for i, (grpc_port, http_port) in enumerate(
            zip(cfg.controller_grpc_ports, cfg.controller_http_ports, strict=True)
        )
    ]
    management = [
        python_service_component(
            cfg,
            instance_name("management", i),
            "services.management",
            port,
            extra_env={"CHAT_MANAGEMENT_PORT": str(port)},
        )
        for i, port in enumerate(cfg.management_ports)
    ]
    database = [postgres_component(cfg)] if cfg.db_backend == "postgresql" else []
    return [
        *(kafka_component(cfg, i) for i in range(cfg.kafka_brokers)),
        *database,
        ferretdb_component(cfg),
        s3_component(cfg),
        # Before the services: the management service scans every upload with it.
        clamd_component(cfg),
        *auth,
        *controllers,
        *relays,
        *management,
        nginx_component(cfg),
    ]


class _LogFollower:
    """Echoes the lines a file gains from now on (the background supervisor's output)."""

    def __init__(self, path: Path, echo: Callable[[str], None]) -> None:
        self._path = path
        self._echo = echo
        self._offset = path.stat().st_size if path.exists() else 0
        self._partial = b""

    def pump(self) -> None:
        try:
            with self._path.open("rb") as log:
                log.seek(self._offset)
                chunk = log.read()
        except FileNotFoundError:
            return
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            self._echo(line.decode(errors="replace"))


def _supervisor_pid(runner: Runner, timeout_s: float = 5.0) -> int | None:
    # -1: a supervisor holds the lock but has not written its pid yet (it is starting).
    deadline = time.monotonic() + timeout_s
    pid = running_supervisor(runner.run_dir)
    while pid == -1 and time.monotonic() < deadline:
        time.sleep(0.1)
        pid = running_supervisor(runner.run_dir)
    return None if pid == -1 else pid


def up(cfg: StackConfig, runner: Runner, *, echo: Callable[[str], None] = print) -> bool:
    """Start the stack under a background supervisor unless one runs, and wait until it is ready.

    Echoes one line per component as it gets ready; True when this call started the supervisor.
    """
    write_env_file(cfg)
    runner.log_dir.mkdir(parents=True, exist_ok=True)
    log = runner.log_path(SUPERVISOR)
    pid = _supervisor_pid(runner)
    proc: subprocess.Popen[bytes] | None = None
    if pid is None:
        with log.open("ab") as out:
            out.write(f"\n==== supervisor {time.strftime('%Y-%m-%dT%H:%M:%S')} ====\n".encode())
            out.flush()
            follower = _LogFollower(log, echo)
            proc = subprocess.Popen(
                [sys.executable, "-m", "deploy.local.stack", "supervise"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO,
                start_new_session=True,
            )
        pid = proc.pid
    else:
        follower = _LogFollower(log, echo)
        echo(f"[stack] supervisor already running (pid {pid})")
    while True:
        follower.pump()
        status = read_status(runner.run_dir)
        current = status if status is not None and status.supervisor_pid == pid else None
        if current is not None and current.phase == RUNNING:
            echo(f"[stack] up (supervisor pid {pid}; `make stack-status` shows every component)")
            return proc is not None
        alive = proc.poll() is None if proc is not None else running_supervisor(runner.run_dir)
        if not alive or (current is not None and current.phase in (FAILED, STOPPING, STOPPED)):
            if proc is not None:
                proc.wait()
            follower.pump()
            raise StackError(f"the stack did not come up (supervisor log {log})")
        time.sleep(0.2)


def down(cfg: StackConfig, runner: Runner, *, echo: Callable[[str], None] = print) -> None:
    """Stop the supervisor and with it every component; then anything it left running."""
    pid = _supervisor_pid(runner)
    if pid is not None:
        follower = _LogFollower(runner.log_path(SUPERVISOR), echo)
        os.kill(pid, signal.SIGTERM)
        comps = components(cfg)
        deadline = time.monotonic() + sum(c.stop_timeout_s for c in comps) + 30
        while running_supervisor(runner.run_dir) is not None and time.monotonic() < deadline:
            follower.pump()
            time.sleep(0.2)
        follower.pump()
    # Components of a supervisor that was killed (kill -9) keep running on their own.
    for comp in reversed(components(cfg)):
        runner.stop(comp.name, comp.stop_timeout_s, comp.stop_signal)


def exec_with_stack(cfg: StackConfig, runner: Runner, command: Sequence[str]) -> int:
    """Run a command with the stack up; stop the stack afterwards only if this call started it."""
    if not command:
        raise StackError("exec: no command given (usage: exec -- CMD ARGS...)")
    started = up(cfg, runner)
    try:
        env = {**os.environ, **service_env(cfg)}
        return subprocess.run(list(command), env=env, check=False).returncode
    finally:
        if started:
            down(cfg, runner)


def status_lines(cfg: StackConfig, runner: Runner) -> list[str]:
    """``stack status``: the supervisor, then each component's state, pid and restart count."""
    pid = _supervisor_pid(runner)
    status = read_status(runner.run_dir)
    current = status if status is not None and status.supervisor_pid == pid else None
    if pid is not None:
        lines = [f"{SUPERVISOR:12} {'running':12} pid {pid}"]
    elif status is not None and status.phase == FAILED:
        lines = [f"{SUPERVISOR:12} {'failed':12} {status.error}"]
    else:
        lines = [f"{SUPERVISOR:12} {'stopped':12}"]
    for comp in components(cfg):
        live = runner.pid(comp.name)
        known = status.component(comp.name) if status is not None else None
        if current is not None and known is not None:
            state = known.state
        elif live is not None:
            state = "unsupervised"
        else:
            state = "stopped"
        restarts = known.restarts if known is not None else 0
        pid_text = f"pid {live}" if live is not None else "-"
        line = f"{comp.name:12} {state:12} {pid_text:10} restarts {restarts}"
        if known is not None and known.last_exit:
            line += f"   last exit: {known.last_exit}"
        lines.append(line)
    return lines


def clean(cfg: StackConfig, runner: Runner) -> None:
    """Stop the stack and delete everything it wrote: its home and its data outside the home."""
    down(cfg, runner)
    try:
        removed = remove_shared_folder(cfg.home, cfg.system_data)
    except PermissionError as exc:
        raise StackError(f"clean: cannot remove {exc.filename} (it was created as root)") from exc
    if removed is not None:
        print(f"[stack] removed {removed}")
    home = cfg.home
    if not home.exists():
        return
    if home in (Path("/"), Path.home().resolve(), REPO) or not any(
        (home / marker).exists() for marker in _HOME_MARKERS
    ):
        raise StackError(f"clean: {home} does not look like a stack home; not deleting it")
    shutil.rmtree(home)
    print(f"[stack] removed {home}")


def quick_start(cfg: StackConfig, log_dir: Path) -> str:
    """What ``make run`` prints once everything is up: the URLs and a copy-paste quick start."""
    base = f"http://127.0.0.1:{cfg.nginx_port}"
    relays = ", ".join(str(p) for p in cfg.relay_ports)
    return f"""
[stack] up: {base}   (logs in {log_dir}; Ctrl-C stops everything)
[stack] a component that exits is restarted; `make stack-status` shows each one's restarts

  edge (nginx)      {base}            REST /v1, WebSocket {base.replace("http", "ws")}/v1/ws
  OpenAPI           {base}/v1/openapi.json
  auth              http://127.0.0.1:{cfg.auth_port}   (/healthz /readyz /metrics)
  management        http://127.0.0.1:{cfg.management_port}   (/healthz /readyz /metrics)
  controller        gRPC 127.0.0.1:{cfg.controller_grpc_port}, http://127.0.0.1:{cfg.controller_http_port}/metrics
  relays            ports {relays}   (/healthz /readyz /metrics)
  kafka             127.0.0.1:{cfg.kafka_port}    database mongodb://127.0.0.1:{cfg.mongo_port}/
  s3                http://127.0.0.1:{cfg.s3_port}

Quick start (another terminal, in this folder):

  B={base}
  curl -s $B/v1/auth/register -H 'Content-Type: application/json' \\
    -d '{{"email":"ada@example.com","password":"correct horse battery","name":"Ada"}}'; echo
  TOKEN=$(curl -s $B/v1/auth/login -H 'Content-Type: application/json' \\
    -d '{{"email":"ada@example.com","password":"correct horse battery"}}' \\
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["access_token"])')
  TEAM=$(curl -s $B/v1/teams -H "Authorization: Bearer $TOKEN" \\
    -H 'Content-Type: application/json' -d '{{"name":"Core"}}' \\
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])')
  .venv/bin/python -c '
import asyncio, sys
from chatclient import ChatClient
async def main(token, team):
    async with await ChatClient.connect("{base.replace("http", "ws")}/v1/ws", token) as chat:
        print("hello:", chat.hello)
        print("ack:", await chat.send(team, "first message"))
        print("delivered:", await chat.receive())
asyncio.run(main(*sys.argv[1:]))' "$TOKEN" "$TEAM"
"""


def run_foreground(cfg: StackConfig, runner: Runner) -> int:
    """``make run``: supervise the stack in this terminal until Ctrl-C (or a crash loop)."""
    write_env_file(cfg)
    pid = _supervisor_pid(runner)
    if pid is not None:
        raise StackError(
            f"the stack already runs in the background (supervisor pid {pid}); "
            "use it as it is, or `make stack-down` first"
        )
    return supervise(
        components(cfg),
        runner,
        echo=_flushed_print,
        on_ready=lambda: _flushed_print(quick_start(cfg, runner.log_dir)),
    )


def _flushed_print(line: str) -> None:
    print(line, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.stack")
    parser.add_argument(
        "command",
        choices=["up", "down", "status", "run", "env", "exec", "clean", "supervise"],
        help="supervise: the background supervisor that `up` starts (not for direct use)",
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="exec: -- CMD ARGS...")
    args = parser.parse_args(argv)
    try:
        cfg = StackConfig.from_env()  # a malformed CHATSTACK_* value is a StackError too
        runner = Runner(cfg.home, echo=_flushed_print)
        if args.command == "up":
            up(cfg, runner)
        elif args.command == "down":
            down(cfg, runner)
        elif args.command == "run":
            return run_foreground(cfg, runner)
        elif args.command == "supervise":
            write_env_file(cfg)
            return supervise(
                components(cfg),
                runner,
                echo=_flushed_print,
                on_ready=lambda: _flushed_print("[stack] every component is ready; supervising"),
            )
        elif args.command == "exec":
            rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
            return exec_with_stack(cfg, runner, rest)
        elif args.command == "env":
            print(write_env_file(cfg))
        elif args.command == "clean":
            clean(cfg, runner)
        else:
            print("\n".join(status_lines(cfg, runner)))
    except StackError as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `stack status | head`: the reader is gone; say nothing more (not even at exit).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
