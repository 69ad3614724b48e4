"""Attachments through the running stack's nginx, as a browser on an allowed origin does them."""

from __future__ import annotations

import asyncio
import hashlib
import io
import secrets
import uuid

import aiohttp

from chatclient import ChatClient, login, register
from chatcore.s3 import encode_post_form

PASSWORD = "attachments at the edge"


async def test_browser_like_flow_through_nginx(stack_env: dict[str, str]) -> None:
    """Origin-bearing upload to S3 (CORS granted), complete, message and download via nginx."""
    base = stack_env["CHATSTACK_NGINX_URL"]
    origin = base  # the app's own origin is on the CORS allowlist (CHAT_WS_ORIGINS)
    emails = [f"att-edge-{uuid.uuid4().hex[:10]}@example.com" for _ in range(2)]
    for email in emails:
        await register(base, email, PASSWORD, "Edge")
    owner, member = [await login(base, email, PASSWORD) for email in emails]
    # A WebP file's RIFF header (completion checks the format's signature), then noise.
    content = b"RIFF" + (64_000 - 8).to_bytes(4, "little") + b"WEBP" + secrets.token_bytes(63_988)
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {owner.access_token}"}
        async with http.post(f"{base}/v1/teams", json={"name": "Edge"}, headers=auth) as resp:
            team = (await resp.json())["data"]["id"]
        async with http.post(
            f"{base}/v1/teams/{team}/members", json={"user_id": member.user_id}, headers=auth
        ) as resp:
            assert resp.status == 201
        body = {"filename": "pic.webp", "content_type": "image/webp", "size": len(content)}
        async with http.post(
            f"{base}/v1/teams/{team}/attachments", json=body, headers=auth
        ) as resp:
            assert resp.status == 201, await resp.text()
            upload = (await resp.json())["data"]
        form = upload["upload"]
        preflight = {"Origin": origin, "Access-Control-Request-Method": "POST"}
        async with http.options(form["url"], headers=preflight) as resp:
            assert resp.headers.get("Access-Control-Allow-Origin") == origin
        payload, content_type = encode_post_form(
            form["fields"], content, filename="pic.webp", content_type="image/webp"
        )
        async with http.post(
            form["url"],
            data=io.BytesIO(payload),
            headers={"Content-Type": content_type, "Origin": origin},
        ) as resp:
            assert resp.status == 204, await resp.text()
            assert resp.headers.get("Access-Control-Allow-Origin") == origin
        async with http.post(
            f"{base}/v1/attachments/{upload['id']}/complete", headers=auth
        ) as resp:
            assert (await resp.json())["data"]["status"] == "ready"

        async with await ChatClient.connect(
            base.replace("http://", "ws://") + "/v1/ws", owner.access_token
        ) as chat:
            ack = await chat.send(team, upload["id"], type="image")
            assert ack.id

        reader = {"Authorization": f"Bearer {member.access_token}"}
        # The ack means Kafka has the message; the download is allowed once it is stored.
        deadline = asyncio.get_running_loop().time() + 15
        while True:
            async with http.get(f"{base}/v1/attachments/{upload['id']}", headers=reader) as resp:
                if resp.status == 200 or asyncio.get_running_loop().time() > deadline:
                    assert resp.status == 200
                    url = (await resp.json())["data"]["url"]
                    break
            await asyncio.sleep(0.1)
        async with http.get(url, headers={"Origin": origin}) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "image/webp"
            assert resp.headers["Content-Disposition"] == 'attachment; filename="pic.webp"'
            assert resp.headers.get("Access-Control-Allow-Origin") == origin
            downloaded = await resp.read()
    assert hashlib.sha256(downloaded).digest() == hashlib.sha256(content).digest()
