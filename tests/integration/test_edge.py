"""The running stack through nginx: what a client on http://127.0.0.1:8080 sees."""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp

from chatclient import ChatClient, history, login, register
from chatcore.settings import Settings
from chatcore.tokens import HttpJwksSource, JwtVerifier

PASSWORD = "through the front door"


async def test_register_login_and_verify_through_nginx(
    settings: Settings, stack_env: dict[str, str]
) -> None:
    """A user registers and logs in via nginx; the token verifies against the public JWKS URL."""
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
        async with http.get(f"{base}/v1/users/{login['user']['id']}") as resp:
            assert resp.status == 401
        verifier = JwtVerifier.from_settings(settings, HttpJwksSource(http, settings.jwks_url))
        claims = await verifier.verify(login["access_token"])
        assert claims.sub == login["user"]["id"]

    logs = Path(stack_env["CHATSTACK_HOME"]) / "logs"
    for log in logs.glob("*.log"):
        text = log.read_text(errors="replace")
        for secret in (PASSWORD, login["access_token"], login["refresh_token"]):
            assert secret not in text, f"a credential appeared in {log.name}"


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
        event = await second.receive()
        assert (event["id"], event["seq"], event["data"]) == (
            ack.id,
            ack.seq,
            "hello through nginx",
        )
    stored = await history(base, member.access_token, team_id)
    assert [m["id"] for m in stored] == [ack.id]
