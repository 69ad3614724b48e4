"""HTTP routes of the auth service: a thin translation between JSON and ``AuthService``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chatcore.errors import NotFound
from chatcore.http import authenticate, client_ip, ok, read_json_object
from chatcore.settings import Settings
from chatcore.tokens import JwtVerifier
from services.auth.accounts import AuthService, Session
from services.auth.keys import KeyRing
from services.auth.validation import (
    parse_credentials,
    parse_email_query,
    parse_refresh_token,
    parse_registration,
    parse_user_id,
)


def _session_body(session: Session) -> dict[str, Any]:
    return {
        "access_token": session.access_token,
        "token_type": "Bearer",
        "expires_in": session.expires_in,
        "refresh_token": session.refresh_token,
        "user": session.user.public(),
    }


class AuthApi:
    def __init__(
        self, service: AuthService, keys: KeyRing, verifier: JwtVerifier, settings: Settings
    ) -> None:
        self._service = service
        self._keys = keys
        self._verifier = verifier
        self._settings = settings

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/auth/register", self.register),
            web.post("/v1/auth/login", self.login),
            web.post("/v1/auth/refresh", self.refresh),
            web.post("/v1/auth/logout", self.logout),
            web.get("/v1/auth/me", self.me),
            web.get("/v1/auth/jwks", self.jwks),
            web.get("/v1/users", self.find_users),
            web.get("/v1/users/{user_id}", self.get_user),
        ]

    async def _body(self, request: web.Request) -> dict[str, Any]:
        return await read_json_object(request, max_bytes=self._settings.max_body_bytes)

    def _ip(self, request: web.Request) -> str:
        return client_ip(request, self._settings.trusted_proxies)

    async def register(self, request: web.Request) -> web.Response:
        form = parse_registration(await self._body(request))
        user = await self._service.register(form, client_ip=self._ip(request))
        return ok(user.public(), status=201)

    async def login(self, request: web.Request) -> web.Response:
        creds = parse_credentials(await self._body(request))
        session = await self._service.login(creds, client_ip=self._ip(request))
        return _no_store(ok(_session_body(session)))

    async def refresh(self, request: web.Request) -> web.Response:
        token = parse_refresh_token(await self._body(request))
        return _no_store(ok(_session_body(await self._service.refresh(token))))

    async def logout(self, request: web.Request) -> web.Response:
        await self._service.logout(parse_refresh_token(await self._body(request)))
        return web.Response(status=204)

    async def me(self, request: web.Request) -> web.Response:
        claims = await authenticate(request, self._verifier)
        # The verifier's account check already refused subjects that are not our user ids.
        user = await self._service.user(parse_user_id(claims.sub))
        if user is None:
            raise NotFound("no such user")
        return ok(user.public())

    async def jwks(self, _request: web.Request) -> web.Response:
        # The one response outside the envelope: JWKS clients expect the bare document.
        return web.json_response(
            self._keys.jwks(), headers={"Cache-Control": "public, max-age=300"}
        )

    async def get_user(self, request: web.Request) -> web.Response:
        await authenticate(request, self._verifier)
        user = await self._service.user(parse_user_id(request.match_info["user_id"]))
        if user is None:
            raise NotFound("no such user")
        return ok(user.public())

    async def find_users(self, request: web.Request) -> web.Response:
        """``?email=``: exact match only, so the endpoint cannot be used to list accounts."""
        await authenticate(request, self._verifier)
        email = parse_email_query(request.query.getall("email", []))
        user = await self._service.user_by_email(email)
        return ok([user.public()] if user is not None else [], meta={"count": int(bool(user))})


def _no_store(response: web.Response) -> web.Response:
    response.headers["Cache-Control"] = "no-store"
    return response
