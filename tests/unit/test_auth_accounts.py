"""The auth domain rules (login, rotation, theft detection, limits) with in-memory stores."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from prometheus_client import CollectorRegistry

from chatcore.errors import (
    Busy,
    Conflict,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from chatcore.ratelimit import TokenBucketLimiter
from chatcore.tokens import JwtVerifier, StaticJwksSource
from services.auth.accounts import (
    REUSE_GRACE_S,
    AuthMetrics,
    AuthService,
    Limiters,
    Session,
    hash_refresh_token,
)
from services.auth.keys import KeyRing, SigningKey, TokenIssuer
from services.auth.passwords import PasswordHasher, Passwords
from services.auth.store import RefreshRecord, User
from services.auth.validation import Credentials, PasswordChange, Registration
from tests.unit.auth_fakes import (
    MemoryAccountStatus,
    MemoryEndedSessionStore,
    MemoryRefreshStore,
    MemoryRenameStore,
    MemoryUserStore,
)

PASSWORD = "correct horse battery"


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class _World:
    service: AuthService
    users: MemoryUserStore
    tokens: MemoryRefreshStore
    ended: MemoryEndedSessionStore
    woken: list[None]
    renames: MemoryRenameStore
    renames_woken: list[None]
    clock: _Clock
    keys: KeyRing
    registry: CollectorRegistry
    # User id -> team ids, as the membership index has them.
    teams: dict[str, list[str]]

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        value = self.registry.get_sample_value(name, labels or {})
        return value or 0.0


def _limiter(capacity: float, clock: _Clock, max_keys: int = 100_000) -> TokenBucketLimiter:
    return TokenBucketLimiter(
        capacity=capacity, rate_per_s=capacity / 60, max_keys=max_keys, clock=clock
    )


@pytest.fixture
def world() -> Iterator[_World]:
    """An AuthService over in-memory stores, a fake clock and cheap argon2 parameters."""
    clock = _Clock()
    keys = KeyRing([SigningKey.from_private_key(ed25519.Ed25519PrivateKey.generate())])
    registry = CollectorRegistry()
    users, tokens, ended = MemoryUserStore(), MemoryRefreshStore(), MemoryEndedSessionStore()
    woken: list[None] = []
    renames, renames_woken = MemoryRenameStore(), list[None]()
    passwords = Passwords(
        PasswordHasher(time_cost=1, memory_kib=64, parallelism=1), workers=2, wait_s=5
    )
    teams: dict[str, list[str]] = {}

    async def share_a_team(one: str, other: str) -> bool:
        return not set(teams.get(one, [])).isdisjoint(teams.get(other, []))

    service = AuthService(
        users=users,
        refresh_tokens=tokens,
        passwords=passwords,
        issuer=TokenIssuer(keys, issuer="iss", audience="aud", ttl_s=900, clock=clock),
        limiters=Limiters(
            login_ip=_limiter(20, clock, max_keys=50),
            login_email_ip=_limiter(5, clock, max_keys=50),
            register_ip=_limiter(10, clock),
            account_change=_limiter(5, clock),
            login_account=_limiter(10, clock),
            email_lookup=_limiter(30, clock),
        ),
        metrics=AuthMetrics.create(registry),
        refresh_ttl_s=30 * 86400,
        ended_sessions=ended,
        access_lifetime_s=905,
        renames=renames,
        logins_per_account=5,
        share_a_team=share_a_team,
        on_session_ended=lambda: woken.append(None),
        on_renamed=lambda: renames_woken.append(None),
        clock=clock,
    )
    yield _World(
        service, users, tokens, ended, woken, renames, renames_woken, clock, keys, registry, teams
    )
    passwords.close()


def _verifier(world: _World) -> JwtVerifier:
    return JwtVerifier(
        StaticJwksSource(world.keys.jwks()),
        issuer="iss",
        audience="aud",
        algorithms=["EdDSA"],
        cache_s=300,
        leeway_s=5,
        accounts=MemoryAccountStatus(world.users, world.ended),
        clock=world.clock,
    )


async def _register(world: _World, email: str = "ada@example.com") -> str:
    user = await world.service.register(
        Registration(email=email, password=PASSWORD, name="Ada"), client_ip="10.0.0.1"
    )
    return user.id


async def _fail_logins(world: _World, count: int, *, client_ip: str) -> None:
    for i in range(count):
        with pytest.raises(Unauthorized):
            await world.service.login(
                Credentials("ada@example.com", f"guess {i}!!"), client_ip=client_ip
            )


async def test_login_issues_a_verifiable_access_token(world: _World) -> None:
    """A correct login returns an access token the shared verifier accepts for that user."""
    user_id = await _register(world)
    session = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    claims = await _verifier(world).verify(session.access_token)
    assert claims.sub == user_id
    assert claims.kid == world.keys.current.kid
    assert claims.exp - claims.iat == 900
    assert world.metric("auth_logins_total", {"outcome": "success"}) == 1


async def test_password_is_stored_only_as_argon2id_hash(world: _World) -> None:
    """The stored credential is an argon2id hash, never the password."""
    user_id = await _register(world)
    stored = world.users.users[user_id].password_hash
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


async def test_duplicate_email_conflicts(world: _World) -> None:
    """A second account with the same (normalized) email is a conflict."""
    await _register(world)
    with pytest.raises(Conflict):
        await _register(world)


async def test_unknown_email_and_wrong_password_fail_alike(world: _World) -> None:
    """Both failures raise the same Unauthorized message."""
    await _register(world)
    with pytest.raises(Unauthorized) as wrong:
        await world.service.login(Credentials("ada@example.com", "nope nope"), client_ip="ip")
    with pytest.raises(Unauthorized) as unknown:
        await world.service.login(Credentials("bob@example.com", PASSWORD), client_ip="ip")
    assert wrong.value.message == unknown.value.message


async def test_refresh_rotates_and_reuse_revokes_the_family(world: _World) -> None:
    """A refresh spends the token; presenting it again revokes every token of that login."""
    await _register(world)
    first = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    second = await world.service.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    world.clock.now += REUSE_GRACE_S  # past the window where a second use is taken as concurrent
    with pytest.raises(Unauthorized, match="already used"):
        await world.service.refresh(first.refresh_token)
    # The thief's replay also killed the legitimate holder's newer token.
    with pytest.raises(Unauthorized):
        await world.service.refresh(second.refresh_token)
    assert world.metric("auth_refresh_reuse_total") == 1


async def test_a_spent_token_again_within_seconds_is_concurrent_not_theft(world: _World) -> None:
    """Two tabs rotating one cookie at once: the later use answers 409 and revokes nothing, so
    the token the first use got keeps working."""
    await _register(world)
    first = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    second = await world.service.refresh(first.refresh_token)
    world.clock.now += REUSE_GRACE_S - 1
    with pytest.raises(Conflict, match="just rotated"):
        await world.service.refresh(first.refresh_token)
    assert world.metric("auth_refresh_reuse_total") == 0
    assert (await world.service.refresh(second.refresh_token)).user.email == "ada@example.com"


async def test_other_logins_survive_a_family_revocation(world: _World) -> None:
    """Revoking one login's family leaves the user's other sessions alone."""
    await _register(world)
    phone = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    laptop = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    await world.service.logout(phone.refresh_token)
    with pytest.raises(Unauthorized):
        await world.service.refresh(phone.refresh_token)
    assert (await world.service.refresh(laptop.refresh_token)).user.email == "ada@example.com"


async def test_logout_ends_the_logins_access_tokens_too(world: _World) -> None:
    """After a logout the login's unexpired access tokens are refused; another login's are not."""
    await _register(world)
    phone = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    rotated = await world.service.refresh(phone.refresh_token)
    laptop = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    verifier = _verifier(world)
    phone_sid = (await verifier.verify(phone.access_token)).sid
    assert phone_sid == (await verifier.verify(rotated.access_token)).sid
    assert phone_sid != (await verifier.verify(laptop.access_token)).sid

    await world.service.logout(rotated.refresh_token)
    for token in (phone.access_token, rotated.access_token):
        with pytest.raises(Unauthorized, match="session ended"):
            await verifier.verify(token)
    assert (await verifier.verify(laptop.access_token)).sub == phone.user.id
    # Kept exactly as long as the last access token of the login may be accepted.
    ended = world.ended.ended[phone_sid]
    assert ended.until.timestamp() == world.clock.now + 905
    assert world.woken == [None]
    # A logout again (the first one's answer was lost) changes nothing and still succeeds.
    await world.service.logout(rotated.refresh_token)
    assert world.ended.ended[phone_sid] == ended


async def test_logout_everywhere_ends_every_login_of_the_user_only(world: _World) -> None:
    """Every login of the user, the asking one included, loses its refresh and access tokens;
    another user's login is untouched."""
    await _register(world)
    await _register(world, "bob@example.com")
    ada = Credentials("ada@example.com", PASSWORD)
    phone = await world.service.login(ada, client_ip="ip")
    laptop = await world.service.refresh(
        (await world.service.login(ada, client_ip="ip")).refresh_token
    )
    bob = await world.service.login(Credentials("bob@example.com", PASSWORD), client_ip="ip")
    assert await world.service.logout_everywhere(phone.refresh_token) == 2
    verifier = _verifier(world)
    for session in (phone, laptop):
        with pytest.raises(Unauthorized, match="session ended"):
            await verifier.verify(session.access_token)
        with pytest.raises(Unauthorized):
            await world.service.refresh(session.refresh_token)
    assert (await verifier.verify(bob.access_token)).sub == bob.user.id
    assert (await world.service.refresh(bob.refresh_token)).user.email == "bob@example.com"
    assert world.woken == [None]


