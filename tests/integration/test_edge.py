"""The running stack through nginx: what a client on http://127.0.0.1:8080 sees."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import aiohttp

from chatclient import ChatClient, history, login, register
from chatcore.settings import Settings
from chatcore.tokens import HttpJwksSource, JwtVerifier
from tests.integration.frames import next_message
from tests.integration.raw_http import request

PASSWORD = "through the front door"
NGINX_ID = re.compile(r"^[0-9a-f]{32}$")


async def test_register_login_and_verify_through_nginx(
    settings: Settings, stack_env: dict[str, str]
) -> None:
    """A user registers and logs in via nginx; the token verifies against the public JWKS URL;
    what the API answers is never cached; no credential reaches a log, nor the address into the
    database's logs."""
    base = stack_env["CHATSTACK_NGINX_URL"]
    email = f"edge-{uuid.uuid4().hex[:10]}@example.com"
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{base}/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "E"}
        ) as resp:
            assert resp.status == 201
            assert resp.headers["X-Request-ID"]
        async with http.post(
            f"{base}/v1/auth/login", json={"email": email, "password": PASSWORD}
        ) as resp:
            assert resp.status == 200
            login = (await resp.json())["data"]
        async with http.get(
            f"{base}/v1/auth/me", headers={"Authorization": f"Bearer {login['access_token']}"}
        ) as resp:
            assert (await resp.json())["data"]["email"] == email
            # One user's data: no browser or proxy cache may keep it.
            assert resp.headers["Cache-Control"] == "no-store"
        async with http.get(
            f"{base}/v1/teams", headers={"Authorization": f"Bearer {login['access_token']}"}
        ) as resp:
            assert resp.status == 200
            assert resp.headers["Cache-Control"] == "no-store"
        async with http.get(f"{base}/v1/users/{login['user']['id']}") as resp:
            assert resp.status == 401
        # Taken: refused, and the database's unique-index error does not write the address out.
        async with http.post(
            f"{base}/v1/auth/register", json={"email": email, "password": PASSWORD, "name": "E"}
        ) as resp:
            assert resp.status == 409
        verifier = JwtVerifier.from_settings(settings, HttpJwksSource(http, settings.jwks_url))
        claims = await verifier.verify(login["access_token"])
        assert claims.sub == login["user"]["id"]

    logs = Path(stack_env["CHATSTACK_HOME"]) / "logs"
    for log in logs.glob("*.log"):
        text = log.read_text(errors="replace")
        for secret in (PASSWORD, login["access_token"], login["refresh_token"]):
            assert secret not in text, f"a credential appeared in {log.name}"
    for name in ("postgres.log", "ferretdb.log"):
        assert email not in (logs / name).read_text(errors="replace"), f"the address is in {name}"


async def test_chat_through_nginx_with_team_from_the_api(stack_env: dict[str, str]) -> None:
    """Two users create a team over REST and chat over WebSocket, all through nginx."""
    base = stack_env["CHATSTACK_NGINX_URL"]
    ws_url = base.replace("http://", "ws://") + "/v1/ws"
    emails = [f"edge-{uuid.uuid4().hex[:10]}@example.com" for _ in range(2)]
    for email in emails:
        await register(base, email, PASSWORD, "Edge")
    owner, member = [await login(base, email, PASSWORD) for email in emails]
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {owner.access_token}"}
        async with http.post(f"{base}/v1/teams", json={"name": "Edge team"}, headers=auth) as resp:
            assert resp.status == 201
            team_id = (await resp.json())["data"]["id"]
        async with http.post(
            f"{base}/v1/teams/{team_id}/members", json={"email": emails[1]}, headers=auth
        ) as resp:
            assert resp.status == 201
    async with (
        await ChatClient.connect(ws_url, owner.access_token) as first,
        await ChatClient.connect(ws_url, member.access_token, in_query=True) as second,
    ):
        assert team_id in first.hello["channels"]
        assert team_id in second.hello["channels"]
        ack = await first.send(team_id, "hello through nginx")
        event = await next_message(second)
        assert (event["id"], event["seq"], event["data"]) == (
            ack.id,
            ack.seq,
            "hello through nginx",
        )
    stored = await history(base, member.access_token, team_id)
    assert [m["id"] for m in stored] == [ack.id]


