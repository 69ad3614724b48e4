"""The shared HTTP plumbing: error envelope, request ids, body parsing, health and metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from chatcore.errors import Forbidden, RateLimited, Unavailable
from chatcore.http import Health, make_app, ok, read_json_object
from tests.logs import json_logs

MAX_BODY = 2048


async def _echo(request: web.Request) -> web.Response:
    body = await read_json_object(request, max_bytes=MAX_BODY)
    return ok(body, meta={"echo": True}, status=201)


async def _echo_large(request: web.Request) -> web.Response:
    body = await read_json_object(request, max_bytes=64 * 1024)
    return ok(body)


async def _forbidden(_request: web.Request) -> web.Response:
    raise Forbidden("admins only")


async def _limited(_request: web.Request) -> web.Response:
    raise RateLimited("slow down", retry_after=7.2)


async def _boom(_request: web.Request) -> web.Response:
    raise RuntimeError("secret internals")


async def _down(_request: web.Request) -> web.Response:
    raise Unavailable("clamd at clamd:3310 unavailable: ConnectionRefusedError")


class _Busy(Unavailable):
    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


async def _busy(_request: web.Request) -> web.Response:
    raise _Busy("all slots taken", retry_after=0.4)


async def _cached(_request: web.Request) -> web.Response:
    return web.json_response({}, headers={"Cache-Control": "public, max-age=300"})


class _Flag:
    def __init__(self) -> None:
        self.up = True

    async def check(self) -> bool:
        return self.up


@pytest.fixture
def flag() -> _Flag:
    """A readiness dependency the test can switch off."""
    return _Flag()


@pytest.fixture
async def client(flag: _Flag) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """A real HTTP server on a loopback port running an app built with ``make_app``."""
    app = make_app(
        registry=CollectorRegistry(),
        health=Health({"database": flag.check}),
        max_body_bytes=MAX_BODY,
    )
    app.router.add_post("/v1/echo", _echo)
    app.router.add_post("/v1/echo-large", _echo_large)
    app.router.add_get("/v1/forbidden", _forbidden)
    app.router.add_get("/v1/limited", _limited)
    app.router.add_get("/v1/boom", _boom)
    app.router.add_get("/v1/down", _down)
    app.router.add_get("/v1/busy", _busy)
    app.router.add_get("/v1/cached", _cached)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_success_envelope_and_generated_request_id(
    client: TestClient[web.Request, web.Application],
) -> None:
    """A success answers {"data", "meta"} and carries a generated X-Request-ID."""
    resp = await client.post("/v1/echo", json={"a": 1})
    assert resp.status == 201
    assert await resp.json() == {"data": {"a": 1}, "meta": {"echo": True}}
    assert len(resp.headers["X-Request-ID"]) == 32


async def test_answers_are_not_stored_by_caches_unless_the_handler_says(
    client: TestClient[web.Request, web.Application],
) -> None:
    """Successes and errors carry Cache-Control: no-store; a handler's own value is kept."""
    for method, path in (("POST", "/v1/echo"), ("GET", "/v1/forbidden"), ("GET", "/v1/nowhere")):
        resp = await client.request(method, path, json={"a": 1})
        assert resp.headers["Cache-Control"] == "no-store", path
    resp = await client.get("/v1/cached")
    assert resp.headers["Cache-Control"] == "public, max-age=300"


async def test_client_request_id_is_kept_when_well_formed(
    client: TestClient[web.Request, web.Application],
) -> None:
    """A plain client X-Request-ID is echoed; one with odd characters is replaced."""
    good = await client.get("/v1/forbidden", headers={"X-Request-ID": "abc-123"})
    assert good.headers["X-Request-ID"] == "abc-123"
    assert (await good.json())["error"]["request_id"] == "abc-123"
    bad = await client.get("/v1/forbidden", headers={"X-Request-ID": "x" * 65})
    assert bad.headers["X-Request-ID"] != "x" * 65


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "malformed"),
        (b"\xff\xfe", 400, "malformed"),
        (b"[1, 2]", 422, "invalid"),
        (b'{"a": "' + b"x" * MAX_BODY + b'"}', 413, "too_large"),
    ],
)
async def test_bad_bodies_get_clear_errors(
    client: TestClient[web.Request, web.Application], body: bytes, status: int, code: str
) -> None:
    """Malformed JSON is 400, a non-object 422, an oversized body 413, all in the envelope."""
    resp = await client.post("/v1/echo", data=body, headers={"Content-Type": "application/json"})
    assert resp.status == status
    payload = await resp.json()
    assert payload["error"]["code"] == code
    assert payload["error"]["request_id"] == resp.headers["X-Request-ID"]


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 5000 + b"]" * 5000,
        b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        b'{"size": ' + b"9" * 5000 + b"}",
        b'{"size": -' + b"1" * 4301 + b"}",
    ],
    ids=["nested-array", "nested-in-object", "5000-digit-int", "4301-digit-negative-int"],
)
async def test_bodies_python_json_gives_up_on_are_400_not_500(
    client: TestClient[web.Request, web.Application], body: bytes
) -> None:
    """5,000 nested brackets (RecursionError) and huge integers (ValueError) are 400 malformed."""
    resp = await client.post(
        "/v1/echo-large", data=body, headers={"Content-Type": "application/json"}
    )
    assert resp.status == 400
    payload = await resp.json()
    assert payload["error"]["code"] == "malformed"
    assert payload["error"]["request_id"] == resp.headers["X-Request-ID"]