async def test_logout_everywhere_needs_a_token_that_could_still_refresh(world: _World) -> None:
    """A revoked, unknown or spent token speaks for no other login: 401, the others live on;
    a spent one still ends its own login, which a thief who refreshed with it now holds."""
    await _register(world)
    ada = Credentials("ada@example.com", PASSWORD)
    first = await world.service.login(ada, client_ip="ip")
    thief = await world.service.refresh(first.refresh_token)
    other = await world.service.login(ada, client_ip="ip")
    gone = await world.service.login(ada, client_ip="ip")
    await world.service.logout(gone.refresh_token)
    world.clock.now += REUSE_GRACE_S
    verifier = _verifier(world)
    for token in (gone.refresh_token, "x" * 43):
        with pytest.raises(Unauthorized):
            await world.service.logout_everywhere(token)
        assert (await verifier.verify(thief.access_token)).sub == first.user.id
    with pytest.raises(Unauthorized, match="already ended"):
        await world.service.logout_everywhere(first.refresh_token)
    with pytest.raises(Unauthorized, match="session ended"):
        await verifier.verify(thief.access_token)
    with pytest.raises(Unauthorized):
        await world.service.refresh(thief.refresh_token)
    # The owner's other device was never spoken for.
    assert (await verifier.verify(other.access_token)).sub == first.user.id
    assert (await world.service.refresh(other.refresh_token)).user.email == "ada@example.com"


