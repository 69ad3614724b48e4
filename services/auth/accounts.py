"""The auth domain: register, log in, refresh with rotation and theft detection, log out.

No HTTP and no database driver here: stores, the password checker, the token issuer, limiters
and the clock come in through the constructor, so every rule is testable with in-memory fakes.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter

from chatcore.errors import Busy, Conflict, Forbidden, NotFound, RateLimited, Unauthorized
from chatcore.leases import Lease, Leases, local_leases
from chatcore.logging import get_logger
from chatcore.ratelimit import TokenBucketLimiter
from chatcore.settings import Settings
from services.auth.keys import TokenIssuer
from services.auth.passwords import Passwords
from services.auth.renames import Rename, RenameStore
from services.auth.sessions import EndedSession, EndedSessionStore
from services.auth.store import RefreshRecord, RefreshStore, User, UserStore
from services.auth.validation import (
    Credentials,
    PasswordChange,
    Registration,
    could_be_refresh_token,
)

_log = get_logger("auth.accounts")

# A spent refresh token presented again this soon after its use is a concurrent request of the
# same holder (two tabs sharing one cookie, a client's double submit), not a replay: it answers 409
# and revokes nothing. Later, it is taken for theft and revokes the whole login.
REUSE_GRACE_S = 5.0


@dataclass(frozen=True, slots=True)
class AuthMetrics:
    logins: Counter
    tokens_issued: Counter
    refreshes: Counter
    reuse_detected: Counter
    registrations: Counter
    password_checks_busy: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> AuthMetrics:
        return cls(
            logins=Counter(
                "auth_logins_total", "Logins by outcome", ["outcome"], registry=registry
            ),
            tokens_issued=Counter(
                "auth_tokens_issued_total", "Access tokens issued", registry=registry
            ),
            refreshes=Counter(
                "auth_refreshes_total", "Refreshes by outcome", ["outcome"], registry=registry
            ),
            reuse_detected=Counter(
                "auth_refresh_reuse_total",
                "Rotated refresh tokens presented again (family revoked)",
                registry=registry,
            ),
            registrations=Counter(
                "auth_registrations_total", "Accounts created", registry=registry
            ),
            password_checks_busy=Counter(
                "auth_password_checks_busy_total",
                "Password checks refused (503) because every argon2 worker stayed busy",
                registry=registry,
            ),
        )


@dataclass(frozen=True, slots=True)
class Limiters:
    """Failed logins per client address and per (email, client address); successful logins per
    account; registrations per address; name and password changes per account (a password
    change's check of the current password is a login attempt too); lookups by email per account
    (each tells whether an address has an account, so they are bounded like registrations).

    There is deliberately no limit per email alone: anyone could then lock any account by failing
    logins on it. Guessing one account's password from many addresses is bounded per address, by
    argon2's cost, and by nginx's ``limit_req`` (docs/decisions.md).
    """

    login_ip: TokenBucketLimiter
    login_email_ip: TokenBucketLimiter
    register_ip: TokenBucketLimiter
    account_change: TokenBucketLimiter
    login_account: TokenBucketLimiter
    email_lookup: TokenBucketLimiter

    @classmethod
    def from_settings(cls, settings: Settings) -> Limiters:
        def per_minute(burst: int, rate: float) -> TokenBucketLimiter:
            return TokenBucketLimiter(
                capacity=burst, rate_per_s=rate / 60, max_keys=settings.login_tracked_keys
            )

        return cls(
            login_ip=per_minute(settings.login_ip_burst, settings.login_ip_per_minute),
            login_email_ip=per_minute(settings.login_email_burst, settings.login_email_per_minute),
            register_ip=per_minute(settings.register_ip_burst, settings.register_ip_per_minute),
            account_change=per_minute(
                settings.account_change_burst, settings.account_change_per_minute
            ),
            login_account=per_minute(
                settings.login_account_burst, settings.login_account_per_minute
            ),
            email_lookup=per_minute(settings.email_lookup_burst, settings.email_lookup_per_minute),
        )


@dataclass(frozen=True, slots=True)
class Session:
    """What a successful login or refresh returns to the client."""

    access_token: str
    expires_in: int
    refresh_token: str
    user: User


def hash_refresh_token(token: str) -> str:
    """Refresh tokens are stored only as this hash: a database leak yields no usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _limit(limiter: TokenBucketLimiter, key: str, what: str) -> None:
    wait = limiter.try_acquire(key)
    if wait > 0:
        raise RateLimited(f"too many {what}; retry later", retry_after=wait)


class AuthService:
    def __init__(
        self,
        *,
        users: UserStore,
        refresh_tokens: RefreshStore,
        passwords: Passwords,
        issuer: TokenIssuer,
        limiters: Limiters,
        metrics: AuthMetrics,
        refresh_ttl_s: int,
        ended_sessions: EndedSessionStore,
        access_lifetime_s: float,
        renames: RenameStore,
        logins_per_account: int,
        share_a_team: Callable[[str, str], Awaitable[bool]],
        on_session_ended: Callable[[], None] = lambda: None,
        on_renamed: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.time,
        leases: Leases | None = None,
    ) -> None:
        self._users = users
        self._refresh = refresh_tokens
        self._passwords = passwords
        self._issuer = issuer
        self._limiters = limiters
        self._metrics = metrics
        self._refresh_ttl = timedelta(seconds=refresh_ttl_s)
        self._ended = ended_sessions
        # How long an access token issued now may be accepted: its lifetime and the leeway.
        self._access_lifetime = timedelta(seconds=access_lifetime_s)
        self._on_session_ended = on_session_ended
        self._renames = renames
        self._logins_per_account = logins_per_account
        self._share_a_team = share_a_team
        self._on_renamed = on_renamed
        self._clock = clock
        # Per refresh token, across every auth instance when the leases live in the database.
        self._claims = leases if leases is not None else local_leases("refresh")

    def _now(self) -> datetime:
        # Millisecond precision: what the database stores, so comparisons round-trip exactly.
        now = datetime.fromtimestamp(self._clock(), UTC)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    async def register(self, form: Registration, *, client_ip: str) -> User:
        _limit(self._limiters.register_ip, client_ip, "registrations")
        try:
            password_hash = await self._passwords.hash(form.password)
        except Busy:
            # Refused before any work: not one of the address's registrations.
            self._limiters.register_ip.refund(client_ip)
            raise
        user = User(
            id=uuid.uuid4().hex,
            email=form.email,
            name=form.name,
            password_hash=password_hash,
            disabled=False,
            created_at=self._now(),
        )
        await self._users.create(user)
        self._metrics.registrations.inc()
        _log.info("user_registered", user_id=user.id)
        return user

    async def login(self, creds: Credentials, *, client_ip: str) -> Session:
        email_ip = f"{creds.email} {client_ip}"
        self._take_login(client_ip, email_ip)
        try:
            user = await self._users.by_email(creds.email)
            # Unknown emails are verified against a dummy hash: same answer, about the same time.
            stored = user.password_hash if user is not None else None
            ok = await self._passwords.verify(stored, creds.password)
        except BaseException:
            # No verdict (the database failed, or no worker was free): the attempt taught the
            # caller nothing.
            self._refund_login(client_ip, email_ip)
            raise
        if ok and user is not None:
            # Only successful logins draw from the account's budget, so only whoever has the
            # password can spend it. It is asked only once the password is found right: asked
            # before, a quick 429 told anyone that the email has an account. Past the budget
            # the attempt is not refunded: the address's limits then bound the hashes a
            # password's holder can make everyone else's logins wait behind.
            wait = self._limiters.login_account.try_acquire(user.id)
            if wait > 0:
                self._metrics.logins.labels("rate_limited").inc()
                raise RateLimited("too many logins of this account; retry later", retry_after=wait)
            self._refund_login(client_ip, email_ip)
        if user is None or not ok:
            self._metrics.logins.labels("bad_credentials").inc()
            raise Unauthorized("wrong email or password")
        if user.disabled:
            self._metrics.logins.labels("disabled").inc()
            raise Forbidden("this account is disabled")
        checked = user.password_hash
        if self._passwords.needs_rehash(checked):
            try:
                new_hash = await self._passwords.hash(creds.password)
            except Busy:
                pass  # The login stands; the upgrade waits for a login at a quieter moment.
            else:
                # Only over the hash just checked: a password changed meanwhile stays changed.
                await self._users.set_password_hash(user.id, new_hash, replacing=checked)
                checked = new_hash
        family = secrets.token_hex(16)
        session = await self._new_session(user, family=family)
        # A password change that ran while this login checked the old password may have ended
        # the account's logins before this one was stored: read the hash again, and a login of
        # the old password ends here instead of outliving the change.
        now = await self._users.by_id(user.id)
        if now is None or now.password_hash != checked:
            await self._refresh.revoke_family(family)
            await self._end_sessions(user.id, only={family})
            self._metrics.logins.labels("bad_credentials").inc()
            raise Unauthorized("the password changed meanwhile; log in with the new one")
        await self._cap_logins(user.id, keep=family)
        self._metrics.logins.labels("success").inc()
        _log.info("login", user_id=user.id)
        return session

    async def _cap_logins(self, user_id: str, *, keep: str) -> None:
        """End the least recently refreshed logins past ``logins_per_account``: whoever holds
        the password cannot pile up logins without end (each is a token to revoke and an event
        to send at the next logout everywhere or password change)."""
        live = await self._refresh.live_logins(user_id, self._now())
        excess = len(live) - self._logins_per_account
        if excess <= 0:
            return
        oldest = [f for f in live if f != keep][:excess]
        # Ended before revoked, as a logout everywhere does.
        await self._end_sessions(user_id, only=set(oldest))
        for family in oldest:
            await self._refresh.revoke_family(family)
        _log.info("logins_capped", user_id=user_id, ended=len(oldest))

    def _take_login(self, client_ip: str, email_ip: str) -> None:
        # Taken before the (slow) password check, so parallel guesses cannot all slip through
        # before the first failure is counted; a correct password gives them back.
        try:
            _limit(self._limiters.login_ip, client_ip, "login attempts")
            try:
                _limit(self._limiters.login_email_ip, email_ip, "login attempts")
            except RateLimited:
                self._limiters.login_ip.refund(client_ip)
                raise
        except RateLimited:
            self._metrics.logins.labels("rate_limited").inc()
            raise

    def _refund_login(self, client_ip: str, email_ip: str) -> None:
        self._limiters.login_ip.refund(client_ip)
        self._limiters.login_email_ip.refund(email_ip)

    async def _new_session(self, user: User, *, family: str) -> Session:
        refresh_token = secrets.token_urlsafe(32)  # 256 random bits
        now = self._now()
        await self._refresh.insert(
            RefreshRecord(
                token_hash=hash_refresh_token(refresh_token),
                family=family,
                user_id=user.id,
                created_at=now,
                expires_at=now + self._refresh_ttl,
                used_at=None,
                revoked=False,
            )
        )
        access = self._issuer.issue(user.id, session_id=family)
        self._metrics.tokens_issued.inc()
        return Session(access.token, access.expires_in, refresh_token, user)

    async def refresh(self, refresh_token: str) -> Session:
        """Rotate: the presented token is spent and a new pair issued in the same family."""
        if not could_be_refresh_token(refresh_token):
            self._metrics.refreshes.labels("invalid").inc()
            raise Unauthorized("invalid refresh token")
        token_hash = hash_refresh_token(refresh_token)
        # The lease keeps two uses of one token apart on every instance; its epoch fences the
        # claim, so a use paused past the lease claims nothing afterwards.
        async with self._claims.hold(token_hash) as lease:
            return await self._rotate(token_hash, lease)

    async def _rotate(self, token_hash: str, lease: Lease) -> Session:
        record = await self._refresh.get(token_hash)
        if record is None or record.revoked:
            self._metrics.refreshes.labels("invalid").inc()
            raise Unauthorized("invalid refresh token")
        if record.used_at is not None:
            if self._now() - record.used_at < timedelta(seconds=REUSE_GRACE_S):
                self._metrics.refreshes.labels("concurrent").inc()
                raise Conflict(
                    "this refresh token was just rotated by another request; "
                    "retry with the one that request received"
                )
            await self._reuse_detected(record)
        if record.expires_at <= self._now():
            self._metrics.refreshes.labels("expired").inc()
            raise Unauthorized("refresh token expired")
        user = await self._users.by_id(record.user_id)
        if user is None or user.disabled:
            await self._refresh.revoke_family(record.family)
            self._metrics.refreshes.labels("disabled").inc()
            raise Unauthorized("account disabled")
        # The conditional update is the race guard: of two concurrent uses of one token, only
        # one claims it; the other is treated exactly like a replay.
        lease.check()
        if not await self._refresh.claim(token_hash, self._now(), fence=lease.epoch):
            await self._reuse_detected(record)
        session = await self._new_session(user, family=record.family)
        # The lease covers this token only: a revocation of the family (an older token's
        # replay, a logout, a disable) that ran between the claim and the insert revoked the
        # claimed token but never saw the new one. The claimed token tells; revoke again.
        claimed = await self._refresh.get(token_hash)
        if claimed is None or claimed.revoked:
            await self._refresh.revoke_family(record.family)
            self._metrics.refreshes.labels("invalid").inc()
            raise Unauthorized("this login was revoked meanwhile; log in again")
        self._metrics.refreshes.labels("success").inc()
        return session

    async def _reuse_detected(self, record: RefreshRecord) -> None:
        revoked = await self._refresh.revoke_family(record.family)
        # One of the two holders is a thief, and may hold access tokens of the login too.
        await self._end_sessions(record.user_id, only={record.family})
        self._metrics.reuse_detected.inc()
        self._metrics.refreshes.labels("reuse").inc()
        _log.warning("refresh_token_reuse", user_id=record.user_id, revoked=revoked)
        raise Unauthorized("refresh token already used; all sessions of this login were revoked")

    async def logout(self, refresh_token: str) -> None:
        """End the token's login: its refresh tokens, and the access tokens already issued.

        Unknown tokens are ignored (no oracle). A logout that failed half way is finished by
        the next one with the same token: a revoked token is still found, and both steps are
        idempotent.
        """
        if not could_be_refresh_token(refresh_token):
            return
        record = await self._refresh.get(hash_refresh_token(refresh_token))
        if record is not None:
            await self._refresh.revoke_family(record.family)
            await self._end_sessions(record.user_id, only={record.family})
            _log.info("logout", user_id=record.user_id)

    async def logout_everywhere(self, refresh_token: str) -> int:
        """End every login of the token's user, this one included; the number ended.

        Only a token that could still be refreshed may speak for the other logins. Any other
        known token still ends its own login, as a plain logout with it does (a spent one may
        have been refreshed by a thief, whose login that is now), and gets ``Unauthorized``.
        """
        record = None
        if could_be_refresh_token(refresh_token):
            record = await self._refresh.get(hash_refresh_token(refresh_token))
        if record is None:
            raise Unauthorized("invalid refresh token")
        if record.revoked or record.used_at is not None or record.expires_at <= self._now():
            await self.logout(refresh_token)
            raise Unauthorized(
                "this login had already ended, so it cannot log out the others; log in again"
            )
        # Ended before the revocation, so that a failure in between leaves this token able to
        # ask again; then those whose first token came in meanwhile, which the revocation
        # reached (a login that begins after it began after this logout).
        ended = await self._end_sessions(record.user_id)
        await self._refresh.revoke_user(record.user_id)
        ended |= await self._end_sessions(record.user_id, without=ended)
        _log.info("logout_everywhere", user_id=record.user_id, logins=len(ended))
        return len(ended)

    async def _end_sessions(
        self,
        user_id: str,
        *,
        only: AbstractSet[str] | None = None,
        without: AbstractSet[str] = frozenset(),
    ) -> set[str]:
        """Refuse the logins' access tokens from now on, and have their sockets closed.

        Only logins that may hold an unexpired access token are ended (every access token is
        issued beside a refresh token, so one issued within a token's lifetime tells): the
        others' tokens are all refused already, and a user's old logins (30 days of them) are
        not turned into documents and events again and again. Returns the logins ended.
        """
        now = self._now()
        live = await self._refresh.families(user_id, issued_after=now - self._access_lifetime)
        ending = (live if only is None else live & set(only)) - set(without)
        if ending:
            until = now + self._access_lifetime
            await self._ended.end([EndedSession(f, user_id, until) for f in sorted(ending)])
            self._on_session_ended()
        return ending

    async def rename(self, user_id: str, name: str) -> User:
        """The user with their new display name, which their teams are then told (renames.py).

        Noted for the teams before it is stored, so no stored name goes untold: a failure in
        between leaves a note that tells the name as it is."""
        _limit(self._limiters.account_change, user_id, "account changes")
        user = await self._users.by_id(user_id)
        if user is None:
            raise NotFound("no such user")
        await self._renames.note(Rename(user_id, secrets.token_hex(8), self._now()))
        if not await self._users.set_name(user_id, name):
            raise NotFound("no such user")
        self._on_renamed()
        _log.info("user_renamed", user_id=user_id)
        return replace(user, name=name)

    async def change_password(
        self, user_id: str, session_id: str, change: PasswordChange, *, client_ip: str
    ) -> int:
        """A new password once the current one is given; every other login of the account ends
        (its refresh tokens and its access tokens), as a stolen password's would need to. This
        login (``session_id``) goes on. The number of logins ended."""
        _limit(self._limiters.account_change, user_id, "account changes")
        user = await self._users.by_id(user_id)
        if user is None:
            raise NotFound("no such user")
        # A guess at the current password with a stolen access token is a login attempt.
        email_ip = f"{user.email} {client_ip}"
        self._take_login(client_ip, email_ip)
        try:
            ok = await self._passwords.verify(user.password_hash, change.current)
        except BaseException:
            self._refund_login(client_ip, email_ip)
            raise
        if not ok:
            self._metrics.logins.labels("bad_credentials").inc()
            # 403, not 401: the token is good, and a 401 would send the client to renew it.
            raise Forbidden("the current password is wrong")
        self._refund_login(client_ip, email_ip)
        new_hash = await self._passwords.hash(change.new)
        await self._users.set_password_hash(user_id, new_hash)
        # As a logout everywhere, this login aside: ended before the revocation (a failure in
        # between leaves them ended, and the request can be made again), then those whose first
        # token came in meanwhile.
        keep = {session_id} if session_id else set()
        ended = await self._end_sessions(user_id, without=keep)
        await self._refresh.revoke_user(user_id, keep=session_id or None)
        ended |= await self._end_sessions(user_id, without=ended | keep)
        _log.info("password_changed", user_id=user_id, logins_ended=len(ended))
        return len(ended)

    async def user(self, user_id: str) -> User | None:
        return await self._users.by_id(user_id)

    async def sees_email(self, viewer: str, user_id: str) -> bool:
        """Whether ``viewer`` may read ``user_id``'s email: their own, or a teammate's now.
        Anyone signed in may look a user up by id (ids are in every message and member list,
        and stay in old messages); a stranger, or a removed member, gets the name only, so
        ids collected in a team do not become a mailing list after leaving it."""
        return viewer == user_id or await self._share_a_team(viewer, user_id)

    async def user_by_email(self, email: str, *, caller: str) -> User | None:
        """The account with this address, drawn from ``caller``'s lookup budget."""
        _limit(self._limiters.email_lookup, caller, "lookups by email")
        return await self._users.by_email(email)

    async def sweep_expired(self) -> int:
        """Delete expired refresh tokens and ended logins whose access tokens all expired.

        No TTL indexes on FerretDB: expiry is done here. The number of refresh tokens deleted.
        """
        await self._ended.delete_expired(self._now())
        return await self._refresh.delete_expired(self._now())
