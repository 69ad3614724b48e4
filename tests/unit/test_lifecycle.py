"""serve_app: a bind that fails leaves no half-started application behind; a service with a bad
setting ends with one line and status 78."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from aiohttp import web

from chatcore.lifecycle import EXIT_CONFIG, serve_app


async def test_a_taken_port_fails_the_start_and_runs_the_apps_cleanup() -> None:
    """Port in use: serve_app raises, and the app's on_cleanup hooks have run."""
    cleaned: list[str] = []

    async def cleanup(_app: web.Application) -> None:
        cleaned.append("done")

    app = web.Application()
    app.on_cleanup.append(cleanup)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="in use"):
            await serve_app(app, host="127.0.0.1", port=port, drain_timeout_s=1.0)
    assert cleaned == ["done"]


@pytest.mark.parametrize(
    ("module", "env", "said"),
    [
        ("services.relay", {"CHAT_DRAIN_TIMEOUT_S": "inf"}, "CHAT_DRAIN_TIMEOUT_S"),
        ("services.controller", {"CHAT_HTTP_HOST": ""}, "CHAT_HTTP_HOST"),
        ("services.management", {"CHAT_TRUSTED_PROXIES": "nginx"}, "CHAT_TRUSTED_PROXIES"),
        ("services.auth", {"CHAT_AUTH_SIGNING_KEYS": "/"}, "signing key file / cannot be read"),
    ],
)
def test_a_configuration_error_ends_a_service_with_one_line_and_status_78(
    module: str, env: dict[str, str], said: str
) -> None:
    """A bad setting, read at start-up or met while starting, is one line on stderr naming it
    (no traceback) and exit status 78, which supervisors can tell from a crash."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CHAT_")}
    done = subprocess.run(
        [sys.executable, "-m", module],
        env={**clean, "CHAT_INTERNAL_TOKEN": "x" * 32, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_CONFIG, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"{module.split('.')[1]}: configuration error: ")
    assert said in line
