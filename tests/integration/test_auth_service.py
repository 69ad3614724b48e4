"""The auth service over real HTTP and the real database, started in-process on a free port."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import InvalidOperation

from chatcore.mongo import Document, make_mongo_client
from chatcore.settings import Settings
from chatcore.tokens import HttpJwksSource, JwtVerifier
from services.auth import server as auth_server
from services.auth.accounts import REUSE_GRACE_S
from services.auth.keys import generate_key_file
from services.auth.server import start
from tests.logs import json_logs

PASSWORD = "a long enough secret"


@dataclasses.dataclass
class _Secrets:
    """Every credential the tests send or receive; none may ever show up in a log line."""

    values: set[str] = dataclasses.field(default_factory=set)

    def add(self, *values: str) -> None:
        self.values.update(v for v in values if v)


# Each round races ten refreshes of a fresh token over both instances.
ROTATION_ROUNDS = 4


@pytest.fixture(scope="module")
def secrets_seen() -> _Secrets:
    """Credentials collected across the module."""
    return _Secrets()


@pytest.fixture(scope="module")
def captured_logs(secrets_seen: _Secrets) -> Iterator[io.StringIO]:
    """All log lines of the module; at the end, no collected credential may appear in them."""
    with json_logs("auth", "debug") as stream:
        yield stream
    text = stream.getvalue()
    assert '"event": "http_request"' in text or '"event":"http_request"' in text
    leaked = [s for s in secrets_seen.values if s in text]
    assert not leaked, f"{len(leaked)} credentials appeared in log lines"


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for this module's signing keys."""
    return tmp_path_factory.mktemp("keys")


def _settings(base: Settings, keys: list[Path]) -> Settings:
    return dataclasses.replace(
        base,
        mongo_db="chat_test_auth",
        auth_signing_keys=tuple(str(k) for k in keys),
        # Cheap hashing keeps the suite fast; production parameters are the defaults.
        argon2_time_cost=1,
        argon2_memory_kib=1024,
        argon2_parallelism=1,
        login_email_burst=5,
        login_email_per_minute=5,
        # Every test registers fresh accounts from 127.0.0.1; registration limits have unit tests.
        register_ip_burst=10_000,
        register_ip_per_minute=10_000,
    )


@pytest.fixture(scope="module")
async def auth_urls(
    settings: Settings, key_dir: Path, captured_logs: io.StringIO
) -> AsyncIterator[tuple[str, str]]:
    """Two running auth instances on one database (as behind nginx); yields their base URLs."""
    key = key_dir / "k1.pem"
    generate_key_file(key)
    first = await start(_settings(settings, [key]), port=0)
    second = await start(_settings(settings, [key]), port=0)
    yield f"http://127.0.0.1:{first.port}", f"http://127.0.0.1:{second.port}"
    await second.stop()
    await first.stop()


