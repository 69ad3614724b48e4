"""nginx from the generated config proxies HTTP and WebSocket traffic to an upstream."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from deploy.local.nginx import EdgeLimits, Route, render_nginx_conf
from deploy.local.processes import Component, Runner
from tests.integration.ports import free_port
from tests.integration.raw_http import request

NGINX_ID = re.compile(r"^[0-9a-f]{32}$")
ODD_IDS = ('a"b', "x" * 65, "<script>alert(1)</script>", "two words", "id\\u0000")


async def _echo_headers(request: web.Request) -> web.Response:
    # Like the services: the id it was given comes back in its own X-Request-ID header.
    rid = request.headers.get("X-Request-ID", "")
    return web.json_response(
        {"path": request.path, "request_id": rid}, headers={"X-Request-ID": rid}
    )


async def _slow(_request: web.Request) -> web.Response:
    await asyncio.sleep(1.5)
    return web.json_response({"slow": True})


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
    app.router.add_get("/v1/slow", _slow)
    app.router.add_route("*", "/v1/{tail:.*}", _echo_headers)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield port
    await runner.cleanup()


def _start_nginx(
    tmp_path: Path, routes: list[Route], limits: EdgeLimits | None = None
) -> Iterator[tuple[int, Path]]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    prefix = tmp_path / "nginx"
    (prefix / "tmp").mkdir(parents=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    conf = prefix / "nginx.conf"
    conf.write_text(
        render_nginx_conf(
            listen=f"127.0.0.1:{port}", prefix=prefix, log_dir=logs, routes=routes, limits=limits
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
    yield from _start_nginx(tmp_path, _routes(upstream))


def _routes(upstream: int) -> list[Route]:
    return [
        Route("test_ws", "/v1/ws", [upstream], websocket=True, methods=("GET",)),
        Route("test_dead", "/v1/dead-ws", [free_port()], websocket=True, methods=("GET",)),
        Route("test_auth", "/v1/auth/", [upstream], methods=("GET", "HEAD", "POST")),
        Route("test_api", "/v1/", [upstream]),
    ]


@pytest.fixture
def strict_nginx(tmp_path: Path, upstream: int) -> Iterator[tuple[int, Path]]:
    """nginx whose auth routes allow 1 request/s per address with a burst of 2."""
    routes = [Route("test_auth", "/v1/auth/", [upstream]), Route("test_api", "/v1/", [upstream])]
    yield from _start_nginx(tmp_path, routes, EdgeLimits(auth_rate_per_s=1, auth_burst=2))


@pytest.fixture
def socket_capped_nginx(tmp_path: Path, upstream: int) -> Iterator[tuple[int, Path]]:
    """nginx allowing 2 open WebSockets per client address."""
    limits = EdgeLimits(ws_connections_per_address=2)
    yield from _start_nginx(tmp_path, _routes(upstream), limits)


@pytest.fixture
def requests_capped_nginx(tmp_path: Path, upstream: int) -> Iterator[tuple[int, Path]]:
    """nginx allowing 2 requests in progress at once per client address."""
    limits = EdgeLimits(requests_in_flight_per_address=2)
    yield from _start_nginx(tmp_path, _routes(upstream), limits)


async def test_requests_in_progress_per_address_are_capped(
    requests_capped_nginx: tuple[int, Path],
) -> None:
    """With a cap of 2, four slow requests at once from one address: two are served, two get
    429 in the API's envelope at once; afterwards the address is served again."""
    port, _logs = requests_capped_nginx
    url = f"http://127.0.0.1:{port}/v1/slow"
    async with aiohttp.ClientSession() as session:

        async def get() -> tuple[int, str]:
            async with session.get(url) as resp:
                body = await resp.json()
                return resp.status, str(body.get("error", {}).get("code", ""))

        answers = await asyncio.gather(*(get() for _ in range(4)))
        assert sorted(answers) == [
            (200, ""),
            (200, ""),
            (429, "rate_limited"),
            (429, "rate_limited"),
        ]
        assert await get() == (200, "")


async def test_a_request_whose_headers_trickle_in_is_cut_after_ten_seconds(
    nginx: tuple[int, Path],
) -> None:
    """A client that sends part of its request headers and stops holds the connection about
    10 s (client_header_timeout), not nginx's default minute."""
    port, _logs = nginx
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /v1/teams HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    await writer.drain()
    started = asyncio.get_running_loop().time()
    async with asyncio.timeout(20):
        rest = await reader.read()
    held = asyncio.get_running_loop().time() - started
    writer.close()
    assert rest == b""
    assert 8 < held < 15