async def test_a_logout_everywhere_that_failed_half_way_can_be_asked_again(world: _World) -> None:
    """The database fails while the logins are being written down: nothing is revoked yet, so
    the same token asks again and every login ends."""
    await _register(world)
    ada = Credentials("ada@example.com", PASSWORD)
    phone = await world.service.login(ada, client_ip="ip")
    laptop = await world.service.login(ada, client_ip="ip")
    world.ended.down = True
    with pytest.raises(Unavailable):
        await world.service.logout_everywhere(phone.refresh_token)
    world.ended.down = False
    assert await world.service.logout_everywhere(phone.refresh_token) == 2
    for session in (phone, laptop):
        with pytest.raises(Unauthorized, match="session ended"):
            await _verifier(world).verify(session.access_token)


async def test_only_logins_that_may_hold_live_access_tokens_get_a_document(world: _World) -> None:
    """A login last issued a token longer ago than a token lives is revoked but not written
    down again: its access tokens are all expired already."""
    await _register(world)
    ada = Credentials("ada@example.com", PASSWORD)
    old = await world.service.login(ada, client_ip="ip")
    world.clock.now += 906
    fresh = await world.service.login(ada, client_ip="ip")
    assert await world.service.logout_everywhere(fresh.refresh_token) == 1
    sid = jwt.decode(fresh.access_token, options={"verify_signature": False})["sid"]
    assert set(world.ended.ended) == {sid}
    with pytest.raises(Unauthorized):
        await world.service.refresh(old.refresh_token)
    # A plain logout with a login's token long after its last access token: nothing to write.
    stale = await world.service.login(ada, client_ip="ip")
    world.clock.now += 906
    await world.service.logout(stale.refresh_token)
    assert len(world.ended.ended) == 1