@pytest.fixture(scope="module")
def auth_url(auth_urls: tuple[str, str]) -> str:
    """The first auth instance's base URL."""
    return auth_urls[0]


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP client session."""
    async with aiohttp.ClientSession() as session:
        yield session


async def _call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    body: Any = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    sent = {"Authorization": f"Bearer {token}"} if token else {}
    sent.update(headers or {})
    async with http.request(method, url, json=body, headers=sent) as resp:
        text = await resp.text()
        return resp.status, (json.loads(text) if text else {}), resp


async def _register_and_login(
    http: aiohttp.ClientSession, url: str, secrets_seen: _Secrets
) -> tuple[str, dict[str, Any]]:
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    secrets_seen.add(PASSWORD)
    status, body, _ = await _call(
        http, "POST", f"{url}/v1/auth/register", {"email": email, "password": PASSWORD, "name": "U"}
    )
    assert status == 201, body
    status, body, _ = await _call(
        http, "POST", f"{url}/v1/auth/login", {"email": email, "password": PASSWORD}
    )
    assert status == 200, body
    secrets_seen.add(body["data"]["access_token"], body["data"]["refresh_token"])
    return email, body["data"]


async def test_register_login_me_refresh_reuse_logout(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """The whole session lifecycle, including theft detection on a replayed refresh token."""
    email, login = await _register_and_login(http, auth_url, secrets_seen)
    assert login["token_type"] == "Bearer"
    assert login["expires_in"] == 900
    assert login["user"]["email"] == email
    assert set(login["user"]) == {"id", "email", "name"}

    status, me, _ = await _call(http, "GET", f"{auth_url}/v1/auth/me", token=login["access_token"])
    assert status == 200
    assert me["data"] == login["user"]

    status, refreshed, resp = await _call(
        http, "POST", f"{auth_url}/v1/auth/refresh", {"refresh_token": login["refresh_token"]}
    )
    assert status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    new = refreshed["data"]
    secrets_seen.add(new["access_token"], new["refresh_token"])
    assert new["refresh_token"] != login["refresh_token"]

    # Replaying the rotated token at once is taken for a concurrent use: 409, nothing revoked.
    status, err, _ = await _call(
        http, "POST", f"{auth_url}/v1/auth/refresh", {"refresh_token": login["refresh_token"]}
    )
    assert (status, err["error"]["code"]) == (409, "conflict")
    # Later it is a replay: 401, and the family is revoked, including the new token.
    await asyncio.sleep(REUSE_GRACE_S)
    status, err, _ = await _call(
        http, "POST", f"{auth_url}/v1/auth/refresh", {"refresh_token": login["refresh_token"]}
    )
    assert status == 401
    assert err["error"]["code"] == "unauthorized"
    status, _, _ = await _call(
        http, "POST", f"{auth_url}/v1/auth/refresh", {"refresh_token": new["refresh_token"]}
    )
    assert status == 401

    # A fresh login, then logout: its refresh token stops working.
    status, second, _ = await _call(
        http, "POST", f"{auth_url}/v1/auth/login", {"email": email, "password": PASSWORD}
    )
    assert status == 200
    secrets_seen.add(second["data"]["access_token"], second["data"]["refresh_token"])
    rt = second["data"]["refresh_token"]
    status, _, _ = await _call(http, "POST", f"{auth_url}/v1/auth/logout", {"refresh_token": rt})
    assert status == 204
    status, _, _ = await _call(http, "POST", f"{auth_url}/v1/auth/refresh", {"refresh_token": rt})
    assert status == 401


def _refresh_cookie(resp: aiohttp.ClientResponse) -> dict[str, str]:
    """The attributes of the one Set-Cookie for the refresh token (name -> value, flags -> "")."""
    headers = [h for h in resp.headers.getall("Set-Cookie", []) if h.startswith("chat_refresh=")]
    assert len(headers) == 1, headers
    parts = [p.strip() for p in headers[0].split(";")]
    return {k.lower(): v for k, _, v in (p.partition("=") for p in parts)}


async def _with_cookie(
    http: aiohttp.ClientSession, url: str, token: str
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    """POST {} with the refresh cookie set by hand to ``token``."""
    return await _call(http, "POST", url, {}, headers={"Cookie": f"chat_refresh={token}"})


async def test_a_cookie_session_keeps_the_refresh_token_out_of_every_body(
    auth_url: str, secrets_seen: _Secrets
) -> None:
    """refresh_in "cookie": the token only in an HttpOnly, SameSite=Strict cookie for /v1/auth;
    {} refreshes (rotating it) and logs out (clearing it); a replayed one revokes the family."""
    email = f"cookie-{uuid.uuid4().hex[:12]}@example.com"
    # The default jar refuses cookies from IP addresses; 127.0.0.1 is where the service is.
    async with (
        aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http,
        # For cookies set by hand: a jar would send its own instead.
        aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as bare,
    ):
        account = {"email": email, "password": PASSWORD, "name": "C"}
        assert (await _call(http, "POST", f"{auth_url}/v1/auth/register", account))[0] == 201
        creds = {"email": email, "password": PASSWORD, "refresh_in": "cookie"}
        status, login, resp = await _call(http, "POST", f"{auth_url}/v1/auth/login", creds)
        assert status == 200, login
        assert "refresh_token" not in login["data"]
        cookie = _refresh_cookie(resp)
        secrets_seen.add(login["data"]["access_token"], cookie["chat_refresh"])
        assert cookie["path"] == "/v1/auth"
        assert cookie["max-age"] == "2592000"
        assert "httponly" in cookie
        assert cookie["samesite"] == "Strict"
        assert "secure" not in cookie  # plain http here: a Secure cookie would never come back

        status, refreshed, resp = await _call(http, "POST", f"{auth_url}/v1/auth/refresh", {})
        assert status == 200, refreshed
        assert "refresh_token" not in refreshed["data"]
        assert refreshed["data"]["user"]["email"] == email
        rotated = _refresh_cookie(resp)["chat_refresh"]
        secrets_seen.add(refreshed["data"]["access_token"], rotated)
        assert rotated != cookie["chat_refresh"]

        # Without JSON (a form posted from another origin of the site): refused, nothing spent.
        async with http.post(
            f"{auth_url}/v1/auth/refresh", data=b"{}", headers={"Content-Type": "text/plain"}
        ) as refused:
            assert refused.status == 400
            assert "Set-Cookie" not in refused.headers

        # The spent cookie presented again (past the grace for concurrent uses): 401, the
        # cookie cleared, the whole login revoked.
        await asyncio.sleep(REUSE_GRACE_S)
        status, _, resp = await _with_cookie(
            bare, f"{auth_url}/v1/auth/refresh", cookie["chat_refresh"]
        )
        assert status == 401
        assert _refresh_cookie(resp)["max-age"] == "0"
        status, _, _ = await _with_cookie(bare, f"{auth_url}/v1/auth/refresh", rotated)
        assert status == 401

        # Behind the TLS-terminating proxy (a trusted peer saying https): the cookie is Secure.
        status, login, resp = await _call(
            bare,
            "POST",
            f"{auth_url}/v1/auth/login",
            creds,
            headers={"X-Forwarded-Proto": "https"},
        )
        assert status == 200
        cookie = _refresh_cookie(resp)
        secrets_seen.add(login["data"]["access_token"], cookie["chat_refresh"])
        assert "secure" in cookie
        status, _, resp = await _with_cookie(
            bare, f"{auth_url}/v1/auth/logout", cookie["chat_refresh"]
        )
        assert status == 204
        assert _refresh_cookie(resp)["max-age"] == "0"
        status, _, _ = await _with_cookie(
            bare, f"{auth_url}/v1/auth/refresh", cookie["chat_refresh"]
        )
        assert status == 401  # logged out: that login's family is revoked


async def test_logout_everywhere_over_http_with_a_body_or_the_cookie(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """{"everywhere": true} ends every login of the user (refresh and access tokens); with a
    spent cookie it answers 401, clears the cookie and ends that cookie's login only."""
    email, first = await _register_and_login(http, auth_url, secrets_seen)
    status, second, _ = await _call(
        http, "POST", f"{auth_url}/v1/auth/login", {"email": email, "password": PASSWORD}
    )
    assert status == 200
    secrets_seen.add(second["data"]["access_token"], second["data"]["refresh_token"])
    me = f"{auth_url}/v1/auth/me"
    status, _, _ = await _call(
        http,
        "POST",
        f"{auth_url}/v1/auth/logout",
        {"refresh_token": first["refresh_token"], "everywhere": True},
    )
    assert status == 204
    for session in (first, second["data"]):
        status, body, _ = await _call(http, "GET", me, token=session["access_token"])
        assert (status, body["error"]["message"]) == (401, "session ended")
        body = {"refresh_token": session["refresh_token"]}
        assert (await _call(http, "POST", f"{auth_url}/v1/auth/refresh", body))[0] == 401

    email, third = await _register_and_login(http, auth_url, secrets_seen)
    status, rotated, _ = await _call(
        http, "POST", f"{auth_url}/v1/auth/refresh", {"refresh_token": third["refresh_token"]}
    )
    assert status == 200
    secrets_seen.add(rotated["data"]["access_token"], rotated["data"]["refresh_token"])
    status, laptop, _ = await _call(
        http, "POST", f"{auth_url}/v1/auth/login", {"email": email, "password": PASSWORD}
    )
    assert status == 200
    secrets_seen.add(laptop["data"]["access_token"], laptop["data"]["refresh_token"])
    await asyncio.sleep(REUSE_GRACE_S)
    # The spent cookie: 401, the cookie cleared; whoever refreshed with it is logged out,
    # the user's other login is not.
    async with aiohttp.ClientSession() as bare:
        status, _, resp = await _call(
            bare,
            "POST",
            f"{auth_url}/v1/auth/logout",
            {"everywhere": True},
            headers={"Cookie": f"chat_refresh={third['refresh_token']}"},
        )
        assert status == 401
        assert _refresh_cookie(resp)["max-age"] == "0"
    status, _, _ = await _call(http, "GET", me, token=rotated["data"]["access_token"])
    assert status == 401
    status, _, _ = await _call(http, "GET", me, token=laptop["data"]["access_token"])
    assert status == 200


