"""The local stack's command line: ``python -m deploy.local.stack up|down|status|run|env|exec``.

``deploy/local/install.sh`` installs the binaries first (``make stack-up`` does both). Everything
the stack writes lives under ``.stack/`` (``CHATSTACK_HOME``); downloads and builds are cached in
``~/.cache/chatstack`` (``CHATSTACK_CACHE``). ``exec -- CMD`` runs a command with the stack up and
stops afterwards only what it started, which is how ``make test`` runs the suite.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from deploy.local.components import (
    StackConfig,
    clamd_component,
    ferretdb_component,
    kafka_component,
    nginx_component,
    postgres_component,
    python_service_component,
    s3_component,
    service_env,
)
from deploy.local.processes import Component, Runner, StackError


def write_env_file(cfg: StackConfig) -> Path:
    path = cfg.home / "env"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}={value}" for key, value in sorted(service_env(cfg).items())]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)
    return path


# --- CLI ---------------------------------------------------------------------------------------


def components(cfg: StackConfig) -> list[Component]:
    """Every component in start order: infrastructure, services, then the edge."""
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
    database = [postgres_component(cfg)] if cfg.db_backend == "postgresql" else []
    return [
        kafka_component(cfg),
        *database,
        ferretdb_component(cfg),
        s3_component(cfg),
        # Before the services: the management service scans every upload with it.
        clamd_component(cfg),
        python_service_component(cfg, "auth", "services.auth", cfg.auth_port),
        python_service_component(
            cfg,
            "controller",
            "services.controller",
            cfg.controller_http_port,
            ports=(cfg.controller_grpc_port,),
        ),
        *relays,
        python_service_component(cfg, "management", "services.management", cfg.management_port),
        nginx_component(cfg),
    ]


def up(cfg: StackConfig, runner: Runner) -> list[str]:
    """Start every component that is not running; return the names started now."""
    write_env_file(cfg)
    started: list[str] = []
    try:
        for comp in components(cfg):
            if runner.start(comp):
                started.append(comp.name)
    except StackError:
        down(cfg, runner, only=started)
        raise
    return started


def down(cfg: StackConfig, runner: Runner, *, only: Sequence[str] | None = None) -> None:
    """Stop components in reverse start order (all of them, or only the named ones)."""
    for comp in reversed(components(cfg)):
        if only is None or comp.name in only:
            runner.stop(comp.name, comp.stop_timeout_s, comp.stop_signal)


def exec_with_stack(cfg: StackConfig, runner: Runner, command: Sequence[str]) -> int:
    """Run a command with the stack up; stop afterwards only what this call started."""
    if not command:
        raise StackError("exec: no command given (usage: exec -- CMD ARGS...)")
    started = up(cfg, runner)
    try:
        env = {**os.environ, **service_env(cfg)}
        return subprocess.run(list(command), env=env, check=False).returncode
    finally:
        down(cfg, runner, only=started)


def quick_start(cfg: StackConfig, log_dir: Path) -> str:
    """What ``make run`` prints once everything is up: the URLs and a copy-paste quick start."""
    base = f"http://127.0.0.1:{cfg.nginx_port}"
    relays = ", ".join(str(p) for p in cfg.relay_ports)
    return f"""
[stack] up: {base}   (logs in {log_dir}; Ctrl-C stops everything)

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
    """Start everything, wait for Ctrl-C or SIGTERM (or a crash), then stop everything."""
    stopping = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    up(cfg, runner)
    names = [c.name for c in components(cfg)]
    print(quick_start(cfg, runner.log_dir), flush=True)
    status = 0
    while not stopping:
        time.sleep(0.5)
        gone = runner.exited(names)
        if gone:
            for name in gone:
                print(f"[stack] {name} exited unexpectedly; log {runner.log_path(name)}")
            status = 1
            break
    down(cfg, runner)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.local.stack")
    parser.add_argument("command", choices=["up", "down", "status", "run", "env", "exec"])
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="exec: -- CMD ARGS...")
    args = parser.parse_args(argv)
    cfg = StackConfig.from_env()
    runner = Runner(cfg.home)
    try:
        if args.command == "up":
            up(cfg, runner)
        elif args.command == "down":
            down(cfg, runner)
        elif args.command == "run":
            return run_foreground(cfg, runner)
        elif args.command == "exec":
            rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
            return exec_with_stack(cfg, runner, rest)
        elif args.command == "env":
            print(write_env_file(cfg))
        else:
            for comp in components(cfg):
                pid = runner.pid(comp.name)
                print(f"{comp.name:10} {'running pid ' + str(pid) if pid else 'stopped'}")
    except StackError as exc:
        print(f"[stack] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