async def test_a_replayed_refresh_token_ends_the_logins_access_tokens(world: _World) -> None:
    """Theft detected: whoever holds the login's access tokens loses them at once."""
    await _register(world)
    first = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    second = await world.service.refresh(first.refresh_token)
    world.clock.now += REUSE_GRACE_S
    with pytest.raises(Unauthorized, match="already used"):
        await world.service.refresh(first.refresh_token)
    with pytest.raises(Unauthorized, match="session ended"):
        await _verifier(world).verify(second.access_token)
    assert len(world.woken) == 1


async def test_the_sweep_forgets_ended_logins_once_their_tokens_expired(world: _World) -> None:
    """An ended login is kept while its tokens live and deleted by the first sweep after."""
    await _register(world)
    session = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    await world.service.logout(session.refresh_token)
    await world.service.sweep_expired()
    assert len(world.ended.ended) == 1
    world.clock.now += 906
    await world.service.sweep_expired()
    assert world.ended.ended == {}
    with pytest.raises(Unauthorized, match="expired"):
        await _verifier(world).verify(session.access_token)


async def test_refresh_tokens_are_stored_hashed(world: _World) -> None:
    """Only the SHA-256 of a refresh token is stored."""
    await _register(world)
    session = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    assert session.refresh_token not in world.tokens.records
    assert hash_refresh_token(session.refresh_token) in world.tokens.records


async def test_expired_refresh_token_fails_and_is_swept(world: _World) -> None:
    """After 30 days the token is refused, and the sweep deletes it."""
    await _register(world)
    session = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    world.clock.now += 30 * 86400 + 1
    with pytest.raises(Unauthorized, match="expired"):
        await world.service.refresh(session.refresh_token)
    assert await world.service.sweep_expired() == 1
    assert world.tokens.records == {}


async def test_disabled_user_cannot_log_in_or_refresh(world: _World) -> None:
    """Disabling an account refuses new logins and kills existing refresh tokens."""
    user_id = await _register(world)
    session = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    await world.users.set_disabled(user_id, True)
    with pytest.raises(Forbidden):
        await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    with pytest.raises(Unauthorized):
        await world.service.refresh(session.refresh_token)


async def test_login_brute_force_is_rate_limited_per_email_and_address(world: _World) -> None:
    """Guessing one account's password from one address is cut off after 5 failures."""
    await _register(world)
    await _fail_logins(world, 5, client_ip="attacker")
    with pytest.raises(RateLimited) as info:
        await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="attacker")
    assert info.value.retry_after > 0
    world.clock.now += 60
    await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="attacker")


async def test_someone_elses_failures_do_not_lock_the_victim_out(world: _World) -> None:
    """An attacker hammering the victim's email from elsewhere never blocks the victim's login."""
    await _register(world)
    for i in range(30):
        with pytest.raises((Unauthorized, RateLimited)):
            await world.service.login(
                Credentials("ada@example.com", f"guess {i}!!"), client_ip=f"attacker-{i % 3}"
            )
    session = await world.service.login(
        Credentials("ada@example.com", PASSWORD), client_ip="victim-home"
    )
    assert session.user.email == "ada@example.com"
    # And the attacker's addresses are still cut off.
    with pytest.raises(RateLimited):
        await world.service.login(Credentials("ada@example.com", "guess!!"), client_ip="attacker-0")