@pytest.fixture
def api_limited_nginx(tmp_path: Path, upstream: int) -> Iterator[tuple[int, Path]]:
    """nginx allowing 1 /v1/ request/s per client address with a burst of 3."""
    limits = EdgeLimits(api_rate_per_s=1, api_burst=3)
    yield from _start_nginx(tmp_path, _routes(upstream), limits)


async def test_proxies_http_and_passes_request_id(nginx: tuple[int, Path]) -> None:
    """A request through nginx reaches the upstream with its X-Request-ID, echoed to the client."""
    port, _logs = nginx
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"http://127.0.0.1:{port}/v1/teams", headers={"X-Request-ID": "req-1.2:3_x"}
        ) as resp,
    ):
        body = await resp.json()
        assert resp.status == 200
        assert body == {"path": "/v1/teams", "request_id": "req-1.2:3_x"}
        assert resp.headers.getall("X-Request-ID") == ["req-1.2:3_x"]
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


async def test_requests_nginx_cannot_take_get_the_json_envelope_too(
    nginx: tuple[int, Path],
) -> None:
    """A path that climbs above the root (400), a request line over nginx's buffers (414) and
    headers over them (431) answer in the API's error envelope, not nginx's HTML page."""
    port, _logs = nginx
    long_query = "&".join(f"a{i}=1" for i in range(3000))
    cases = (
        (b"GET /v1/../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", 400, "malformed"),
        (f"GET /v1/teams?{long_query} HTTP/1.1\r\nHost: x\r\n\r\n".encode(), 414, "too_large"),
        (
            b"GET /v1/teams HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
            431,
            "too_large",
        ),
    )
    for sent, status, code in cases:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(sent)
        await writer.drain()
        async with asyncio.timeout(10):
            answer = await reader.read()
        writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(f"HTTP/1.1 {status}".encode()), head[:40]
        assert b"Content-Type: application/json" in head
        assert json.loads(body)["error"]["code"] == code


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


async def test_odd_request_ids_are_replaced_never_echoed(nginx: tuple[int, Path]) -> None:
    """An X-Request-ID outside the services' pattern is replaced by nginx's own, everywhere."""
    port, logs = nginx
    async with aiohttp.ClientSession() as session:
        for odd in ODD_IDS:
            async with session.get(
                f"http://127.0.0.1:{port}/v1/teams", headers={"X-Request-ID": odd}
            ) as resp:
                body = await resp.json()
                assert NGINX_ID.match(body["request_id"]), odd
                assert resp.headers.getall("X-Request-ID") == [body["request_id"]]
            status, headers, raw = await asyncio.to_thread(
                request, f"http://127.0.0.1:{port}", "GET", "/nowhere", {"X-Request-ID": odd}
            )
            assert status == 404
            error = json.loads(raw)["error"]
            assert NGINX_ID.match(error["request_id"]), odd
            assert headers.get_all("X-Request-ID") == [error["request_id"]]
            assert odd.encode() not in raw
    assert 'a\\"b' not in (logs / "nginx-access.log").read_text()


async def test_exactly_one_request_id_on_every_answer(nginx: tuple[int, Path]) -> None:
    """Proxied answers (whose upstream sets its own) and nginx's errors carry one X-Request-ID."""
    port, _logs = nginx
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/v1/teams") as resp:
            assert resp.status == 200
            ids = resp.headers.getall("X-Request-ID")
            assert ids == [(await resp.json())["request_id"]]
        async with session.post(f"http://127.0.0.1:{port}/v1/teams", data=b"x" * 100_000) as resp:
            assert resp.status == 413
            assert resp.headers.getall("X-Request-ID") == [
                (await resp.json())["error"]["request_id"]
            ]
    for method, path in (("TRACE", "/v1/teams"), ("GET", "/nowhere"), ("GET", "/v1/dead-ws")):
        status, headers, raw = await asyncio.to_thread(
            request, f"http://127.0.0.1:{port}", method, path
        )
        assert status in (405, 404, 503)
        assert headers.get_all("X-Request-ID") == [json.loads(raw)["error"]["request_id"]]