async def test_oversized_chunked_body_is_413(
    client: TestClient[web.Request, web.Application],
) -> None:
    """A body without Content-Length is still cut off at the limit."""

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"x" * 1024

    resp = await client.post("/v1/echo", data=chunks())
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "too_large"


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_arriving_in_pieces_is_read_whole(
    client: TestClient[web.Request, web.Application], chunked: bool
) -> None:
    """A JSON body sent in several writes a moment apart (a slow link, a proxy) is parsed whole,
    with or without Content-Length; a piecewise body over the limit is still 413."""
    body = json.dumps({"data": "x" * 1500}).encode()

    async def pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 400):
            await asyncio.sleep(0.02)
            yield body[start : start + 400]

    headers = {"Content-Type": "application/json"}
    if not chunked:
        headers["Content-Length"] = str(len(body))
    resp = await client.post("/v1/echo", data=pieces(), headers=headers)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["data"] == {"data": "x" * 1500}
    body = json.dumps({"data": "x" * 3000}).encode()
    resp = await client.post("/v1/echo", data=pieces())
    assert resp.status == 413


async def test_domain_errors_map_to_status(
    client: TestClient[web.Request, web.Application],
) -> None:
    """Forbidden is 403, RateLimited 429 with Retry-After, Unavailable 503 without its text."""
    forbidden = await client.get("/v1/forbidden")
    assert forbidden.status == 403
    assert (await forbidden.json())["error"] == {
        "code": "forbidden",
        "message": "admins only",
        "request_id": forbidden.headers["X-Request-ID"],
    }
    limited = await client.get("/v1/limited")
    assert limited.status == 429
    assert limited.headers["Retry-After"] == "8"  # rounded up: never too early
    down = await client.get("/v1/down")
    assert down.status == 503
    # The dependency's own text (hosts, ports, its reply) is for the log, not the client.
    assert (await down.json())["error"]["code"] == "unavailable"
    assert (await down.json())["error"]["message"] == "temporarily unavailable; retry later"
    assert "Retry-After" not in down.headers
    busy = await client.get("/v1/busy")
    assert busy.status == 503
    assert busy.headers["Retry-After"] == "1"
    assert (await busy.json())["error"]["code"] == "unavailable"


async def test_unexpected_error_is_500_without_internals(
    client: TestClient[web.Request, web.Application],
) -> None:
    """An unhandled exception answers a generic 500 that leaks nothing of the exception."""
    resp = await client.get("/v1/boom")
    assert resp.status == 500
    text = await resp.text()
    assert "secret internals" not in text
    assert json.loads(text)["error"]["code"] == "internal"


async def test_unknown_route_and_method_use_the_envelope(
    client: TestClient[web.Request, web.Application],
) -> None:
    """aiohttp's own 404 and 405 answers come in the error envelope too."""
    missing = await client.get("/v1/nope")
    assert missing.status == 404
    assert (await missing.json())["error"]["code"] == "not_found"
    wrong = await client.delete("/v1/echo")
    assert wrong.status == 405
    assert (await wrong.json())["error"]["code"] == "method_not_allowed"
    assert wrong.headers["Allow"] == "POST"


async def test_readiness_follows_dependencies(
    client: TestClient[web.Request, web.Application], flag: _Flag
) -> None:
    """/healthz is always 200; /readyz is 503 naming the failing dependency while it is down."""
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    flag.up = False
    assert (await client.get("/healthz")).status == 200
    down = await client.get("/readyz")
    assert down.status == 503
    assert "database" in (await down.json())["error"]["message"]


async def test_metrics_count_requests_by_route_template(
    client: TestClient[web.Request, web.Application],
) -> None:
    """/metrics exposes request counts labelled by route template and status."""
    await client.get("/v1/forbidden")
    text = await (await client.get("/metrics")).text()
    assert 'http_requests_total{method="GET",route="/v1/forbidden",status="403"} 1.0' in text


async def test_access_log_line_has_ids_and_no_query(
    client: TestClient[web.Request, web.Application],
) -> None:
    """Each request logs one JSON line with its request id and path, never the query string."""
    with json_logs("test") as stream:
        resp = await client.get(
            "/v1/forbidden?token=abc.def.ghi", headers={"X-Request-ID": "rid-1"}
        )
        assert resp.status == 403
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    access = [line for line in lines if line["event"] == "http_request"]
    assert access[0]["request_id"] == "rid-1"
    assert access[0]["path"] == "/v1/forbidden"
    assert "abc.def.ghi" not in stream.getvalue()