async def test_flooding_other_emails_does_not_reset_a_lockout(world: _World) -> None:
    """Filling the limiter with fresh keys never gives an exhausted (email, address) new guesses."""
    await _register(world)
    await _fail_logins(world, 5, client_ip="attacker")
    # The fixture's limiters track 50 keys; flood them from many addresses and emails.
    for i in range(500):
        with pytest.raises((Unauthorized, RateLimited)):
            await world.service.login(
                Credentials(f"x{i}@example.com", "whatever1"), client_ip=f"bot-{i}"
            )
    with pytest.raises(RateLimited):
        await world.service.login(Credentials("ada@example.com", "guess 6!!"), client_ip="attacker")


async def test_successful_logins_cost_no_budget(world: _World) -> None:
    """Many correct logins from one address (an office behind NAT: ten people, three devices
    each) are never throttled by the address's budget."""
    emails = [f"u{i}@example.com" for i in range(10)]
    for email in emails:
        await _register(world, email)
    for _ in range(3):
        for email in emails:
            await world.service.login(Credentials(email, PASSWORD), client_ip="office")


async def test_login_is_rate_limited_per_ip(world: _World) -> None:
    """One address spraying many emails hits the per-IP limit."""
    for i in range(20):
        with pytest.raises(Unauthorized):
            await world.service.login(Credentials(f"u{i}@example.com", "whatever1"), client_ip="x")
    with pytest.raises(RateLimited):
        await world.service.login(Credentials("u99@example.com", "whatever1"), client_ip="x")
    assert world.metric("auth_logins_total", {"outcome": "rate_limited"}) == 1


async def test_old_hash_parameters_are_upgraded_on_login(world: _World) -> None:
    """A hash made with weaker parameters is replaced by a current one at the next login."""
    user_id = await _register(world)
    weak = PasswordHasher(time_cost=1, memory_kib=32, parallelism=1).hash(PASSWORD)
    await world.users.set_password_hash(user_id, weak)
    await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    assert world.users.users[user_id].password_hash != weak


async def test_a_revocation_between_claim_and_insert_does_not_let_the_new_token_escape(
    world: _World,
) -> None:
    """An older token's replay revokes the family while a rotation is between claiming its
    token and storing the new one: the rotation fails and the new token is revoked too."""
    await _register(world)
    first = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    second = await world.service.refresh(first.refresh_token)
    world.clock.now += REUSE_GRACE_S  # the replay below is a replay, not a concurrent use
    inserted: list[RefreshRecord] = []
    plain_insert = world.tokens.insert

    async def insert_after_a_replay(record: RefreshRecord) -> None:
        with pytest.raises(Unauthorized, match="already used"):
            await world.service.refresh(first.refresh_token)  # the replay, right now
        inserted.append(record)
        await plain_insert(record)

    world.tokens.insert = insert_after_a_replay  # type: ignore[method-assign]
    with pytest.raises(Unauthorized, match="revoked meanwhile"):
        await world.service.refresh(second.refresh_token)
    assert len(inserted) == 1
    assert world.tokens.records[inserted[0].token_hash].revoked


