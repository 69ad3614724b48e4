"""The opening handshake, decided before any upgrade: route, Origin, token, connection caps.

Pure decisions (``route``, ``upgrade_token``, ``UserSlots``) plus ``authenticate``, which only
awaits the injected verifier. The relay turns a ``Rejection`` into an HTTP response with the
contract's error envelope, so a bad token is a 401 before the socket exists.
"""

from __future__ import annotations

import enum
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from chatcore.errors import ChatError
from chatcore.http import error_body
from chatcore.logging import CORRELATION_ID_RE, new_request_id
from chatcore.tokens import AccessClaims, JwtVerifier, bearer_token

WS_PATH = "/v1/ws"


class Route(enum.Enum):
    HEALTHZ = "/healthz"
    READYZ = "/readyz"
    METRICS = "/metrics"
    WEBSOCKET = WS_PATH
    NOT_FOUND = ""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a handshake is refused: HTTP status, the envelope's code and message, a metric label."""

    status: int
    code: str
    message: str
    reason: str

    def body(self, request_id: str) -> str:
        return json.dumps(error_body(self.code, self.message, request_id))


NOT_FOUND = Rejection(404, "not_found", "no such route", "not_found")
DRAINING = Rejection(503, "unavailable", "relay is restarting; reconnect", "draining")
BAD_ORIGIN = Rejection(403, "forbidden", "origin not allowed", "origin")
TWO_AUTHORIZATIONS = Rejection(401, "unauthorized", "send one Authorization header", "token")
TOO_MANY = Rejection(429, "rate_limited", "too many connections for this user", "connection_cap")


def split(path: str) -> tuple[Route, str]:
    """The route of a request target, and its query string."""
    parts = urllib.parse.urlsplit(path)
    try:
        return Route(parts.path), parts.query
    except ValueError:
        return Route.NOT_FOUND, parts.query


def request_id(headers: Mapping[str, str]) -> str:
    """The request id nginx (or the client) sent when it is a plain token; else a new one."""
    try:
        value = headers.get("X-Request-ID", "")
    except LookupError:  # sent twice (the library's MultipleValuesError): neither is taken
        value = ""
    return value if CORRELATION_ID_RE.fullmatch(value) else new_request_id()


def upgrade_token(
    query: str, headers: Mapping[str, str], *, origins: tuple[str, ...], draining: bool
) -> str | Rejection:
    """The bearer token of an upgrade request, or why it is refused before verification."""
    if draining:
        return DRAINING
    try:
        origin = headers.get("Origin")
    except LookupError:  # two Origins: no browser sends that, so neither is trusted
        return BAD_ORIGIN
    if origin is not None and origin not in origins:
        return BAD_ORIGIN
    values = urllib.parse.parse_qs(query).get("token") or [""]
    try:
        return bearer_token(headers.get("Authorization"), values[0] or None)
    except LookupError:
        return TWO_AUTHORIZATIONS
    except ChatError as exc:
        return Rejection(exc.http_status, exc.code, exc.public_message, "token")


async def authenticate(token: str, verifier: JwtVerifier) -> AccessClaims | Rejection:
    try:
        return await verifier.verify(token)
    except ChatError as exc:
        return Rejection(exc.http_status, exc.code, exc.public_message, "token")


class UserSlots:
    """Sockets per user, counted from the handshake on, so parallel handshakes cannot overshoot.

    A slot is taken before the upgrade (and before the membership query) and given back when the
    connection is gone, whatever happened in between.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._used: dict[str, int] = {}

    def take(self, user_id: str) -> bool:
        used = self._used.get(user_id, 0)
        if used >= self._limit:
            return False
        self._used[user_id] = used + 1
        return True

    def give_back(self, user_id: str) -> None:
        used = self._used.get(user_id, 0)
        if used <= 1:
            self._used.pop(user_id, None)
        else:
            self._used[user_id] = used - 1

    def used(self, user_id: str) -> int:
        return self._used.get(user_id, 0)

    def __len__(self) -> int:
        return len(self._used)