async def test_a_password_change_over_http_ends_the_other_logins_and_keeps_this_one(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """PUT /v1/auth/password with the right current password: 204; the other login's access and
    refresh tokens are refused, this one's work; the new password logs in, the old one not. A
    wrong current password is 403 and changes nothing; a rename is 200 and shows in /me."""
    email, here = await _register_and_login(http, auth_url, secrets_seen)
    status, other, _ = await _call(
        http, "POST", f"{auth_url}/v1/auth/login", {"email": email, "password": PASSWORD}
    )
    assert status == 200
    secrets_seen.add(other["data"]["access_token"], other["data"]["refresh_token"])
    me, password = f"{auth_url}/v1/auth/me", f"{auth_url}/v1/auth/password"
    new = "a different long secret"
    secrets_seen.add(new)
    token = here["access_token"]
    wrong = {"current_password": "not it at all", "new_password": new}
    status, body, _ = await _call(http, "PUT", password, wrong, token=token)
    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert (await _call(http, "GET", me, token=other["data"]["access_token"]))[0] == 200
    status, body, _ = await _call(
        http, "PUT", password, {"current_password": PASSWORD}, token=token
    )
    assert (status, list(body["error"]["details"])) == (422, ["new_password"])
    right = {"current_password": PASSWORD, "new_password": new}
    assert (await _call(http, "PUT", password, right, token=token))[0] == 204
    # Ended logins are refused within a second (each instance keeps its answer that long).
    await asyncio.sleep(1.1)
    status, body, _ = await _call(http, "GET", me, token=other["data"]["access_token"])
    assert (status, body["error"]["message"]) == (401, "session ended")
    refresh = f"{auth_url}/v1/auth/refresh"
    body = {"refresh_token": other["data"]["refresh_token"]}
    assert (await _call(http, "POST", refresh, body))[0] == 401
    status, rotated, _ = await _call(
        http, "POST", refresh, {"refresh_token": here["refresh_token"]}
    )
    assert status == 200
    secrets_seen.add(rotated["data"]["access_token"], rotated["data"]["refresh_token"])
    login = f"{auth_url}/v1/auth/login"
    assert (await _call(http, "POST", login, {"email": email, "password": PASSWORD}))[0] == 401
    status, fresh, _ = await _call(http, "POST", login, {"email": email, "password": new})
    assert status == 200
    secrets_seen.add(fresh["data"]["access_token"], fresh["data"]["refresh_token"])
    status, body, _ = await _call(http, "PATCH", me, {"name": "  Renamed  "}, token=token)
    assert (status, body["data"]["name"]) == (200, "Renamed")
    status, body, _ = await _call(http, "GET", me, token=fresh["data"]["access_token"])
    assert (status, body["data"]["name"], body["data"]["email"]) == (200, "Renamed", email)
    status, body, _ = await _call(http, "PATCH", me, {"name": "Eve\u202e"}, token=token)
    assert (status, list(body["error"]["details"])) == (422, ["name"])
    assert (await _call(http, "PATCH", me, {"name": "X"}))[0] == 401


async def test_a_refresh_without_token_or_cookie_is_401(
    auth_url: str, http: aiohttp.ClientSession
) -> None:
    """{} with no refresh cookie: 401, not a session; a bad refresh_in value: 422 naming it."""
    status, body, _ = await _call(http, "POST", f"{auth_url}/v1/auth/refresh", {})
    assert (status, body["error"]["code"]) == (401, "unauthorized")
    creds = {"email": "x@example.com", "password": PASSWORD, "refresh_in": "header"}
    status, body, _ = await _call(http, "POST", f"{auth_url}/v1/auth/login", creds)
    assert status == 422
    assert "refresh_in" in body["error"]["details"]


async def test_bad_input_gets_clear_errors(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """Duplicate email 409, weak password 422 with details, bad JSON 400, huge body 413."""
    email, _ = await _register_and_login(http, auth_url, secrets_seen)
    status, body, resp = await _call(
        http,
        "POST",
        f"{auth_url}/v1/auth/register",
        {"email": email.upper(), "password": PASSWORD, "name": "X"},
    )
    assert status == 409
    assert body["error"]["request_id"] == resp.headers["X-Request-ID"]
    status, body, _ = await _call(
        http,
        "POST",
        f"{auth_url}/v1/auth/register",
        {"email": "n@example.com", "password": "short", "name": "X"},
    )
    assert status == 422
    assert "password" in body["error"]["details"]
    status, body, _ = await _call(
        http,
        "POST",
        f"{auth_url}/v1/auth/login",
        {"email": {"$ne": None}, "password": {"$ne": None}},
    )
    assert status == 422
    async with http.post(f"{auth_url}/v1/auth/login", data=b"{nope") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "malformed"
    async with http.post(f"{auth_url}/v1/auth/register", data=b"x" * 100_000) as resp:
        assert resp.status == 413


async def test_wrong_password_and_unknown_email_look_the_same(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """Both answer 401 with the same message."""
    email, _ = await _register_and_login(http, auth_url, secrets_seen)
    secrets_seen.add("not the password")
    s1, b1, _ = await _call(
        http, "POST", f"{auth_url}/v1/auth/login", {"email": email, "password": "not the password"}
    )
    s2, b2, _ = await _call(
        http,
        "POST",
        f"{auth_url}/v1/auth/login",
        {"email": "x" + email, "password": "not the password"},
    )
    assert s1 == s2 == 401
    assert b1["error"]["message"] == b2["error"]["message"]


async def test_login_brute_force_gets_429(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """Repeated wrong passwords for one account are cut off with 429 and Retry-After."""
    email, _ = await _register_and_login(http, auth_url, secrets_seen)
    statuses = []
    for i in range(8):
        guess = f"guess number {i}"
        secrets_seen.add(guess)
        status, _, resp = await _call(
            http, "POST", f"{auth_url}/v1/auth/login", {"email": email, "password": guess}
        )
        statuses.append(status)
        if status == 429:
            assert int(resp.headers["Retry-After"]) >= 1
    assert statuses[0] == 401
    assert statuses[-1] == 429


async def test_users_lookup_requires_a_token_and_matches_exactly(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """/v1/users needs a token; ?email= matches one normalized email exactly, no prefixes."""
    email, login = await _register_and_login(http, auth_url, secrets_seen)
    token = login["access_token"]
    status, _, _ = await _call(http, "GET", f"{auth_url}/v1/users?email={email}")
    assert status == 401
    status, found, _ = await _call(
        http, "GET", f"{auth_url}/v1/users?email={email.upper()}", token=token
    )
    assert status == 200
    assert found["data"] == [login["user"]]
    prefix = email.split("@")[0][:8] + "@example.com"
    status, none, _ = await _call(http, "GET", f"{auth_url}/v1/users?email={prefix}", token=token)
    assert status == 200
    assert none["data"] == []
    status, one, _ = await _call(
        http, "GET", f"{auth_url}/v1/users/{login['user']['id']}", token=token
    )
    assert one["data"] == login["user"]
    status, _, _ = await _call(http, "GET", f"{auth_url}/v1/users/{'0' * 32}", token=token)
    assert status == 404


async def test_a_users_email_is_shown_to_teammates_and_not_to_strangers(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets, settings: Settings
) -> None:
    """GET /v1/users/{id} gives the email to its owner and to someone sharing a team (as the
    membership index has it); a stranger gets the name with email null; ?email= still finds
    the account for whoever knows the address."""
    ada_email, ada = await _register_and_login(http, auth_url, secrets_seen)
    _, bob = await _register_and_login(http, auth_url, secrets_seen)
    ada_id, bob_id = ada["user"]["id"], bob["user"]["id"]

    async def profile_as(viewer: dict[str, Any], user_id: str) -> dict[str, Any]:
        status, body, _ = await _call(
            http, "GET", f"{auth_url}/v1/users/{user_id}", token=viewer["access_token"]
        )
        assert status == 200
        return dict(body["data"])

    assert await profile_as(bob, ada_id) == {"id": ada_id, "email": None, "name": "U"}
    status, found, _ = await _call(
        http, "GET", f"{auth_url}/v1/users?email={ada_email}", token=bob["access_token"]
    )
    assert (status, found["data"]) == (200, [ada["user"]])
    client = make_mongo_client(settings)
    memberships = client["chat_test_auth"]["memberships"]
    team = uuid.uuid4().hex
    try:
        await memberships.insert_many(
            [
                {"_id": f"{team}:{user}", "team_id": team, "user_id": user, "active": True}
                for user in (ada_id, bob_id)
            ]
        )
        assert await profile_as(bob, ada_id) == ada["user"]
        assert await profile_as(ada, bob_id) == bob["user"]
        await memberships.delete_one({"_id": f"{team}:{bob_id}"})
        assert (await profile_as(bob, ada_id))["email"] is None
        assert await profile_as(ada, ada_id) == ada["user"]
    finally:
        await memberships.delete_many({"team_id": team})
        await client.close()


async def test_forged_and_tampered_tokens_are_refused(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """A token with a modified payload or no signature gets 401 from /me."""
    _, login = await _register_and_login(http, auth_url, secrets_seen)
    header, payload, signature = login["access_token"].split(".")
    for bad in (f"{header}.{payload}.", f"{header}.{payload[:-2]}xx.{signature}", "garbage"):
        status, body, _ = await _call(http, "GET", f"{auth_url}/v1/auth/me", token=bad)
        assert status == 401
        assert body["error"]["code"] == "unauthorized"


async def test_jwks_verifier_accepts_tokens_across_a_key_rotation(
    settings: Settings, key_dir: Path, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """A remote verifier keeps accepting old tokens after rotation and picks up the new kid."""
    old_key, new_key = key_dir / "rot-old.pem", key_dir / "rot-new.pem"
    generate_key_file(old_key)
    generate_key_file(new_key)
    skew = [0.0]

    before = await start(_settings(settings, [old_key]), port=0)
    port = before.port
    url = f"http://127.0.0.1:{port}"
    verifier = JwtVerifier(
        HttpJwksSource(http, f"{url}/v1/auth/jwks"),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        algorithms=settings.jwt_algorithms,
        cache_s=300,
        leeway_s=5,
        clock=lambda: time.time() + skew[0],
    )
    try:
        _, old_login = await _register_and_login(http, url, secrets_seen)
        old_claims = await verifier.verify(old_login["access_token"])
    finally:
        await before.stop()

    # Rotation on the same address: the new key signs, the old one stays published until the
    # tokens it signed have expired.
    after = await start(_settings(settings, [new_key, old_key]), port=port)
    try:
        _, new_login = await _register_and_login(http, url, secrets_seen)
        # The verifier's keys are cached; an unknown kid refetches at most every 10 s.
        skew[0] = 11.0
        new_claims = await verifier.verify(new_login["access_token"])
        assert new_claims.kid != old_claims.kid
        assert (await verifier.verify(old_login["access_token"])).sub == old_claims.sub
        async with http.get(f"{url}/v1/auth/jwks") as resp:
            jwks = await resp.json()
        assert [k["kid"] for k in jwks["keys"]] == [new_claims.kid, old_claims.kid]
        assert all("d" not in k for k in jwks["keys"]), "private key material published"
    finally:
        await after.stop()


async def test_concurrent_refreshes_of_one_token_yield_one_new_session(
    auth_urls: tuple[str, str], http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """Ten simultaneous refreshes of one token across two instances: exactly one succeeds, the
    others are told to retry (409) and revoke nothing: the winner's token works."""
    for _ in range(ROTATION_ROUNDS):
        _, login = await _register_and_login(http, auth_urls[0], secrets_seen)
        results = await asyncio.gather(
            *(
                _call(
                    http,
                    "POST",
                    f"{auth_urls[i % 2]}/v1/auth/refresh",
                    {"refresh_token": login["refresh_token"]},
                )
                for i in range(10)
            )
        )
        for _status, body, _resp in results:
            if "data" in body:
                secrets_seen.add(body["data"]["access_token"], body["data"]["refresh_token"])
        assert sorted(status for status, _, _ in results) == [200] + [409] * 9
        winner = next(body["data"] for status, body, _ in results if status == 200)
        status, after, _ = await _call(
            http,
            "POST",
            f"{auth_urls[1]}/v1/auth/refresh",
            {"refresh_token": winner["refresh_token"]},
        )
        assert status == 200
        secrets_seen.add(after["data"]["access_token"], after["data"]["refresh_token"])


async def test_users_lookups_by_email_are_bounded_per_account(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """An account's 31st lookup by email in a burst is a 429 with Retry-After; another account's
    lookup still answers."""
    email, login = await _register_and_login(http, auth_url, secrets_seen)
    _, other = await _register_and_login(http, auth_url, secrets_seen)
    statuses = []
    for i in range(31):
        status, _, resp = await _call(
            http, "GET", f"{auth_url}/v1/users?email=n{i}-{email}", token=login["access_token"]
        )
        statuses.append(status)
    assert statuses == [200] * 30 + [429]
    assert int(resp.headers["Retry-After"]) >= 1
    status, found, _ = await _call(
        http, "GET", f"{auth_url}/v1/users?email={email}", token=other["access_token"]
    )
    assert status == 200
    assert found["data"] == [login["user"]]


@pytest.mark.parametrize(
    "value",
    [
        "%00",
        "a%00b@example.com",
        "ada@example.com%00",
        "%ED%A0%80",
        "%FF%FE",
        "no-at-sign",
        "%24ne",
        "a@b.c" + "o" * 300,
        "",
    ],
)
async def test_users_lookup_refuses_bad_emails_before_the_database(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets, value: str
) -> None:
    """?email= values registration would refuse answer 422 invalid, never 503 or 500.

    (Invalid UTF-8 in a query arrives as U+FFFD characters, which an address may contain, so
    ``a%ED%A0%80@example.com`` is a well-formed address and simply matches nobody.)
    """
    _, login = await _register_and_login(http, auth_url, secrets_seen)
    async with http.get(
        f"{auth_url}/v1/users?email={value}",
        headers={"Authorization": f"Bearer {login['access_token']}"},
    ) as resp:
        body = await resp.json()
        assert resp.status == 422, body
        assert body["error"]["code"] == "invalid"


async def test_users_lookup_needs_exactly_one_email(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """No email parameter, or two of them, is a 422."""
    _, login = await _register_and_login(http, auth_url, secrets_seen)
    for query in ("", "?email=a@b.co&email=c@d.co"):
        status, body, _ = await _call(
            http, "GET", f"{auth_url}/v1/users{query}", token=login["access_token"]
        )
        assert status == 422, body


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/auth/login", '{"email": "a\\u0000@example.com", "password": "x"}'),
        ("/v1/auth/login", '{"email": "a\\ud800@example.com", "password": "x"}'),
        ("/v1/auth/login", '{"email": "a@example.com", "password": "\\ud800"}'),
        (
            "/v1/auth/register",
            '{"email": "s@example.com", "password": "long enough \\ud800", "name": "S"}',
        ),
        (
            "/v1/auth/register",
            '{"email": "s@example.com", "password": "long enough pw", "name": "\\ud800"}',
        ),
        ("/v1/auth/register", '{"email": "\\u0000@x.co", "password": "long enough", "name": "S"}'),
    ],
)
async def test_strings_no_store_can_take_are_refused_as_invalid(
    auth_url: str, http: aiohttp.ClientSession, path: str, body: str
) -> None:
    """NUL characters and lone surrogates in any auth field answer 422, never 503 or 500."""
    async with http.post(f"{auth_url}{path}", data=body.encode()) as resp:
        reply = await resp.json()
        assert resp.status == 422, reply
        assert reply["error"]["code"] == "invalid"


@pytest.mark.parametrize(
    "payload",
    [b"[" * 5000 + b"]" * 5000, b'{"email": ' + b"7" * 5000 + b', "password": "x"}'],
    ids=["nested-brackets", "5000-digit-integer"],
)
async def test_bodies_json_cannot_parse_get_400_on_every_route(
    auth_url: str, http: aiohttp.ClientSession, payload: bytes
) -> None:
    """Bodies that make Python's json raise RecursionError or ValueError answer 400, not 500."""
    statuses = {}
    for path in ("/v1/auth/register", "/v1/auth/login", "/v1/auth/refresh", "/v1/auth/logout"):
        async with http.post(f"{auth_url}{path}", data=payload) as resp:
            statuses[path] = (resp.status, (await resp.json())["error"]["code"])
    assert set(statuses.values()) == {(400, "malformed")}, statuses


@pytest.mark.parametrize(
    ("path", "status"),
    [("/v1/auth/refresh", 401), ("/v1/auth/logout", 204)],
)
@pytest.mark.parametrize("token", ["\\ud800", "a\\u0000", "not/base64"])
async def test_refresh_tokens_we_never_issue_are_unknown_tokens(
    auth_url: str, http: aiohttp.ClientSession, path: str, status: int, token: str
) -> None:
    """A lone surrogate or NUL in a refresh token is an unknown token: 401, or 204 on logout."""
    body = '{"refresh_token": "' + token + '"}'
    async with http.post(f"{auth_url}{path}", data=body.encode()) as resp:
        assert resp.status == status, await resp.text()


async def test_failed_logins_from_elsewhere_never_lock_the_victim_out(
    auth_url: str, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """An attacker's address is cut off with 429 while the victim logs in from theirs."""
    email, _ = await _register_and_login(http, auth_url, secrets_seen)
    attacker = {"X-Real-IP": "198.51.100.23"}  # the test client is a trusted proxy (127.0.0.1)
    statuses = []
    for i in range(8):
        guess = f"attacker guess {i}"
        secrets_seen.add(guess)
        async with http.post(
            f"{auth_url}/v1/auth/login", json={"email": email, "password": guess}, headers=attacker
        ) as resp:
            statuses.append(resp.status)
    assert statuses[-1] == 429
    async with http.post(
        f"{auth_url}/v1/auth/login",
        json={"email": email, "password": PASSWORD},
        headers={"X-Real-IP": "203.0.113.7"},
    ) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        secrets_seen.add(body["data"]["access_token"], body["data"]["refresh_token"])


async def test_a_start_failing_half_way_leaves_nothing_open(
    settings: Settings, key_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the port is taken, start() fails and closes its database client and its sweeper."""
    key = key_dir / "half-way.pem"
    generate_key_file(key)
    opened: list[AsyncMongoClient[Document]] = []

    def tracking_client(s: Settings) -> AsyncMongoClient[Document]:
        client = make_mongo_client(s)
        opened.append(client)
        return client

    monkeypatch.setattr(auth_server, "make_mongo_client", tracking_client)
    before = asyncio.all_tasks()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(OSError, match="address already in use"):
            await start(_settings(settings, [key]), port=busy.getsockname()[1])
    (client,) = opened
    with pytest.raises(InvalidOperation):
        await client.admin.command("ping")
    left = [t.get_name() for t in asyncio.all_tasks() - before]
    assert auth_server.SWEEPER_TASK_NAME not in left


async def test_logins_past_the_password_workers_get_503_and_refreshes_go_on(
    settings: Settings, key_dir: Path, http: aiohttp.ClientSession, secrets_seen: _Secrets
) -> None:
    """With one argon2 worker and no wait, logins arriving while it is busy answer 503 with
    Retry-After at once, the others log in, a refresh meanwhile answers 200, the refusals are
    counted, and none of them counts as a failed attempt of that email."""
    key = key_dir / "busy.pem"
    generate_key_file(key)
    busy = dataclasses.replace(
        _settings(settings, [key]),
        # A real hash's cost, so the logins overlap; one worker, refused at once when taken.
        argon2_time_cost=3,
        argon2_memory_kib=65536,
        argon2_parallelism=2,
        argon2_workers=1,
        argon2_wait_s=0,
    )
    running = await start(busy, port=0)
    try:
        url = f"http://127.0.0.1:{running.port}"
        email, login = await _register_and_login(http, url, secrets_seen)
        body = {"email": email, "password": PASSWORD}

        async def log_in() -> tuple[int, dict[str, Any], str | None]:
            status, answer, resp = await _call(http, "POST", f"{url}/v1/auth/login", body)
            if status == 200:
                secrets_seen.add(answer["data"]["access_token"], answer["data"]["refresh_token"])
            return status, answer, resp.headers.get("Retry-After")

        # As many at once as the email's failed-attempt budget (5): in-flight attempts count.
        flood = [asyncio.create_task(log_in()) for _ in range(5)]
        status, refreshed, _ = await _call(
            http, "POST", f"{url}/v1/auth/refresh", {"refresh_token": login["refresh_token"]}
        )
        assert status == 200
        secrets_seen.add(refreshed["data"]["access_token"], refreshed["data"]["refresh_token"])
        answers = await asyncio.gather(*flood)
        statuses = sorted(status for status, _, _ in answers)
        assert set(statuses) == {200, 503}, statuses
        refused = [(answer, hint) for status, answer, hint in answers if status == 503]
        for answer, hint in refused:
            assert hint == "1"
            assert answer["error"]["code"] == "unavailable"
            assert "busy checking passwords" in answer["error"]["message"]
        async with http.get(f"{url}/metrics") as resp:
            metrics = await resp.text()
        assert f"auth_password_checks_busy_total {float(len(refused))}" in metrics
        # The whole budget is left: five wrong guesses in a row are each checked (401).
        for i in range(5):
            guess = f"wrong guess {i}"
            secrets_seen.add(guess)
            status, _, _ = await _call(
                http, "POST", f"{url}/v1/auth/login", {"email": email, "password": guess}
            )
            assert status == 401, i
    finally:
        await running.stop()
