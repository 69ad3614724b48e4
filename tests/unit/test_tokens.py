"""Unit tests for chatcore.tokens: JWKS-based access-token verification."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from chatcore.errors import Unavailable
from chatcore.settings import ConfigError, Settings
from chatcore.tokens import (
    AccessClaims,
    HttpJwksSource,
    JwtVerifier,
    StaticJwksSource,
    TokenError,
    bearer_token,
)

NOW = 1_800_000_000.0
ISSUER = "chatstack-auth"
AUDIENCE = "chatstack"

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


@dataclass(slots=True)
class FakeClock:
    """A settable wall clock."""

    now: float = NOW

    def __call__(self) -> float:
        return self.now


@dataclass(slots=True)
class CountingSource:
    """A JWKS source whose document can change, which counts fetches, and can fail or hang."""

    document: Mapping[str, Any]
    calls: int = 0
    fail: bool = False
    hang: bool = False
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Future[None] | None = None

    async def fetch(self) -> Mapping[str, Any]:
        self.calls += 1
        self.entered.set()
        if self.hang:
            # An un-resolved future: the fetch never ends unless the test resolves it.
            self.release = asyncio.get_running_loop().create_future()
            await self.release
        if self.fail:
            raise Unavailable("auth service down")
        return self.document

    async def started(self) -> None:
        """Until a fetch has begun (then re-armed for the next one)."""
        await asyncio.wait_for(self.entered.wait(), 5)
        self.entered.clear()


@dataclass(slots=True)
class FakeAccounts:
    """An account-status check answering from sets of disabled user ids and ended logins."""

    disabled: set[str] = field(default_factory=set)
    ended: set[str] = field(default_factory=set)
    calls: int = 0
    session_calls: int = 0

    async def is_disabled(self, user_id: str) -> bool:
        self.calls += 1
        return user_id in self.disabled

    async def session_ended(self, session_id: str) -> bool:
        self.session_calls += 1
        return session_id in self.ended


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key with its kid, algorithm and public JWK."""

    kid: str
    alg: str
    private: PrivateKey
    jwk: dict[str, Any]


def ed_key(kid: str) -> SigningKey:
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(kid, "EdDSA", private, {**jwk, "kid": kid, "use": "sig", "alg": "EdDSA"})


