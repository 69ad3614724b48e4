"""Access-token verification against the auth service's JWKS, shared by every service.

Only asymmetric algorithms are accepted and the algorithm is pinned to the key's type, so a token
cannot pick its own verification method (``alg: none``, HS256 keyed with the public key).

Keys are cached, and refetched by one background fetch at a time. Once the cache has expired,
requests keep verifying with the keys they have while the refetch runs, and for up to ``stale_s``
more while refetches keep failing (an auth outage must not log everybody out, nor queue every
request behind a hung fetch). Only a verifier with no usable keys at all makes a request wait, for
at most ``wait_s``, and then answers ``Unavailable``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import jwt
from jwt import PyJWK

from chatcore.errors import Unauthorized, Unavailable
from chatcore.schema import ID_RE
from chatcore.settings import JWT_ALGORITHMS, ConfigError, Settings

if TYPE_CHECKING:
    # Only the Protocol: the relay never touches the database, so no driver import here.
    from chatcore.accounts import AccountStatus

_log = logging.getLogger(__name__)

MAX_TOKEN_BYTES = 8 * 1024
MAX_SUB_CHARS = 64
_MAX_KID_CHARS = 128
# An unknown kid is attacker-controlled input; refetching for each one would let garbage tokens
# turn every service into a load generator against the auth service.
_MIN_REFETCH_S = 10.0
# After failed fetches, wait 1, 2, 4 ... up to 30 s before the next one: an auth outage must not
# be met with one fetch per request from every service.
_RETRY_AFTER_FAILURE_S = 1.0
_MAX_RETRY_AFTER_FAILURE_S = 30.0
# A fetch that hangs past this is abandoned so that another one can start.
_FETCH_TIMEOUT_S = 10.0

# Key type -> the one algorithm that key may verify; everything else in a JWKS is skipped.
_ALG_FOR_KEY: dict[tuple[str, str], str] = {("OKP", "Ed25519"): "EdDSA", ("EC", "P-256"): "ES256"}
# What CHAT_JWT_ALGORITHMS may name: the algorithms of the key types above.
_SUPPORTED_ALGS = JWT_ALGORITHMS
_ACCEPTED_TYP = frozenset({"at+jwt", "application/at+jwt"})
_REQUIRED_CLAIMS = ["iss", "aud", "sub", "iat", "nbf", "exp", "jti"]
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class TokenError(Unauthorized):
    """The access token was rejected; the message says why and never contains the token."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified identity carried by an access token."""

    sub: str
    jti: str
    iat: int
    exp: int
    iss: str
    aud: str
    kid: str
    # The login the token belongs to (its refresh-token family); empty for a token from before
    # logins were named, which cannot be ended early and expires like any other.
    sid: str = ""


class JwksSource(Protocol):
    """Where the verifier gets the JWKS document ``{"keys": [...]}`` from."""

    async def fetch(self) -> Mapping[str, Any]: ...


class HttpJwksSource:
    """Fetches the JWKS over HTTP with a session the caller owns (and closes)."""

    def __init__(self, session: aiohttp.ClientSession, url: str, *, timeout_s: float = 3.0) -> None:
        self._session = session
        self._url = url
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def fetch(self) -> Mapping[str, Any]:
        """GET the JWKS; any network, HTTP or JSON failure becomes ``Unavailable``."""
        try:
            async with self._session.get(
                self._url, timeout=self._timeout, headers={"Accept": "application/json"}
            ) as resp:
                if resp.status != 200:
                    raise Unavailable(f"JWKS endpoint {self._url} answered HTTP {resp.status}")
                body = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(
                f"JWKS endpoint {self._url} unreachable: {type(exc).__name__}"
            ) from exc
        try:
            document = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise Unavailable(f"JWKS endpoint {self._url} returned invalid JSON") from exc
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise Unavailable(f"JWKS endpoint {self._url} returned no keys list")
        return document