async def test_concurrent_refreshes_of_one_token_yield_one_session(world: _World) -> None:
    """Two simultaneous refreshes with the same token: one wins, the other is told to retry."""
    await _register(world)
    session = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    results = await asyncio.gather(
        world.service.refresh(session.refresh_token),
        world.service.refresh(session.refresh_token),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert sum(isinstance(r, Conflict) for r in results) == 1


async def test_a_password_change_ends_every_other_login_and_keeps_this_one(world: _World) -> None:
    """With the current password given: the new one logs in and the old one does not; the
    other logins lose their refresh and access tokens at once, the asking one keeps both, and
    another user's login is untouched."""
    await _register(world)
    await _register(world, "bob@example.com")
    ada = Credentials("ada@example.com", PASSWORD)
    here = await world.service.login(ada, client_ip="ip")
    phone = await world.service.login(ada, client_ip="ip")
    bob = await world.service.login(Credentials("bob@example.com", PASSWORD), client_ip="ip")
    verifier = _verifier(world)
    sid = (await verifier.verify(here.access_token)).sid
    change = PasswordChange(current=PASSWORD, new="a brand new passphrase")
    assert await world.service.change_password(here.user.id, sid, change, client_ip="ip") == 1
    with pytest.raises(Unauthorized, match="session ended"):
        await verifier.verify(phone.access_token)
    with pytest.raises(Unauthorized):
        await world.service.refresh(phone.refresh_token)
    assert (await verifier.verify(here.access_token)).sub == here.user.id
    assert (await world.service.refresh(here.refresh_token)).user.id == here.user.id
    assert (await verifier.verify(bob.access_token)).sub == bob.user.id
    with pytest.raises(Unauthorized):
        await world.service.login(ada, client_ip="ip")
    fresh = Credentials("ada@example.com", "a brand new passphrase")
    assert (await world.service.login(fresh, client_ip="ip")).user.id == here.user.id
    assert world.woken == [None]


async def test_a_wrong_current_password_changes_nothing_and_counts_as_a_failed_login(
    world: _World,
) -> None:
    """403 for a wrong current password, the stored hash and every login as they were; such
    guesses draw from the login limits of the address (429 after five), and the account's own
    budget of changes ends at five too."""
    user_id = await _register(world)
    here = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    sid = (await _verifier(world).verify(here.access_token)).sid
    stored = world.users.users[user_id].password_hash
    wrong = PasswordChange(current="not the password", new="a brand new passphrase")
    for _ in range(5):
        with pytest.raises(Forbidden, match="current password is wrong"):
            await world.service.change_password(user_id, sid, wrong, client_ip="ip")
    with pytest.raises(RateLimited):
        await world.service.change_password(user_id, sid, wrong, client_ip="ip")
    assert world.users.users[user_id].password_hash == stored
    assert (await world.service.refresh(here.refresh_token)).user.id == user_id
    with pytest.raises(RateLimited):  # the login limits of (email, address) are spent as well
        await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")


async def test_a_rename_changes_the_name_only(world: _World) -> None:
    """The user comes back with the new name, as every later look-up shows it; email, password
    and logins stay; an unknown id is 404; past the account's budget, 429."""
    user_id = await _register(world)
    renamed = await world.service.rename(user_id, "Ada Lovelace")
    assert (renamed.id, renamed.email, renamed.name) == (user_id, "ada@example.com", "Ada Lovelace")
    assert (await world.service.user(user_id)).name == "Ada Lovelace"  # type: ignore[union-attr]
    login = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    assert login.user.name == "Ada Lovelace"
    with pytest.raises(NotFound):
        await world.service.rename("f" * 32, "Nobody")
    for _ in range(4):  # five in all
        await world.service.rename(user_id, "Ada")
    with pytest.raises(RateLimited):
        await world.service.rename(user_id, "Ada again")


async def test_a_rename_is_noted_for_the_teams_before_it_is_stored(world: _World) -> None:
    """Each rename leaves a fresh note and wakes the publisher; when the note cannot be written
    the name is not changed either (503), so no stored name goes untold."""
    user_id = await _register(world)
    await world.service.rename(user_id, "Ada Lovelace")
    first = world.renames.notes[user_id].mark
    await world.service.rename(user_id, "Ada L.")
    assert list(world.renames.notes) == [user_id]
    assert world.renames.notes[user_id].mark != first
    assert len(world.renames_woken) == 2
    world.renames.down = True
    with pytest.raises(Unavailable):
        await world.service.rename(user_id, "Countess")
    assert world.users.users[user_id].name == "Ada L."


async def test_successful_logins_of_one_account_are_limited_and_strangers_cannot_spend_them(
    world: _World,
) -> None:
    """Ten logins of one account at once, then 429 for the right password until it refills;
    wrong passwords from anyone never spend it (no lockout by strangers), and other accounts
    log in as before."""
    await _register(world)
    await _register(world, "bob@example.com")
    ada = Credentials("ada@example.com", PASSWORD)
    for i in range(10):
        await world.service.login(ada, client_ip=f"10.0.0.{i}")
    with pytest.raises(RateLimited, match="logins of this account"):
        await world.service.login(ada, client_ip="10.0.1.1")
    bob = Credentials("bob@example.com", PASSWORD)
    assert (await world.service.login(bob, client_ip="10.0.1.1")).user.email == "bob@example.com"
    world.clock.now += 6  # one login's worth refilled
    assert (await world.service.login(ada, client_ip="10.0.1.1")).user.email == "ada@example.com"
    # Someone else's failures: the owner's budget is not theirs to spend.
    world.clock.now += 60
    for i in range(20):
        with pytest.raises(Unauthorized):
            await world.service.login(
                Credentials("ada@example.com", "wrong guess!!"), client_ip=f"10.9.{i}.1"
            )
    for i in range(10):
        await world.service.login(ada, client_ip=f"10.0.2.{i}")


async def test_a_spent_account_budget_does_not_tell_that_the_email_has_an_account(
    world: _World,
) -> None:
    """With the account's logins spent, a wrong password answers 401 as for an unknown email
    (after the same hash), and only the right one 429; a 429 then costs the address an attempt
    like a failure, so the password's holder cannot make hashes past the address's limit."""
    await _register(world)
    ada = Credentials("ada@example.com", PASSWORD)
    for i in range(10):
        await world.service.login(ada, client_ip=f"10.0.0.{i}")
    with pytest.raises(Unauthorized, match="wrong email or password"):
        await world.service.login(Credentials("ada@example.com", "a wrong guess"), client_ip="x")
    with pytest.raises(Unauthorized, match="wrong email or password"):
        await world.service.login(Credentials("nobody@example.com", "a wrong guess"), client_ip="y")
    # The right password past the budget: 429, and each one spends an attempt of that email
    # from that address (5 at once), after which they are refused before any hash.
    for _ in range(5):
        with pytest.raises(RateLimited, match="logins of this account"):
            await world.service.login(ada, client_ip="10.0.1.1")
    with pytest.raises(RateLimited, match="login attempts"):
        await world.service.login(ada, client_ip="10.0.1.1")
    assert world.metric("auth_logins_total", {"outcome": "rate_limited"}) == 6


async def _login_paused_after_reading_the_account(
    world: _World, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Task[Session], asyncio.Event]:
    """A login of Ada with the old password, held between reading her account and checking the
    password (as a slow argon2 verify would hold it); set the event to let it go on."""
    read, gate = asyncio.Event(), asyncio.Event()
    plain = world.users.by_email

    async def paused(email: str) -> User | None:
        user = await plain(email)
        read.set()
        await gate.wait()
        return user

    monkeypatch.setattr(world.users, "by_email", paused)
    login = asyncio.create_task(
        world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="elsewhere")
    )
    await read.wait()
    monkeypatch.setattr(world.users, "by_email", plain)
    return login, gate