async def test_undeclared_methods_get_json_405_with_allow(nginx: tuple[int, Path]) -> None:
    """TRACE, CONNECT, PROPFIND...: 405 in the envelope, Allow = what the route serves.

    OPTIONS is the exception: nginx passes it to the service, which alone knows each path's exact
    methods (the real stack's answer is checked in test_edge.py); only the relays' route refuses it.
    """
    port, _logs = nginx
    cases = {
        "/v1/ws": "GET",
        "/v1/auth/login": "GET, HEAD, POST",
        "/v1/teams/t1": "GET, HEAD, POST, PUT, PATCH, DELETE",
        "/healthz": "GET, HEAD",
    }
    for path, allow in cases.items():
        refused_here = ("TRACE", "CONNECT", "PROPFIND", "MKCOL")
        for method in (
            (*refused_here, "OPTIONS") if path in ("/v1/ws", "/healthz") else refused_here
        ):
            status, headers, raw = await asyncio.to_thread(
                request, f"http://127.0.0.1:{port}", method, path, {"X-Request-ID": "m-1"}
            )
            assert status == 405, (method, path)
            assert headers["Content-Type"] == "application/json"
            assert headers.get_all("Allow") == [allow], (method, path)
            assert json.loads(raw) == {
                "error": {
                    "code": "method_not_allowed",
                    "message": "method not allowed on this route",
                    "request_id": "m-1",
                }
            }
            assert headers["X-Content-Type-Options"] == "nosniff"
    status, _headers, _raw_body = await asyncio.to_thread(
        request, f"http://127.0.0.1:{port}", "POST", "/v1/ws"
    )
    assert status == 405
    status, headers, raw = await asyncio.to_thread(
        request, f"http://127.0.0.1:{port}", "TRACE", "/nowhere"
    )
    assert status == 404
    assert json.loads(raw)["error"]["code"] == "not_found"
    assert "Allow" not in headers


async def test_websockets_capped_per_client_address(
    socket_capped_nginx: tuple[int, Path],
) -> None:
    """Past the per-address socket cap nginx answers 429 (envelope); a freed slot is reusable."""
    port, _logs = socket_capped_nginx
    url = f"http://127.0.0.1:{port}/v1/ws"
    async with aiohttp.ClientSession() as session, AsyncExitStack() as sockets:
        held = [await sockets.enter_async_context(session.ws_connect(url)) for _ in range(2)]
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(url)
        assert refused.value.status == 429
        async with session.get(url) as resp:  # a plain GET shows the body of the refusal
            assert resp.status == 429
            assert (await resp.json())["error"]["code"] == "rate_limited"
        await held[0].close()
        third = await session.ws_connect(url)
        await third.send_str("still here")
        assert (await third.receive(timeout=5)).data == "echo:still here"
        await third.close()


async def test_api_requests_limited_per_client_address(
    api_limited_nginx: tuple[int, Path],
) -> None:
    """Every /v1/ route has a per-address bucket: past the burst, 429 in the error envelope."""
    port, _logs = api_limited_nginx
    statuses = []
    async with aiohttp.ClientSession() as session:
        for _ in range(10):
            async with session.get(
                f"http://127.0.0.1:{port}/v1/teams", headers={"X-Request-ID": "rl-2"}
            ) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert (await resp.json())["error"] == {
                        "code": "rate_limited",
                        "message": "too many requests, slow down",
                        "request_id": "rl-2",
                    }
    assert statuses[:3] == [200, 200, 200]
    assert statuses.count(429) >= 5


@pytest.fixture
def write_limited_nginx(tmp_path: Path, upstream: int) -> Iterator[tuple[int, Path]]:
    """nginx allowing 1 management write/s per bearer token with a burst of 2."""
    routes = [Route("test_api", "/v1/", [upstream], write_limited=True)]
    yield from _start_nginx(tmp_path, routes, EdgeLimits(write_rate_per_s=1, write_burst=2))


async def test_writes_are_limited_per_token_however_the_header_is_spelt(
    write_limited_nginx: tuple[int, Path],
) -> None:
    """One token is one bucket whatever the scheme's case or spacing (the services accept them
    all); another token has its own; marking read and reads are not charged."""
    port, _logs = write_limited_nginx
    base = f"http://127.0.0.1:{port}/v1/teams/t"
    spellings = [
        "Bearer tok-1",
        "bearer tok-1",
        "BEARER   tok-1",
        "Bearer\ttok-1 ",
        " bEaReR tok-1",
    ]
    async with aiohttp.ClientSession() as session:

        async def status(method: str, url: str, authorization: str) -> int:
            async with session.request(
                method, url, headers={"Authorization": authorization}
            ) as resp:
                return resp.status

        writes = [await status("PATCH", base, spellings[n % 5]) for n in range(10)]
        assert writes[:3] == [200, 200, 200]
        assert writes.count(429) >= 6
        assert await status("PATCH", base, "Bearer tok-2") == 200
        assert {await status("PUT", f"{base}/read", "Bearer tok-1") for _ in range(10)} == {200}
        assert {await status("GET", base, "Bearer tok-1") for _ in range(10)} == {200}
        assert await status("PUT", f"{base}/reactions/x", "Bearer tok-1") == 429