class StaticJwksSource:
    """A JWKS held in memory: for tests, and for the auth service verifying its own tokens."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        self._document = document

    def update(self, document: Mapping[str, Any]) -> None:
        """Replace the key set, e.g. after the auth service rotates its signing key."""
        self._document = document

    async def fetch(self) -> Mapping[str, Any]:
        """Return the current document."""
        return self._document


def _parse_jwks(document: Mapping[str, Any], allowed: frozenset[str]) -> dict[str, PyJWK]:
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise Unavailable("JWKS document has no keys list")
    parsed: dict[str, PyJWK] = {}
    for jwk in keys:
        # One odd key (a future RSA key, an encryption key) must not take down verification
        # with all the others, so unusable entries are skipped.
        if not isinstance(jwk, dict):
            continue
        kid = jwk.get("kid")
        alg = _ALG_FOR_KEY.get((str(jwk.get("kty")), str(jwk.get("crv"))))
        if not isinstance(kid, str) or not kid or kid in parsed or alg not in allowed:
            continue
        if jwk.get("alg", alg) != alg or jwk.get("use", "sig") != "sig":
            continue
        try:
            parsed[kid] = PyJWK(jwk, algorithm=alg)
        except jwt.PyJWTError:
            continue
    return parsed


def _numeric_date(payload: Mapping[str, Any], claim: str) -> int:
    value = payload[claim]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenError(f"claim {claim} is not a number")
    return int(value)


class _KeyCache:
    """The JWKS keys, refreshed by at most one fetch in flight (single flight)."""

    def __init__(
        self,
        source: JwksSource,
        algorithms: frozenset[str],
        *,
        cache_s: float,
        stale_s: float,
        wait_s: float,
        clock: Callable[[], float],
    ) -> None:
        self._source = source
        self._algorithms = algorithms
        self._cache_s = cache_s
        self._stale_s = stale_s
        self._wait_s = wait_s
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = -math.inf  # clock time of the last successful fetch
        self._last_attempt = -math.inf
        self._retry_at = -math.inf  # no fetch before this after failures
        self._failures = 0
        self._last_error = "not loaded yet"
        self._inflight: asyncio.Task[None] | None = None

    def _fresh(self, now: float) -> bool:
        return now < self._fetched_at + self._cache_s

    def _usable(self, now: float) -> bool:
        return now < self._fetched_at + self._cache_s + self._stale_s

    @property
    def fetching(self) -> bool:
        """True while a fetch is in flight."""
        return self._inflight is not None

    async def key(self, kid: str) -> PyJWK:
        now = self._clock()
        if not self._fresh(now):
            self._start_fetch(now)
        if self._usable(now):
            key = self._keys.get(kid)
            if key is not None:
                return key  # never waits, even with a fetch in flight
            # A new kid appears when the auth service rotates keys; it publishes the key before
            # signing with it, so one rate-limited refetch is enough to pick it up.
            if now - self._last_attempt >= _MIN_REFETCH_S:
                self._start_fetch(now)
        await self.wait_for_fetch()
        if not self._usable(self._clock()):
            raise Unavailable(f"JWKS unavailable: {self._last_error}")
        key = self._keys.get(kid)
        if key is None:
            raise TokenError("unknown token key id")
        return key

    def _start_fetch(self, now: float) -> None:
        if self._inflight is not None or now < self._retry_at:
            return
        self._last_attempt = now
        self._inflight = asyncio.create_task(self._fetch(), name="jwks-fetch")

    async def wait_for_fetch(self) -> None:
        """Wait for the fetch in flight, if any, at most ``wait_s``; it goes on regardless."""
        task = self._inflight
        if task is not None:
            await asyncio.wait({task}, timeout=self._wait_s)

    async def _fetch(self) -> None:
        try:
            async with asyncio.timeout(_FETCH_TIMEOUT_S):
                document = await self._source.fetch()
            keys = _parse_jwks(document, self._algorithms)
        except Exception as exc:  # a background task: everything is handled here
            self._failed(exc.message if isinstance(exc, Unavailable) else type(exc).__name__)
        else:
            self._keys = keys
            self._fetched_at = self._clock()
            self._failures = 0
            self._retry_at = -math.inf
            self._last_error = ""
        finally:
            self._inflight = None

    def _failed(self, reason: str) -> None:
        now = self._clock()
        self._failures += 1
        backoff = _RETRY_AFTER_FAILURE_S * 2 ** min(self._failures - 1, 10)
        self._retry_at = now + min(backoff, _MAX_RETRY_AFTER_FAILURE_S)
        self._last_error = reason
        if self._usable(now):
            _log.warning(
                "jwks refresh failed, verifying with keys fetched %.0f s ago "
                "(usable for %.0f s more): %s",
                now - self._fetched_at,
                self._fetched_at + self._cache_s + self._stale_s - now,
                reason,
            )
        else:
            _log.error("jwks fetch failed and no usable keys are cached: %s", reason)

    async def aclose(self) -> None:
        task = self._inflight
        if task is not None:
            task.cancel()
            await asyncio.wait({task})


class JwtVerifier:
    """Verifies access tokens with keys from a ``JwksSource``, cached for ``cache_s`` seconds.

    With ``accounts``, a token of a disabled (or unknown) account is refused too, so disabling
    takes effect at the next request rather than at token expiry.
    """

    def __init__(
        self,
        source: JwksSource,
        *,
        issuer: str,
        audience: str,
        algorithms: Sequence[str],
        cache_s: float,
        leeway_s: float,
        stale_s: float = 24 * 3600.0,
        wait_s: float = 2.0,
        accounts: AccountStatus | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        unsupported = sorted(set(algorithms) - _SUPPORTED_ALGS)
        if unsupported or not algorithms:
            # Failing at start-up beats silently accepting a weaker algorithm later.
            raise ConfigError(
                f"JWT algorithms must be a non-empty subset of {sorted(_SUPPORTED_ALGS)}, "
                f"got unsupported {unsupported}"
            )
        self._issuer = issuer
        self._audience = audience
        self._algorithms = frozenset(algorithms)
        self._leeway_s = leeway_s
        self._accounts = accounts
        # One clock drives claim times, the cache and the refetch limits so tests control all
        # of them; a wall-clock step only makes one refresh early or late.
        self._clock = clock
        self._keys = _KeyCache(
            source,
            self._algorithms,
            cache_s=cache_s,
            stale_s=stale_s,
            wait_s=wait_s,
            clock=clock,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, source: JwksSource, *, accounts: AccountStatus | None = None
    ) -> JwtVerifier:
        """Build a verifier from the ``CHAT_JWT_*`` / ``CHAT_JWKS_*`` settings."""
        return cls(
            source,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            algorithms=settings.jwt_algorithms,
            cache_s=settings.jwks_cache_s,
            leeway_s=settings.jwt_leeway_s,
            stale_s=settings.jwks_stale_s,
            wait_s=settings.jwks_wait_s,
            accounts=accounts,
        )

    async def verify(self, token: str) -> AccessClaims:
        """Return the token's claims, or raise ``TokenError`` (``Unavailable`` if no keys)."""
        if not isinstance(token, str) or len(token) > MAX_TOKEN_BYTES:
            raise TokenError("malformed token")
        if not _COMPACT_JWS.fullmatch(token):
            raise TokenError("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed token header") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise TokenError("token algorithm not allowed")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYP:
            raise TokenError("token type is not at+jwt")
        if "crit" in header:
            raise TokenError("token has unsupported critical header")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid or len(kid) > _MAX_KID_CHARS:
            raise TokenError("token has no usable key id")

        key = await self._keys.key(kid)
        if key.algorithm_name != alg:
            raise TokenError("token algorithm does not match its key")
        payload = self._decode(token, key)
        claims = self._claims(payload, kid)
        if self._accounts is not None:
            await self._check_account(self._accounts, claims)
        return claims

    @staticmethod
    async def _check_account(accounts: AccountStatus, claims: AccessClaims) -> None:
        if await accounts.is_disabled(claims.sub):
            raise TokenError("account disabled")
        # One after the other, not side by side: the login's answer is usually shared with the
        # login's other requests (chatcore.accounts), and a task per request costs more.
        if claims.sid and await accounts.session_ended(claims.sid):
            raise TokenError("session ended")

    async def wait_for_refresh(self) -> None:
        """Wait (at most ``wait_s``) for a key fetch in flight; for tests and shutdown."""
        await self._keys.wait_for_fetch()

    @property
    def refreshing(self) -> bool:
        """True while a key fetch is in flight."""
        return self._keys.fetching

    async def aclose(self) -> None:
        """Abandon a key fetch in flight."""
        await self._keys.aclose()

    def _decode(self, token: str, key: PyJWK) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[key.algorithm_name],
                audience=self._audience,
                issuer=self._issuer,
                # PyJWT reads the system clock; time claims are checked in _claims instead.
                options={
                    "require": _REQUIRED_CLAIMS,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise TokenError("bad token signature") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError(f"token is missing claim {exc.claim}") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong token audience") from None
        except jwt.InvalidIssuerError:
            raise TokenError("wrong token issuer") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError("token algorithm not allowed") from None
        except jwt.DecodeError:
            raise TokenError("malformed token") from None
        except jwt.PyJWTError:
            raise TokenError("invalid token") from None
        return payload

    def _claims(self, payload: Mapping[str, Any], kid: str) -> AccessClaims:
        now = self._clock()
        exp = _numeric_date(payload, "exp")
        nbf = _numeric_date(payload, "nbf")
        iat = _numeric_date(payload, "iat")
        if exp <= now - self._leeway_s:
            raise TokenError("token expired")
        if nbf > now + self._leeway_s:
            raise TokenError("token not yet valid")
        if iat > now + self._leeway_s:
            raise TokenError("token issued in the future")
        sub = payload["sub"]
        if not isinstance(sub, str) or not sub or len(sub) > MAX_SUB_CHARS:
            raise TokenError("token subject is not a valid user id")
        jti = payload["jti"]
        if not isinstance(jti, str) or not jti:
            raise TokenError("token id is not a string")
        sid = payload.get("sid", "")
        # A login's id as auth makes it (16 random bytes in hex): the form every stored id has.
        if not isinstance(sid, str) or (sid and not ID_RE.fullmatch(sid)):
            raise TokenError("token session id is not valid")
        return AccessClaims(
            sub=sub,
            jti=jti,
            iat=iat,
            exp=exp,
            iss=self._issuer,
            aud=self._audience,
            kid=kid,
            sid=sid,
        )


def bearer_token(authorization_header: str | None, query_token: str | None) -> str:
    """The token from ``Authorization: Bearer <t>``, else from the ``?token=`` query value."""
    if authorization_header and authorization_header.strip():
        scheme, _, value = authorization_header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            raise TokenError("authorization header is not a bearer token")
        return value
    if query_token and query_token.strip():
        return query_token.strip()
    raise TokenError("missing bearer token")
