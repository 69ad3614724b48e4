"""What answers HTTP in the local stack: nginx in front (its config rendered by ``nginx.py``) and
our Python services, each ready when its ``/readyz`` answers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from deploy.local.config import (
    REPO,
    StackConfig,
    service_env,
)
from deploy.local.datadirs import (
    check_traversable,
    prepare_shared_folder,
)
from deploy.local.nginx import LOCAL_WEB_ROOT, chat_routes, render_nginx_conf
from deploy.local.processes import Component, StackError, http_ok

# --- nginx -------------------------------------------------------------------------------------


def _nginx_worker_paths(cfg: StackConfig) -> tuple[Path, Path]:
    """Where nginx's workers read the browser app and keep temporary files.

    As root, nginx runs its workers as `nobody`, which cannot pass through a private folder
    holding the clone or the home (a clone in /root or under `mktemp -d`): they get the home's
    shared folder (datadirs.py), with a copy of web/dist taken now (a rebuild is served from the
    next start). Otherwise the clone and the home serve as they are."""
    if os.geteuid() != 0:
        return LOCAL_WEB_ROOT, cfg.home / "nginx" / "tmp"
    check_traversable(cfg.system_data.parent)
    folder, _stale = prepare_shared_folder(cfg.home, cfg.system_data)
    web = folder / "web"
    shutil.rmtree(web, ignore_errors=True)
    if LOCAL_WEB_ROOT.is_dir():
        shutil.copytree(LOCAL_WEB_ROOT, web)
        for path in [web, *web.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    else:
        web.mkdir()
    return web, folder / "nginx-tmp"


def nginx_component(cfg: StackConfig) -> Component:
    prefix = cfg.home / "nginx"
    conf = prefix / "nginx.conf"
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"

    def prepare() -> None:
        if not Path(nginx).exists():
            raise StackError("nginx: not installed; run deploy/local/install.sh")
        prefix.mkdir(parents=True, exist_ok=True)
        web_root, temp_dir = _nginx_worker_paths(cfg)
        temp_dir.mkdir(parents=True, exist_ok=True)
        conf.write_text(
            render_nginx_conf(
                listen=f"127.0.0.1:{cfg.nginx_port}",
                prefix=prefix,
                log_dir=cfg.home / "logs",
                routes=chat_routes(
                    relay_ports=cfg.relay_ports,
                    auth_ports=cfg.auth_ports,
                    management_ports=cfg.management_ports,
                ),
                limits=cfg.edge_limits,
                s3_origin=service_env(cfg)["CHAT_S3_ENDPOINT"],
                web_root=web_root,
                temp_dir=temp_dir,
            )
        )
        check = subprocess.run(
            [nginx, "-t", "-q", "-p", str(prefix), "-c", str(conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise StackError(f"nginx: generated config {conf} is invalid:\n{check.stderr}")

    def ready() -> bool:
        return http_ok(f"http://127.0.0.1:{cfg.nginx_port}/healthz", timeout_s=1)

    return Component(
        name="nginx",
        argv=[nginx, "-p", str(prefix), "-c", str(conf)],
        ready=ready,
        ports=(cfg.nginx_port,),
        prepare=prepare,
    )


# --- Python services ---------------------------------------------------------------------------


def python_service_component(
    cfg: StackConfig,
    name: str,
    module: str,
    port: int,
    *,
    extra_env: dict[str, str] | None = None,
    ports: tuple[int, ...] = (),
) -> Component:
    """One of our services, run from the virtualenv; ready when its ``/readyz`` answers 200."""
    env = {**service_env(cfg), "PYTHONUNBUFFERED": "1", **(extra_env or {})}

    return Component(
        name=name,
        argv=[sys.executable, "-m", module],
        env=env,
        cwd=REPO,
        # 503 while a dependency (Kafka, the database, a controller stream) is not up yet.
        ready=lambda: http_ok(f"http://127.0.0.1:{port}/readyz"),
        ports=(port, *ports),
        ready_timeout_s=30.0,
    )
