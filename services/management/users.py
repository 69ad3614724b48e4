"""Who exists: user look-ups through the auth service's users API, with the caller's token.

The management service keeps no copy of the users collection. Adding a member by email resolves it
with ``GET /v1/users?email=``; adding by id checks ``GET /v1/users/{id}``. The caller's bearer token
is forwarded, so the auth service applies its own access rules, and the request and correlation ids
travel along for the logs.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

import aiohttp
import structlog

from chatcore.errors import RateLimited, Unauthorized, Unavailable
from chatcore.http import CORRELATION_ID_HEADER, REQUEST_ID_HEADER
from services.management.validation import is_id


class UserDirectory(Protocol):
    async def id_by_email(self, email: str, *, bearer: str) -> str | None:
        """The id of the user with this (normalized) email, or None."""

    async def exists(self, user_id: str, *, bearer: str) -> bool: ...


def _context_headers(bearer: str) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json"}
    context = structlog.contextvars.get_contextvars()
    for header, key in (
        (REQUEST_ID_HEADER, "request_id"),
        (CORRELATION_ID_HEADER, "correlation_id"),
    ):
        value = context.get(key)
        if isinstance(value, str) and value:
            headers[header] = value
    return headers


class HttpUserDirectory:
    """The auth service over HTTP, with a session the caller owns (and closes)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, *, timeout_s: float) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _get(
        self, path: str, bearer: str, params: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        try:
            async with self._session.get(
                f"{self._base}{path}",
                params=params,
                headers=_context_headers(bearer),
                timeout=self._timeout,
            ) as resp:
                status = resp.status
                raw = await resp.read()
                retry_after = resp.headers.get("Retry-After", "")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"auth service unreachable: {type(exc).__name__}") from exc
        if status == 401:
            # The token passed our own check a moment ago; the auth service has the final word.
            raise Unauthorized("the auth service rejected the token")
        if status == 429:
            # The caller's own budget of lookups by email: theirs to wait for, not our outage.
            wait = float(retry_after) if retry_after.isdigit() else 1.0
            raise RateLimited("too many lookups by email; retry later", retry_after=wait)
        if status not in (200, 404):
            raise Unavailable(f"auth service answered HTTP {status}")
        try:
            body = json.loads(raw) if raw else None
        except ValueError as exc:
            raise Unavailable("auth service returned invalid JSON") from exc
        return status, body

    async def id_by_email(self, email: str, *, bearer: str) -> str | None:
        status, body = await self._get("/v1/users", bearer, {"email": email})
        data = body.get("data") if status == 200 and isinstance(body, dict) else None
        if not isinstance(data, list):
            raise Unavailable("auth service returned an unexpected users list")
        if not data:
            return None
        first = data[0]
        user_id = first.get("id") if isinstance(first, dict) else None
        if not is_id(user_id):
            raise Unavailable("auth service returned a malformed user id")
        assert isinstance(user_id, str)
        return user_id

    async def exists(self, user_id: str, *, bearer: str) -> bool:
        status, _body = await self._get(f"/v1/users/{user_id}", bearer)
        return status == 200
