"""The local stack's database: PostgreSQL (as root, under the postgres user with its data outside
the home) and FerretDB in front of it, with the collections' indexes created once it answers."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
from pathlib import Path

from deploy.local.config import (
    StackConfig,
    service_env,
)
from deploy.local.datadirs import (
    check_traversable,
    postmaster_running,
    prepare_shared_folder,
    prune_orphans,
)
from deploy.local.processes import Component, StackError

# --- PostgreSQL (FerretDB's backend) ----------------------------------------------------------


def _postgres_bin(name: str) -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise StackError("postgres: not installed; run deploy/local/install.sh")
    return found[-1]


def _as_postgres_user(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; as root we drop to the Debian package's postgres user
    # with setpriv, which execs in place so the runner's process group holds the server itself.
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--", *argv]


def _prepare_postgres_folder(cfg: StackConfig, data_dir: Path) -> None:
    """As root: the data folder outside the home, reachable and owned by the postgres user."""
    if os.geteuid() != 0:
        data_dir.mkdir(parents=True, exist_ok=True)
        return
    check_traversable(cfg.system_data.parent)
    for gone in prune_orphans(cfg.system_data, in_use=postmaster_running):
        print(f"[stack] postgres: removed {gone}, the data of a stack home that no longer exists")
    folder, stale = prepare_shared_folder(cfg.home, cfg.system_data)
    if stale:
        print(f"[stack] postgres: removed stale data in {folder} (an earlier home at this path)")
    data_dir.mkdir(exist_ok=True)
    shutil.chown(data_dir, "postgres", "postgres")
    data_dir.chmod(0o700)


def postgres_component(cfg: StackConfig) -> Component:
    data_dir = cfg.postgres_data

    def prepare() -> None:
        initdb = _postgres_bin("initdb")
        _prepare_postgres_folder(cfg, data_dir)
        if (data_dir / "PG_VERSION").exists():
            return
        result = subprocess.run(
            _as_postgres_user(
                [
                    str(initdb),
                    "-D",
                    str(data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            capture_output=True,
            text=True,
            check=False,
            # PostgreSQL's tools chdir back to where they started: that must be reachable too.
            cwd=data_dir.parent,
        )
        if result.returncode != 0:
            raise StackError(f"postgres: initdb failed:\n{result.stdout}\n{result.stderr}")

    def ready() -> bool:
        check = subprocess.run(
            [
                str(_postgres_bin("pg_isready")),
                "-q",
                "-U",
                "postgres",
                "-h",
                "127.0.0.1",
                "-p",
                str(cfg.postgres_port),
            ],
            check=False,
        )
        return check.returncode == 0

    def after_ready() -> None:
        from deploy.local.pg_indexes import install

        try:
            install(_postgres_bin("psql"), cfg.postgres_port)
        except RuntimeError as exc:
            raise StackError(f"postgres: {exc}") from exc

    return Component(
        name="postgres",
        argv=_as_postgres_user(
            [
                str(_postgres_bin("postgres")) if _postgres_installed() else "postgres",
                "-D",
                str(data_dir),
                "-p",
                str(cfg.postgres_port),
                "-c",
                "listen_addresses=127.0.0.1",
                # Unix sockets would need a folder the postgres user may write; TCP suffices.
                "-c",
                "unix_socket_directories=",
                # FerretDB binds field names as parameters; only a custom plan can use the GIN
                # indexes of pg_indexes.py.
                "-c",
                "plan_cache_mode=force_custom_plan",
                # A unique-index refusal (a taken email at registration) is logged without its
                # DETAIL line, which quotes the key: users' addresses stay out of the log.
                "-c",
                "log_error_verbosity=terse",
            ]
        ),
        ready=ready,
        ports=(cfg.postgres_port,),
        prepare=prepare,
        after_ready=after_ready,
        cwd=data_dir.parent,
        # SIGINT is PostgreSQL's fast shutdown; SIGTERM would wait for every client to leave.
        stop_signal=signal.SIGINT,
    )


def _postgres_installed() -> bool:
    return any(Path("/usr/lib/postgresql").glob("*/bin/postgres"))


# --- FerretDB ----------------------------------------------------------------------------------


def ferretdb_component(cfg: StackConfig) -> Component:
    data_dir = cfg.data / "ferretdb"
    state_dir = cfg.data / "ferretdb-state"
    if cfg.db_backend == "sqlite":
        backend_args = ["--handler=sqlite", f"--sqlite-url=file:{data_dir}/"]
    else:
        backend_args = [
            "--handler=postgresql",
            f"--postgresql-url=postgres://postgres@127.0.0.1:{cfg.postgres_port}/postgres",
        ]

    def prepare() -> None:
        if not cfg.ferretdb_bin.exists():
            raise StackError(f"ferretdb: {cfg.ferretdb_bin} missing; run deploy/local/install.sh")
        data_dir.mkdir(parents=True, exist_ok=True)
        state_dir.mkdir(parents=True, exist_ok=True)

    def ready() -> bool:
        from pymongo import MongoClient
        from pymongo.errors import PyMongoError

        client: MongoClient[dict[str, object]]
        try:
            with MongoClient(
                f"mongodb://127.0.0.1:{cfg.mongo_port}/", serverSelectionTimeoutMS=1000
            ) as client:
                return bool(client.admin.command("ping").get("ok"))
        except PyMongoError:
            return False  # not listening yet, or its backend not up yet

    def after_ready() -> None:
        asyncio.run(_create_indexes(cfg))

    return Component(
        name="ferretdb",
        argv=[
            str(cfg.ferretdb_bin),
            *backend_args,
            f"--state-dir={state_dir}",
            f"--listen-addr=127.0.0.1:{cfg.mongo_port}",
            f"--debug-addr=127.0.0.1:{cfg.ferretdb_debug_port}",
            "--telemetry=disable",
            "--log-level=ERROR",
            "--log-format=json",
        ],
        ready=ready,
        ports=(cfg.mongo_port, cfg.ferretdb_debug_port),
        prepare=prepare,
        after_ready=after_ready,
    )


async def _create_indexes(cfg: StackConfig) -> None:
    from chatcore.mongo import database, ensure_indexes, make_mongo_client
    from chatcore.settings import Settings

    settings = Settings.from_env(service_env(cfg))
    client = make_mongo_client(settings)
    try:
        await ensure_indexes(database(client, settings))
    finally:
        await client.close()
