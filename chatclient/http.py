"""The REST calls a chat client needs: register, log in, page through history and the changes
feed, and change messages (edit, delete, react), read positions and presence (DESIGN 5b)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

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


async def logout(base_url: str, refresh_token: str, *, everywhere: bool = False) -> None:
    """End the login (``everywhere``: every login of the user); 204 also for an unknown token."""
    body: dict[str, Any] = {"refresh_token": refresh_token}
    if everywhere:
        body["everywhere"] = True
    await _call("POST", f"{base_url}/v1/auth/logout", json=body)


async def history_page(
    base_url: str,
    token: str,
    team_id: str,
    *,
    after: int | None = None,
    before: int | None = None,
    limit: int = 200,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One page of history (ascending) and its ``meta``: after a seq, before one, or the latest."""
    query = f"limit={limit}"
    if after is not None:
        query += f"&after={after}"
    elif before is not None:
        query += f"&before={before}"
    body = await _call("GET", f"{base_url}/v1/teams/{team_id}/messages?{query}", token=token)
    return list(body["data"]), dict(body.get("meta", {}))


def next_cursor(meta: dict[str, Any], cursor: int | None, *, forward: bool) -> int | None:
    """Where the page after this one starts: the page's ``next_cursor`` while ``has_more`` says
    there is more; None at the end, or for a cursor that does not move past ``cursor``.

    A page may be short, even empty, with more beyond (the server reads a bounded part of the
    channel per request): only ``has_more`` says where the end is.
    """
    raw = meta.get("next_cursor")
    if not meta.get("has_more") or not isinstance(raw, int) or isinstance(raw, bool):
        return None
    if cursor is not None and (raw <= cursor if forward else raw >= cursor):
        return None
    return raw


async def history(
    base_url: str, token: str, team_id: str, *, after: int | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Every message visible to the caller, ascending by seq: all of them, or those after ``after``.

    With ``after`` it walks forward page by page (how a client resumes); without it, backward
    from the latest page to the first message.
    """
    if after is None:
        pages: list[list[dict[str, Any]]] = []
        before: int | None = None
        while True:
            page, meta = await history_page(base_url, token, team_id, before=before, limit=limit)
            pages.append(page)
            before = next_cursor(meta, before, forward=False)
            if before is None:
                return [m for p in reversed(pages) for m in p]
    messages: list[dict[str, Any]] = []
    cursor: int | None = after
    while cursor is not None:
        page, meta = await history_page(base_url, token, team_id, after=cursor, limit=limit)
        messages.extend(page)
        cursor = next_cursor(meta, cursor, forward=True)
    return messages


async def changes_page(
    base_url: str, token: str, team_id: str, *, after: int, limit: int = 200
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One page of the team's log after ``after``: ``[{seq, change, message}]`` and ``meta``."""
    body = await _call(
        "GET", f"{base_url}/v1/teams/{team_id}/changes?after={after}&limit={limit}", token=token
    )
    return list(body["data"]), dict(body.get("meta", {}))


async def thread(
    base_url: str, token: str, team_id: str, root_id: str, *, after: int = 0
) -> list[dict[str, Any]]:
    """Every reply of a thread the caller may see, ascending."""
    replies: list[dict[str, Any]] = []
    while True:
        body = await _call(
            "GET",
            f"{base_url}/v1/teams/{team_id}/messages/{root_id}/thread?after={after}&limit=200",
            token=token,
        )
        replies.extend(body["data"])
        following = next_cursor(body["meta"], after, forward=True)
        if following is None:
            return replies
        after = following


async def edit(
    base_url: str, token: str, team_id: str, message_id: str, data: str
) -> dict[str, Any]:
    """The message as the edit makes it (once Kafka has the edit)."""
    body = await _call(
        "PATCH",
        f"{base_url}/v1/teams/{team_id}/messages/{message_id}",
        json={"data": data},
        token=token,
    )
    return dict(body["data"])


async def delete(base_url: str, token: str, team_id: str, message_id: str) -> None:
    await _call("DELETE", f"{base_url}/v1/teams/{team_id}/messages/{message_id}", token=token)


async def react(
    base_url: str, token: str, team_id: str, message_id: str, emoji: str, *, add: bool = True
) -> None:
    """Add (or, with ``add=False``, take back) the caller's reaction; idempotent."""
    path = f"/v1/teams/{team_id}/messages/{message_id}/reactions/{quote(emoji, safe='')}"
    await _call("PUT" if add else "DELETE", f"{base_url}{path}", token=token)


async def mark_read(base_url: str, token: str, team_id: str, seq: int) -> None:
    """Move the caller's read position to ``seq`` (forward only)."""
    await _call("PUT", f"{base_url}/v1/teams/{team_id}/read", json={"seq": seq}, token=token)


async def presence(base_url: str, token: str, team_id: str) -> list[dict[str, Any]]:
    """``[{user_id, status, last_seen}]`` for the team's members."""
    body = await _call("GET", f"{base_url}/v1/teams/{team_id}/presence", token=token)
    return list(body["data"])


async def team(base_url: str, token: str, team_id: str) -> dict[str, Any]:
    """The team, with the caller's ``unread``."""
    body = await _call("GET", f"{base_url}/v1/teams/{team_id}", token=token)
    return dict(body["data"])