def ec_key(kid: str) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(kid, "ES256", private, {**jwk, "kid": kid})


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.jwk for k in keys]}


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u_123",
        "iat": int(NOW) - 10,
        "nbf": int(NOW) - 10,
        "exp": int(NOW) + 900,
        "jti": "jti-1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(key: SigningKey, payload: dict[str, Any] | None = None, **header: Any) -> str:
    headers = {"kid": key.kid, "typ": "at+jwt", **header}
    return jwt.encode(payload or claims(), key.private, algorithm=key.alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return (
        f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"
    )


def verifier(source: Any, clock: FakeClock | None = None, **kw: Any) -> JwtVerifier:
    options: dict[str, Any] = {
        "issuer": ISSUER,
        "audience": AUDIENCE,
        "algorithms": ("EdDSA", "ES256"),
        "cache_s": 300.0,
        "leeway_s": 5.0,
    }
    options.update(kw)
    return JwtVerifier(source, clock=clock or FakeClock(), **options)


async def loaded(ed: SigningKey, **kw: Any) -> tuple[FakeClock, CountingSource, JwtVerifier]:
    """A verifier (cache 60 s unless given) that has fetched ``ed``'s JWKS once."""
    clock = FakeClock()
    source = CountingSource(jwks(ed))
    v = verifier(source, clock, **{"cache_s": 60.0, **kw})
    await v.verify(sign(ed))
    return clock, source, v


@pytest.fixture
def ed() -> SigningKey:
    """An Ed25519 signing key with kid 'ed-1'."""
    return ed_key("ed-1")


@pytest.fixture
def es() -> SigningKey:
    """A P-256 signing key with kid 'ec-1'."""
    return ec_key("ec-1")


@pytest.fixture
def both(ed: SigningKey, es: SigningKey) -> JwtVerifier:
    """A verifier trusting both keys, at the fake time NOW."""
    return verifier(StaticJwksSource(jwks(ed, es)))


async def test_valid_eddsa_token_accepted(both: JwtVerifier, ed: SigningKey) -> None:
    """An EdDSA token with all claims verifies and yields its claims."""
    result = await both.verify(sign(ed))
    assert result == AccessClaims(
        sub="u_123",
        jti="jti-1",
        iat=int(NOW) - 10,
        exp=int(NOW) + 900,
        iss=ISSUER,
        aud=AUDIENCE,
        kid="ed-1",
    )


async def test_valid_es256_token_accepted(both: JwtVerifier, es: SigningKey) -> None:
    """An ES256 token verifies, with the typ header in its media-type form and any case."""
    result = await both.verify(sign(es, typ="Application/AT+JWT"))
    assert result.sub == "u_123"
    assert result.kid == "ec-1"


async def test_alg_none_rejected(both: JwtVerifier, ed: SigningKey) -> None:
    """Unsigned tokens (alg none) fail, with and without a dummy signature."""
    header = {"alg": "none", "typ": "at+jwt", "kid": ed.kid}
    with pytest.raises(TokenError):
        await both.verify(forge(header, claims()))
    with pytest.raises(TokenError, match="algorithm not allowed"):
        await both.verify(forge(header, claims(), b"x"))


async def test_hs256_with_public_key_as_secret_rejected(both: JwtVerifier, ed: SigningKey) -> None:
    """An HS256 token keyed with the server's public key PEM (algorithm confusion) fails."""
    pem = ed.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "at+jwt", "kid": ed.kid}
    unsigned = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims()).encode())}"
    mac = hmac.new(pem, unsigned.encode(), hashlib.sha256).digest()
    with pytest.raises(TokenError, match="algorithm not allowed"):
        await both.verify(f"{unsigned}.{b64(mac)}")


async def test_alg_must_match_key_type(both: JwtVerifier, ed: SigningKey, es: SigningKey) -> None:
    """An allowed alg that does not fit the kid's key type is rejected."""
    token = sign(es, kid=ed.kid)
    with pytest.raises(TokenError, match="does not match"):
        await both.verify(token)


def test_unsupported_algorithm_in_allowlist_is_config_error() -> None:
    """Configuring HS256 (or nothing) is refused up front."""
    with pytest.raises(ConfigError):
        verifier(StaticJwksSource({"keys": []}), algorithms=("EdDSA", "HS256"))
    with pytest.raises(ConfigError):
        verifier(StaticJwksSource({"keys": []}), algorithms=())


async def test_expired_rejected(ed: SigningKey) -> None:
    """A token past exp plus leeway fails; within the leeway it still passes."""
    clock = FakeClock()
    v = verifier(StaticJwksSource(jwks(ed)), clock)
    token = sign(ed, claims(exp=int(NOW) + 60))
    clock.now = NOW + 64
    assert (await v.verify(token)).sub == "u_123"
    clock.now = NOW + 66
    with pytest.raises(TokenError, match="expired"):
        await v.verify(token)


async def test_not_yet_valid_rejected(both: JwtVerifier, ed: SigningKey) -> None:
    """A token whose nbf lies beyond the leeway fails."""
    with pytest.raises(TokenError, match="not yet valid"):
        await both.verify(sign(ed, claims(nbf=int(NOW) + 60)))


async def test_issued_in_future_rejected(both: JwtVerifier, ed: SigningKey) -> None:
    """A token whose iat lies beyond the leeway fails."""
    with pytest.raises(TokenError, match="future"):
        await both.verify(sign(ed, claims(iat=int(NOW) + 60)))


async def test_wrong_audience_rejected(both: JwtVerifier, ed: SigningKey) -> None:
    """A token for another audience fails."""
    with pytest.raises(TokenError, match="audience"):
        await both.verify(sign(ed, claims(aud="other-app")))


async def test_wrong_issuer_rejected(both: JwtVerifier, ed: SigningKey) -> None:
    """A token from another issuer fails."""
    with pytest.raises(TokenError, match="issuer"):
        await both.verify(sign(ed, claims(iss="evil")))