async def test_a_login_of_the_old_password_in_flight_does_not_outlive_the_change(
    world: _World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login that checked the old password while it was being changed ends with 401 and
    leaves no refresh token behind; the new password is the one that logs in."""
    await _register(world)
    here = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    sid = (await _verifier(world).verify(here.access_token)).sid
    login, gate = await _login_paused_after_reading_the_account(world, monkeypatch)
    change = PasswordChange(current=PASSWORD, new="a brand new passphrase")
    await world.service.change_password(here.user.id, sid, change, client_ip="ip")
    gate.set()
    with pytest.raises(Unauthorized, match="password changed meanwhile"):
        await login
    live = [r for r in world.tokens.records.values() if not r.revoked]
    assert {r.family for r in live} == {sid}


async def test_a_rehashing_login_in_flight_never_puts_the_old_password_back(
    world: _World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A login that upgrades an old hash while the password changes writes nothing over the new
    hash: the new password works, the old one not."""
    user_id = await _register(world)
    weak = PasswordHasher(time_cost=1, memory_kib=32, parallelism=1).hash(PASSWORD)
    here = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    await world.users.set_password_hash(user_id, weak)  # as stored under older parameters
    sid = (await _verifier(world).verify(here.access_token)).sid
    login, gate = await _login_paused_after_reading_the_account(world, monkeypatch)
    change = PasswordChange(current=PASSWORD, new="a brand new passphrase")
    await world.service.change_password(user_id, sid, change, client_ip="ip")
    gate.set()
    with pytest.raises(Unauthorized):
        await login
    stored = world.users.users[user_id].password_hash
    hasher = PasswordHasher(time_cost=1, memory_kib=64, parallelism=1)
    assert hasher.verify(stored, "a brand new passphrase")
    assert not hasher.verify(stored, PASSWORD)


async def test_logins_past_the_accounts_cap_end_the_least_recently_refreshed(
    world: _World,
) -> None:
    """With five logins kept per account, a sixth ends the one refreshed longest ago (its
    refresh token and its access tokens), and a refreshed login counts as recent; the new
    login and the others go on."""
    await _register(world)
    verifier = _verifier(world)
    sessions: list[Session] = []
    for _ in range(5):
        sessions.append(
            await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
        )
        world.clock.now += 1
    # The first login is refreshed: now the second is the least recently used.
    sessions[0] = await world.service.refresh(sessions[0].refresh_token)
    world.clock.now += 1
    sixth = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    with pytest.raises(Unauthorized):
        await world.service.refresh(sessions[1].refresh_token)
    with pytest.raises(Unauthorized, match="session ended"):
        await verifier.verify(sessions[1].access_token)
    assert world.woken  # its session_ended event is on its way to close its sockets
    for kept in [sessions[0], *sessions[2:], sixth]:
        assert (await verifier.verify(kept.access_token)).sub == sixth.user.id
    assert len(await world.tokens.live_logins(sixth.user.id, world.service._now())) == 5


async def test_an_email_is_seen_by_its_owner_and_current_teammates_only(world: _World) -> None:
    """Ada sees her own email and Bob's while they share a team; Carol, in another team, and
    Bob once the shared team is gone, do not."""
    ada = await _register(world)
    bob = await _register(world, "bob@example.com")
    carol = await _register(world, "carol@example.com")
    world.teams.update({ada: ["t1", "t2"], bob: ["t2"], carol: ["t3"]})
    assert await world.service.sees_email(ada, ada)
    assert await world.service.sees_email(ada, bob)
    assert await world.service.sees_email(bob, ada)
    assert not await world.service.sees_email(carol, ada)
    assert not await world.service.sees_email(ada, carol)
    world.teams[bob] = []
    assert not await world.service.sees_email(bob, ada)
    assert not await world.service.sees_email(ada, bob)
    assert await world.service.sees_email(bob, bob)


async def test_lookups_by_email_are_bounded_per_account(world: _World) -> None:
    """30 lookups by email at once per account, then 429 until the budget refills; another
    account's lookups are not affected."""
    ada = await _register(world)
    for i in range(30):
        found = await world.service.user_by_email(
            "ada@example.com" if i % 2 else f"x{i}@example.com", caller=ada
        )
        assert (found is not None) == bool(i % 2)
    with pytest.raises(RateLimited) as info:
        await world.service.user_by_email("ada@example.com", caller=ada)
    assert info.value.retry_after > 0
    assert await world.service.user_by_email("ada@example.com", caller="b" * 32) is not None
    world.clock.now += 2.0
    assert await world.service.user_by_email("ada@example.com", caller=ada) is not None


async def test_password_checks_refused_as_busy_cost_no_registration_and_keep_logins(
    world: _World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registration refused because every password worker is busy is not one of the
    address's registrations; a login whose old hash would be upgraded goes on without the
    upgrade when the workers are busy, and the stored hash stays as it was."""
    user_id = await _register(world)
    weak = PasswordHasher(time_cost=1, memory_kib=32, parallelism=1).hash(PASSWORD)
    await world.users.set_password_hash(user_id, weak)

    async def busy(self: Passwords, password: str) -> str:
        raise Busy("the server is busy checking passwords; retry in a moment", retry_after=1)

    monkeypatch.setattr(Passwords, "hash", busy)
    for i in range(12):
        with pytest.raises(Busy):
            await world.service.register(
                Registration(email=f"u{i}@example.com", password=PASSWORD, name="U"),
                client_ip="10.0.0.9",
            )
    session = await world.service.login(Credentials("ada@example.com", PASSWORD), client_ip="ip")
    assert session.user.id == user_id
    assert world.users.users[user_id].password_hash == weak
    monkeypatch.undo()
    for i in range(10):  # the address's whole registration budget is still there
        await world.service.register(
            Registration(email=f"v{i}@example.com", password=PASSWORD, name="V"),
            client_ip="10.0.0.9",
        )
