"""HTTP routes of the auth service: a thin translation between JSON and ``AuthService``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from chatcore.errors import MalformedBody, NotFound, Unauthorized
from chatcore.http import (
    authenticate,
    client_ip,
    error_response,
    ok,
    read_json_object,
    request_id,
)
from chatcore.settings import Settings
from chatcore.tokens import JwtVerifier
from services.auth.accounts import AuthService, Session
from services.auth.cookies import (
    REFRESH_COOKIE,
    came_over_https,
    cleared_cookie,
    is_json,
    refresh_cookie,
)
from services.auth.keys import KeyRing
from services.auth.validation import (
    parse_email_query,
    parse_login,
    parse_logout_request,
    parse_password_change,
    parse_profile,
    parse_refresh_request,
    parse_registration,
    parse_user_id,
)


def _session_body(session: Session, *, with_refresh: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": session.access_token,
        "token_type": "Bearer",
        "expires_in": session.expires_in,
        "refresh_token": session.refresh_token,
        "user": session.user.public(),
    }
    if not with_refresh:
        # In the cookie only: a script on the page that calls these routes never sees it.
        del body["refresh_token"]
    return body


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
            web.patch("/v1/auth/me", self.rename),
            web.put("/v1/auth/password", self.change_password),
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

    def _https(self, request: web.Request) -> bool:
        forwarded = request.headers.get("X-Forwarded-Proto")
        return came_over_https(
            request.scheme, request.remote, forwarded, self._settings.trusted_proxies
        )

    @staticmethod
    def _require_json(request: web.Request) -> None:
        # The cookie goes with any same-site request; only a JSON one proves it is not a form
        # posted from another origin of the site.
        if not is_json(request.headers.get("Content-Type")):
            raise MalformedBody(
                "requests that use the refresh cookie must be Content-Type: application/json"
            )

    async def login(self, request: web.Request) -> web.Response:
        creds, in_cookie = parse_login(await self._body(request))
        if in_cookie:
            self._require_json(request)
        session = await self._service.login(creds, client_ip=self._ip(request))
        response = ok(_session_body(session, with_refresh=not in_cookie))
        if in_cookie:
            self._set_refresh(request, response, session)
        return response

    async def refresh(self, request: web.Request) -> web.Response:
        token = parse_refresh_request(await self._body(request))
        if token is not None:
            return ok(_session_body(await self._service.refresh(token)))
        self._require_json(request)
        try:
            presented = request.cookies.get(REFRESH_COOKIE)
            if not presented:
                raise Unauthorized("no refresh token: log in")
            session = await self._service.refresh(presented)
        except Unauthorized as exc:
            # Spent, revoked, expired or absent: the browser should stop presenting it.
            response = error_response(401, exc.code, exc.message, request_id(request))
            response.headers.add("Set-Cookie", cleared_cookie(secure=self._https(request)))
            return response
        response = ok(_session_body(session, with_refresh=False))
        self._set_refresh(request, response, session)
        return response

    async def logout(self, request: web.Request) -> web.Response:
        form = parse_logout_request(await self._body(request))
        if form.refresh_token is not None:
            await self._end(form.refresh_token, everywhere=form.everywhere)
            return web.Response(status=204)
        self._require_json(request)
        presented = request.cookies.get(REFRESH_COOKIE)
        response = web.Response(status=204)
        try:
            if presented:
                await self._end(presented, everywhere=form.everywhere)
            elif form.everywhere:
                raise Unauthorized("no refresh token: log in")
        except Unauthorized as exc:
            # Whatever it was, the browser should stop presenting it.
            response = error_response(401, exc.code, exc.message, request_id(request))
        response.headers.add("Set-Cookie", cleared_cookie(secure=self._https(request)))
        return response

    async def _end(self, token: str, *, everywhere: bool) -> None:
        if everywhere:
            await self._service.logout_everywhere(token)
        else:
            await self._service.logout(token)

    def _set_refresh(self, request: web.Request, response: web.Response, session: Session) -> None:
        cookie = refresh_cookie(
            session.refresh_token,
            max_age_s=self._settings.refresh_token_ttl_s,
            secure=self._https(request),
        )
        response.headers.add("Set-Cookie", cookie)

    async def me(self, request: web.Request) -> web.Response:
        claims = await authenticate(request, self._verifier)
        # The verifier's account check already refused subjects that are not our user ids.
        user = await self._service.user(parse_user_id(claims.sub))
        if user is None:
            raise NotFound("no such user")
        return ok(user.public())

    async def rename(self, request: web.Request) -> web.Response:
        claims = await authenticate(request, self._verifier)
        name = parse_profile(await self._body(request))
        user = await self._service.rename(parse_user_id(claims.sub), name)
        return ok(user.public())

    async def change_password(self, request: web.Request) -> web.Response:
        claims = await authenticate(request, self._verifier)
        change = parse_password_change(await self._body(request))
        await self._service.change_password(
            parse_user_id(claims.sub), claims.sid, change, client_ip=self._ip(request)
        )
        return web.Response(status=204)

    async def jwks(self, _request: web.Request) -> web.Response:
        # The one response outside the envelope: JWKS clients expect the bare document.
        return web.json_response(
            self._keys.jwks(), headers={"Cache-Control": "public, max-age=300"}
        )

    async def get_user(self, request: web.Request) -> web.Response:
        claims = await authenticate(request, self._verifier)
        user = await self._service.user(parse_user_id(request.match_info["user_id"]))
        if user is None:
            raise NotFound("no such user")
        if await self._service.sees_email(claims.sub, user.id):
            return ok(user.public())
        return ok(user.without_email())

    async def find_users(self, request: web.Request) -> web.Response:
        """``?email=``: exact match only, so the endpoint cannot be used to list accounts."""
        claims = await authenticate(request, self._verifier)
        email = parse_email_query(request.query.getall("email", []))
        user = await self._service.user_by_email(email, caller=claims.sub)
        return ok([user.public()] if user is not None else [], meta={"count": int(bool(user))})
