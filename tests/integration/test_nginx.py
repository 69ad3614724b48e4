"""nginx from the generated config proxies HTTP and WebSocket traffic to an upstream."""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from deploy.local.nginx import Route, render_nginx_conf
from deploy.local.processes import Component, Runner
from tests.integration.ports import free_port


async def _echo_headers(request: web.Request) -> web.Response:
    return web.json_response(
        {"path": request.path, "request_id": request.headers.get("X-Request-ID", "")}
    )


async def _ws_echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for msg in ws:
        if msg.type == aiohttp.WSMsgType.TEXT:
            await ws.send_str(f"echo:{msg.data}")
    return ws


@pytest.fixture
async def upstream() -> AsyncIterator[int]:
    """A small aiohttp app standing in for a service, on a free port."""
    app = web.Application()
    app.router.add_get("/v1/ws", _ws_echo)
    app.router.add_route("*", "/v1/{tail:.*}", _echo_headers)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield port
    await runner.cleanup()


def _start_nginx(tmp_path: Path, routes: list[Route], **limits: int) -> Iterator[tuple[int, Path]]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    prefix = tmp_path / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(
        render_nginx_conf(
            listen=f"127.0.0.1:{port}", prefix=prefix, log_dir=logs, routes=routes, **limits
        )
    )
    runner = Runner(tmp_path / "stack", echo=lambda _line: None)

    def ready() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True

    runner.start(Component("nginx", [binary, "-p", str(prefix), "-c", str(conf)], ready=ready))
    yield port, logs
    runner.stop("nginx")
    assert runner.pid("nginx") is None


@pytest.fixture
def nginx(tmp_path: Path, upstream: int) -> Iterator[tuple[int, Path]]:
    """nginx started by the stack's runner with a config rendered for the test upstream."""
    routes = [
        Route("test_ws", "/v1/ws", [upstream], websocket=True),
        Route("test_dead", "/v1/dead-ws", [free_port()], websocket=True),
        Route("test_auth", "/v1/auth/", [upstream]),
        Route("test_api", "/v1/", [upstream]),
    ]
    yield from _start_nginx(tmp_path, routes)


@pytest.fixture
def strict_nginx(tmp_path: Path, upstream: int) -> Iterator[tuple[int, Path]]:
    """nginx whose auth routes allow 1 request/s per address with a burst of 2."""
    routes = [Route("test_auth", "/v1/auth/", [upstream]), Route("test_api", "/v1/", [upstream])]
    yield from _start_nginx(tmp_path, routes, auth_rate_per_s=1, auth_burst=2)


async def test_proxies_http_and_passes_request_id(nginx: tuple[int, Path]) -> None:
    """A request through nginx reaches the upstream with its X-Request-ID, echoed to the client."""
    port, _logs = nginx
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}/v1/teams", headers={"X-Request-ID": "req-123"}
        ) as resp,
    ):
        body = await resp.json()
        assert resp.status == 200
        assert body == {"path": "/v1/teams", "request_id": "req-123"}
        assert resp.headers["X-Request-ID"] == "req-123"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_generates_request_id_when_absent(nginx: tuple[int, Path]) -> None:
    """Without a client X-Request-ID, nginx makes one and the upstream sees the same value."""
    port, _logs = nginx
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/v1/x") as resp,
    ):
        body = await resp.json()
        assert len(body["request_id"]) == 32
        assert resp.headers["X-Request-ID"] == body["request_id"]


async def test_websocket_upgrade_and_token_not_logged(nginx: tuple[int, Path]) -> None:
    """A WebSocket passes through nginx both ways, and the ?token= value never reaches the log."""
    port, logs = nginx
    secret = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1MSJ9.c2lnbmF0dXJl"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{port}/v1/ws?token={secret}") as ws,
    ):
        await ws.send_str("hi")
        reply = await ws.receive(timeout=5)
        assert reply.data == "echo:hi"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/nowhere?token={secret}") as resp,
    ):
        assert resp.status == 404
        assert (await resp.json())["error"]["code"] == "not_found"
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/v1/dead-ws?token={secret}") as resp,
    ):
        assert resp.status == 503
        assert (await resp.json())["error"]["code"] == "unavailable"
    access = (logs / "nginx-access.log").read_text()
    assert '"uri":"/v1/ws"' in access
    for log in logs.iterdir():
        assert secret not in log.read_text(), log.name


async def test_auth_routes_rate_limited_with_json_envelope(
    strict_nginx: tuple[int, Path],
) -> None:
    """Past the burst, auth routes answer 429 in the error envelope; other routes are unlimited."""
    port, logs = strict_nginx
    base = f"http://127.0.0.1:{port}"
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(8):
            async with session.post(f"{base}/v1/auth/login", headers={"X-Request-ID": "rl-1"}) as r:
                statuses.append(r.status)
                if r.status == 429:
                    body = await r.json()
                    assert r.headers["Content-Type"] == "application/json"
                    assert r.headers["X-Request-ID"] == "rl-1"
                    assert body == {
                        "error": {
                            "code": "rate_limited",
                            "message": "too many requests, slow down",
                            "request_id": "rl-1",
                        }
                    }
        assert statuses[:3] == [200, 200, 200]
        assert 429 in statuses
        for _ in range(8):
            async with session.get(f"{base}/v1/teams") as r:
                assert r.status == 200
    assert '"status":429' in (logs / "nginx-access.log").read_text()


async def test_large_body_rejected_with_json_envelope(nginx: tuple[int, Path]) -> None:
    """A body over client_max_body_size gets 413 in the error envelope before any upstream."""
    port, _logs = nginx
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"http://127.0.0.1:{port}/v1/teams", data=b"x" * 100_000) as resp,
    ):
        assert resp.status == 413
        assert (await resp.json())["error"]["code"] == "too_large"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_security_headers(nginx: tuple[int, Path]) -> None:
    """Every answer carries the security headers, including nginx's own 404."""
    port, _logs = nginx
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/nowhere") as resp,
    ):
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        assert "Server" not in resp.headers or "nginx/" not in resp.headers["Server"]
