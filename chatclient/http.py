"""The REST calls a chat client needs: register, log in, and page through history."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp


class ApiError(Exception):
    """A REST call answered with the error envelope."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class AuthSession:
    access_token: str
    refresh_token: str
    user_id: str


async def _call(
    method: str, url: str, *, json: Any = None, token: str | None = None
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, json=json, headers=headers) as resp,
    ):
        body: dict[str, Any] = await resp.json(content_type=None) if resp.status != 204 else {}
        if resp.status >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise ApiError(resp.status, error.get("code", "error"), error.get("message", ""))
        return body


async def register(base_url: str, email: str, password: str, name: str) -> str:
    """Create an account; returns the user id."""
    body = await _call(
        "POST",
        f"{base_url}/v1/auth/register",
        json={"email": email, "password": password, "name": name},
    )
    return str(body["data"]["id"])


async def login(base_url: str, email: str, password: str) -> AuthSession:
    body = await _call(
        "POST", f"{base_url}/v1/auth/login", json={"email": email, "password": password}
    )
    data = body["data"]
    return AuthSession(data["access_token"], data["refresh_token"], data["user"]["id"])


async def history(
    base_url: str, token: str, team_id: str, *, after: int | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Every message visible to the caller after ``after`` (all pages), ascending by seq."""
    messages: list[dict[str, Any]] = []
    cursor = after
    while True:
        query = f"limit={limit}" + (f"&after={cursor}" if cursor is not None else "")
        body = await _call("GET", f"{base_url}/v1/teams/{team_id}/messages?{query}", token=token)
        page = body["data"]
        messages.extend(page)
        if not body.get("meta", {}).get("has_more") or not page:
            return messages
        cursor = int(page[-1]["seq"])