async def test_one_checked_request_id_on_proxied_and_nginx_answers(
    stack_env: dict[str, str],
) -> None:
    """Through nginx every answer has one X-Request-ID; an odd client value is never echoed."""
    base = stack_env["CHATSTACK_NGINX_URL"]
    answers = [
        ("GET", "/v1/auth/jwks", 200),  # auth, proxied
        ("GET", "/v1/teams", 401),  # management's own error, proxied
        ("GET", "/nowhere", 404),  # nginx
        ("TRACE", "/v1/teams", 405),  # nginx, refused before any location
    ]
    for method, path, expected in answers:
        status, headers, _body = await asyncio.to_thread(
            request, base, method, path, {"X-Request-ID": "edge-id.1:a"}
        )
        assert status == expected, (method, path)
        assert headers.get_all("X-Request-ID") == ["edge-id.1:a"], (method, path)
        for odd in ('a"b', "<x>", "x" * 65):
            status, headers, body = await asyncio.to_thread(
                request, base, method, path, {"X-Request-ID": odd}
            )
            assert status == expected
            ids = headers.get_all("X-Request-ID") or []
            assert len(ids) == 1, (method, path, ids)
            assert NGINX_ID.match(ids[0]), (method, path, odd)
            assert odd.encode() not in body
            if expected >= 400:
                assert json.loads(body)["error"]["request_id"] == ids[0]


async def test_undeclared_methods_answer_json_405_with_allow(stack_env: dict[str, str]) -> None:
    """TRACE, CONNECT, PROPFIND through the stack's nginx: the JSON envelope, 405 and Allow."""
    base = stack_env["CHATSTACK_NGINX_URL"]
    allow = {
        "/v1/teams": "GET, HEAD, POST, PUT, PATCH, DELETE",
        "/v1/auth/login": "GET, HEAD, POST",
        "/v1/users": "GET, HEAD",
        "/v1/ws": "GET",
    }
    for path, methods in allow.items():
        for method in ("TRACE", "CONNECT", "PROPFIND"):
            status, headers, body = await asyncio.to_thread(request, base, method, path)
            assert status == 405, (method, path)
            assert headers["Content-Type"] == "application/json"
            assert headers.get_all("Allow") == [methods]
            error = json.loads(body)["error"]
            assert error["code"] == "method_not_allowed"
            assert error["request_id"] == headers["X-Request-ID"]


async def test_options_names_exactly_the_methods_of_the_path(stack_env: dict[str, str]) -> None:
    """OPTIONS reaches the service, whose 405 lists exactly that path's methods."""
    base = stack_env["CHATSTACK_NGINX_URL"]
    exact = {
        "/v1/teams": {"GET", "HEAD", "POST"},
        "/v1/teams/0123456789abcdef0123456789abcdef/members": {"POST"},
        "/v1/auth/login": {"POST"},
    }
    for path, methods in exact.items():
        status, headers, body = await asyncio.to_thread(request, base, "OPTIONS", path)
        assert status == 405, path
        assert {m.strip() for m in headers["Allow"].split(",")} == methods, path
        assert json.loads(body)["error"]["code"] == "method_not_allowed"


async def test_a_service_405_stays_json_through_nginx(stack_env: dict[str, str]) -> None:
    """A method the route serves but the path does not (PUT /v1/teams) is the service's JSON 405."""
    base = stack_env["CHATSTACK_NGINX_URL"]
    status, headers, body = await asyncio.to_thread(request, base, "PUT", "/v1/teams")
    assert status == 405
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["error"]["code"] == "method_not_allowed"
    assert headers.get_all("X-Request-ID") == [json.loads(body)["error"]["request_id"]]