@pytest.mark.parametrize("claim", ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"])
async def test_missing_claim_rejected(both: JwtVerifier, ed: SigningKey, claim: str) -> None:
    """Each required claim must be present."""
    payload = claims()
    del payload[claim]
    with pytest.raises(TokenError, match=claim):
        await both.verify(sign(ed, payload))


@pytest.mark.parametrize("sub", ["", "x" * 65, 42])
async def test_bad_subject_rejected(both: JwtVerifier, ed: SigningKey, sub: Any) -> None:
    """sub must be a non-empty string of at most 64 characters."""
    with pytest.raises(TokenError):
        await both.verify(sign(ed, claims(sub=sub)))


async def test_unknown_kid_rejected(both: JwtVerifier) -> None:
    """A token signed by a key not in the JWKS fails."""
    with pytest.raises(TokenError, match="unknown"):
        await both.verify(sign(ed_key("stranger")))


async def test_missing_kid_rejected(both: JwtVerifier, ed: SigningKey) -> None:
    """A token without a kid header fails."""
    token = jwt.encode(claims(), ed.private, algorithm="EdDSA", headers={"typ": "at+jwt"})
    with pytest.raises(TokenError, match="key id"):
        await both.verify(token)


@pytest.mark.parametrize("typ", [None, "JWT", "refresh+jwt"])
async def test_wrong_typ_rejected(both: JwtVerifier, ed: SigningKey, typ: str | None) -> None:
    """Only at+jwt tokens are access tokens."""
    # PyJWT drops a typ header set to None, which gives the missing-typ case.
    token = jwt.encode(claims(), ed.private, algorithm="EdDSA", headers={"kid": ed.kid, "typ": typ})
    assert jwt.get_unverified_header(token).get("typ") == typ
    with pytest.raises(TokenError, match="type"):
        await both.verify(token)


async def test_tampered_payload_rejected(both: JwtVerifier, ed: SigningKey) -> None:
    """Swapping the payload of a signed token breaks the signature."""
    header, _, sig = sign(ed).split(".")
    forged = b64(json.dumps(claims(sub="admin")).encode())
    with pytest.raises(TokenError, match="signature"):
        await both.verify(f"{header}.{forged}.{sig}")


@pytest.mark.parametrize(
    "token", ["", "abc", "a.b", "a.b.c.d", "a.b.", "a!.b.c", "eyJ" + "A" * 9000 + ".b.c"]
)
async def test_malformed_token_rejected(both: JwtVerifier, token: str) -> None:
    """Strings that are not compact JWS, or are too large, fail cleanly."""
    with pytest.raises(TokenError, match="malformed"):
        await both.verify(token)


async def test_error_message_never_contains_token(both: JwtVerifier, ed: SigningKey) -> None:
    """Rejection messages do not echo the token."""
    token = sign(ed, claims(aud="other-app"))
    with pytest.raises(TokenError) as info:
        await both.verify(token)
    assert token not in str(info.value)
    assert info.value.code == "unauthorized"
    assert info.value.http_status == 401


async def test_unsupported_keys_in_jwks_are_skipped(ed: SigningKey) -> None:
    """RSA, P-384, symmetric and junk entries do not stop the good key from working."""
    document = {
        "keys": [
            {"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"},
            {"kty": "oct", "kid": ed.kid, "k": "c2VjcmV0"},
            {"kty": "OKP", "crv": "Ed25519", "kid": "broken", "x": "!!"},
            "not-a-key",
            ed.jwk,
        ]
    }
    v = verifier(StaticJwksSource(document))
    assert (await v.verify(sign(ed))).kid == ed.kid


async def test_rotation_old_and_new_keys_both_accepted() -> None:
    """During rotation a JWKS with old and new keys verifies tokens of either."""
    old, new = ed_key("2024-01"), ed_key("2024-02")
    v = verifier(StaticJwksSource(jwks(old, new)))
    assert (await v.verify(sign(old))).kid == "2024-01"
    assert (await v.verify(sign(new))).kid == "2024-02"


async def test_rotation_new_kid_triggers_refetch() -> None:
    """A token with a kid published after the cache was filled is accepted via a refetch."""
    old, new = ed_key("old"), ec_key("new")
    clock = FakeClock()
    source = CountingSource(jwks(old))
    v = verifier(source, clock)
    await v.verify(sign(old))
    source.document = jwks(old, new)
    clock.now += 11
    assert (await v.verify(sign(new))).kid == "new"
    assert source.calls == 2
    assert (await v.verify(sign(old))).kid == "old"
    assert source.calls == 2


async def test_unknown_kid_refetch_is_rate_limited(ed: SigningKey) -> None:
    """Garbage kids cause at most one JWKS fetch per ~10 seconds."""
    clock = FakeClock()
    source = CountingSource(jwks(ed))
    v = verifier(source, clock)
    await v.verify(sign(ed))
    assert source.calls == 1
    for i in range(20):
        with pytest.raises(TokenError, match="unknown"):
            await v.verify(sign(ed_key(f"garbage-{i}")))
    assert source.calls == 1
    clock.now += 10.5
    for i in range(20):
        with pytest.raises(TokenError, match="unknown"):
            await v.verify(sign(ed_key(f"more-{i}")))
    assert source.calls == 2


async def test_keys_cached_then_refreshed_after_cache_s(ed: SigningKey) -> None:
    """Keys are fetched once per cache period, then again once it ends."""
    clock = FakeClock()
    source = CountingSource(jwks(ed))
    v = verifier(source, clock, cache_s=60.0)
    for _ in range(5):
        await v.verify(sign(ed))
    assert source.calls == 1
    clock.now += 61
    await v.verify(sign(ed, claims(iat=int(clock.now), nbf=int(clock.now))))
    await v.wait_for_refresh()
    assert source.calls == 2


async def test_stale_keys_used_when_refresh_fails(ed: SigningKey) -> None:
    """An auth outage after the first load keeps the cached keys working."""
    clock, source, v = await loaded(ed)
    source.fail = True
    clock.now += 61
    assert (await v.verify(sign(ed))).sub == "u_123"
    await v.wait_for_refresh()
    assert source.calls == 2
    assert (await v.verify(sign(ed))).sub == "u_123"


async def test_no_keys_at_all_is_unavailable(ed: SigningKey) -> None:
    """If the JWKS was never loaded, verification answers Unavailable, not Unauthorized."""
    source = CountingSource(jwks(ed), fail=True)
    v = verifier(source)
    with pytest.raises(Unavailable):
        await v.verify(sign(ed))


async def test_hung_refresh_does_not_hold_up_requests_with_stale_keys(ed: SigningKey) -> None:
    """While the one refetch hangs, every request verifies at once with the cached keys."""
    clock, source, v = await loaded(ed)
    source.hang = True
    clock.now += 61
    first = asyncio.create_task(v.verify(sign(ed)))
    await source.started()
    # The fetch is an un-resolved future; verify still returns, for this and 50 more requests.
    assert (await asyncio.wait_for(first, 5)).sub == "u_123"
    for _ in range(50):
        assert (await asyncio.wait_for(v.verify(sign(ed)), 5)).sub == "u_123"
    assert v.refreshing
    assert source.calls == 2  # single flight: the hung fetch is the only one
    await v.aclose()
    assert not v.refreshing


async def test_hung_refresh_lets_a_new_kid_wait_only_briefly(ed: SigningKey) -> None:
    """A token with an unknown kid waits at most wait_s for the hung refetch, then is refused."""
    clock, source, v = await loaded(ed, wait_s=0.01)
    source.hang = True
    clock.now += 61
    with pytest.raises(TokenError, match="unknown"):
        await asyncio.wait_for(v.verify(sign(ed_key("new"))), 5)
    assert (await v.verify(sign(ed))).sub == "u_123"
    assert source.calls == 2
    await v.aclose()


async def test_no_keys_and_a_hung_fetch_answer_unavailable(ed: SigningKey) -> None:
    """Without any cached keys a request waits at most wait_s, then gets Unavailable."""
    source = CountingSource(jwks(ed), hang=True)
    v = verifier(source, wait_s=0.01)
    for _ in range(3):
        with pytest.raises(Unavailable):
            await asyncio.wait_for(v.verify(sign(ed)), 5)
    assert source.calls == 1  # the later requests joined the fetch in flight
    assert source.release is not None
    source.release.set_result(None)
    await v.wait_for_refresh()
    assert (await v.verify(sign(ed))).sub == "u_123"


async def test_stale_keys_stop_verifying_after_the_bound(ed: SigningKey) -> None:
    """Cached keys serve an outage for stale_s beyond the cache time, and no longer."""
    clock = FakeClock()
    source = CountingSource(jwks(ed))
    v = verifier(source, clock, cache_s=60.0, stale_s=3600.0)
    await v.verify(sign(ed, claims(exp=int(NOW) + 7200)))
    source.fail = True
    clock.now += 60 + 3599
    assert (await v.verify(sign(ed, claims(exp=int(NOW) + 7200)))).sub == "u_123"
    clock.now += 2
    with pytest.raises(Unavailable, match="auth service down"):
        await v.verify(sign(ed, claims(exp=int(NOW) + 7200)))


async def test_failed_refetches_back_off(ed: SigningKey) -> None:
    """During an outage refetches are spaced 1, 2, 4 ... s apart, however many requests come."""
    clock, source, v = await loaded(ed)
    source.fail = True
    clock.now += 61
    attempts = []
    for _ in range(40):  # 40 requests, a quarter of a fake second apart
        await v.verify(sign(ed))
        await v.wait_for_refresh()
        attempts.append(source.calls)
        clock.now += 0.25
    # Fetches at t=0 (fails), then not before t=1, then t>=3, then t>=7: four in ten seconds.
    assert source.calls - 1 == 4
    source.fail = False
    clock.now += 8
    await v.verify(sign(ed))
    await v.wait_for_refresh()
    calls = source.calls
    clock.now += 30
    await v.verify(sign(ed))  # fresh again: no fetch
    assert source.calls == calls


async def test_disabled_account_is_refused(ed: SigningKey) -> None:
    """With an account check, a valid token of a disabled user fails; others pass."""
    accounts = FakeAccounts(disabled={"u_123"})
    v = verifier(StaticJwksSource(jwks(ed)), accounts=accounts)
    with pytest.raises(TokenError, match="account disabled"):
        await v.verify(sign(ed))
    assert (await v.verify(sign(ed, claims(sub="u_456")))).sub == "u_456"
    assert accounts.calls == 2
    # A token that fails verification never costs an account lookup.
    with pytest.raises(TokenError):
        await v.verify(sign(ed, claims(aud="other-app")))
    assert accounts.calls == 2


async def test_a_token_of_an_ended_login_is_refused(ed: SigningKey) -> None:
    """With an account check, a token whose sid names an ended login fails; other logins pass."""
    ended, alive = "a" * 32, "b" * 32
    accounts = FakeAccounts(ended={ended})
    v = verifier(StaticJwksSource(jwks(ed)), accounts=accounts)
    with pytest.raises(TokenError, match="session ended"):
        await v.verify(sign(ed, claims(sid=ended)))
    assert (await v.verify(sign(ed, claims(sid=alive)))).sid == alive
    # A disabled account says so, whatever its login.
    accounts.disabled.add("u_123")
    with pytest.raises(TokenError, match="account disabled"):
        await v.verify(sign(ed, claims(sid=ended)))


async def test_a_token_without_sid_is_checked_for_the_account_only(ed: SigningKey) -> None:
    """A token from before logins were named verifies with an empty sid and no login lookup."""
    accounts = FakeAccounts()
    v = verifier(StaticJwksSource(jwks(ed)), accounts=accounts)
    assert (await v.verify(sign(ed))).sid == ""
    assert (accounts.calls, accounts.session_calls) == (1, 0)


@pytest.mark.parametrize("sid", [7, "A" * 32, "a" * 31, "a" * 33, {"$ne": 1}])
async def test_a_malformed_sid_is_refused(ed: SigningKey, sid: Any) -> None:
    """A sid that is not a login id as auth makes them fails verification (never a lookup)."""
    accounts = FakeAccounts()
    v = verifier(StaticJwksSource(jwks(ed)), accounts=accounts)
    with pytest.raises(TokenError, match="session id"):
        await v.verify(sign(ed, claims(sid=sid)))
    assert accounts.session_calls == 0


def test_from_settings_uses_settings(ed: SigningKey) -> None:
    """from_settings copies issuer, audience, algorithms and timings."""
    v = JwtVerifier.from_settings(
        Settings(jwt_algorithms=("EdDSA",)), StaticJwksSource(jwks(ed)), accounts=FakeAccounts()
    )
    assert isinstance(v, JwtVerifier)
    with pytest.raises(ConfigError):
        JwtVerifier.from_settings(Settings(jwt_algorithms=("RS256",)), StaticJwksSource({}))


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [
        ("Bearer abc.def.ghi", None, "abc.def.ghi"),
        ("bearer   abc ", "ignored", "abc"),
        ("BEARER abc", None, "abc"),
        (None, "q.r.s", "q.r.s"),
        ("", "q.r.s", "q.r.s"),
    ],
)
def test_bearer_token_parsing(header: str | None, query: str | None, expected: str) -> None:
    """The header wins, its scheme is case-insensitive, and the query value is the fallback."""
    assert bearer_token(header, query) == expected


