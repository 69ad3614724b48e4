"""serve_app: a bind that fails leaves no half-started application behind."""

from __future__ import annotations

import socket

import pytest
from aiohttp import web

from chatcore.lifecycle import serve_app


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