@pytest.mark.parametrize(
    ("header", "query", "message"),
    [
        (None, None, "missing bearer token"),
        ("", "  ", "missing bearer token"),
        ("Basic dXNlcjpwdw==", None, "not a bearer"),
        ("Bearer", "q", "not a bearer"),
    ],
)
def test_bearer_token_rejects(header: str | None, query: str | None, message: str) -> None:
    """No token, or a non-bearer Authorization header, raises TokenError."""
    with pytest.raises(TokenError, match=message):
        bearer_token(header, query)


async def test_http_jwks_source_fetches_and_verifies(ed: SigningKey) -> None:
    """HttpJwksSource reads a JWKS from a real local server and a verifier uses it."""

    async def serve_jwks(_request: web.Request) -> web.Response:
        return web.json_response(jwks(ed))

    app = web.Application()
    app.router.add_get("/v1/auth/jwks", serve_jwks)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        source = HttpJwksSource(session, str(server.make_url("/v1/auth/jwks")))
        document = await source.fetch()
        assert document["keys"][0]["kid"] == ed.kid
        v = verifier(source)
        assert (await v.verify(sign(ed))).sub == "u_123"


@pytest.mark.parametrize("mode", ["status500", "not_json", "no_keys"])
async def test_http_jwks_source_failures_are_unavailable(mode: str) -> None:
    """HTTP 500, a non-JSON body or a document without keys raise Unavailable."""

    async def broken(_request: web.Request) -> web.Response:
        if mode == "status500":
            return web.Response(status=500, text="boom")
        if mode == "not_json":
            return web.Response(text="<html>")
        return web.json_response({"nope": []})

    app = web.Application()
    app.router.add_get("/jwks", broken)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        source = HttpJwksSource(session, str(server.make_url("/jwks")))
        with pytest.raises(Unavailable):
            await source.fetch()


async def test_http_jwks_source_unreachable_is_unavailable() -> None:
    """A refused connection raises Unavailable."""
    app = web.Application()
    async with TestServer(app) as server:
        url = str(server.make_url("/jwks"))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(Unavailable):
            await HttpJwksSource(session, url, timeout_s=2.0).fetch()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("CHAT_JWKS_STALE_S", "-1"), ("CHAT_JWKS_WAIT_S", "0"), ("CHAT_JWKS_WAIT_S", "31")],
)
def test_jwks_outage_settings_are_checked_at_start_up(variable: str, value: str) -> None:
    """A negative stale bound or a wait outside (0, 30] s stops start-up, naming the variable."""
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})
