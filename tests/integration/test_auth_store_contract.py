"""One contract for each auth store, run over the in-memory fake and the MongoDB implementation.

The unit tests trust ``tests/unit/auth_fakes.py``; this suite is what earns that trust: every rule
below holds for the fake and for the real store on the stack's FerretDB (a fresh database per
test module, dropped afterwards).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from chatcore.accounts import AccountStatus, MongoAccountStatus
from chatcore.errors import Conflict
from chatcore.mongo import Document, database, ensure_indexes, make_mongo_client
from chatcore.settings import Settings
from services.auth.renames import MongoRenameStore, Rename, RenameStore
from services.auth.sessions import EndedSession, EndedSessionStore, MongoEndedSessionStore
from services.auth.store import (
    AUTH_INDEXES,
    MongoRefreshStore,
    MongoUserStore,
    RefreshRecord,
    RefreshStore,
    User,
    UserStore,
)
from tests.unit.auth_fakes import (
    MemoryAccountStatus,
    MemoryEndedSessionStore,
    MemoryRefreshStore,
    MemoryRenameStore,
    MemoryUserStore,
)

# Millisecond precision: what the database keeps.
NOW = datetime(2027, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)


@dataclasses.dataclass
class Stores:
    users: UserStore
    refresh: RefreshStore
    accounts: AccountStatus
    ended: EndedSessionStore
    renames: RenameStore


@pytest.fixture(scope="module")
async def mongo_db(settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    """A database of its own on the stack's FerretDB, with the auth indexes."""
    name = f"chat_contract_{uuid.uuid4().hex[:12]}"
    client = make_mongo_client(settings)
    db = database(client, dataclasses.replace(settings, mongo_db=name))
    await ensure_indexes(db, AUTH_INDEXES)
    yield db
    await client.drop_database(name)
    await client.close()


@pytest.fixture(params=["memory", "mongo"])
def stores(request: pytest.FixtureRequest) -> Stores:
    """The fake stores, or the MongoDB ones (sharing the module's database)."""
    if request.param == "memory":
        users, ended = MemoryUserStore(), MemoryEndedSessionStore()
        return Stores(
            users,
            MemoryRefreshStore(),
            MemoryAccountStatus(users, ended),
            ended,
            MemoryRenameStore(),
        )
    db: AsyncDatabase[Document] = request.getfixturevalue("mongo_db")
    return Stores(
        MongoUserStore(db),
        MongoRefreshStore(db),
        # Uncached, so the contract sees each write at once (the cache is SingleFlight's).
        MongoAccountStatus(db, session_max_age_s=0),
        MongoEndedSessionStore(db),
        MongoRenameStore(db),
    )


def _user(**overrides: Any) -> User:
    uid = uuid.uuid4().hex
    fields: dict[str, Any] = {
        "id": uid,
        "email": f"c-{uid[:12]}@example.com",
        "name": "Contract",
        "password_hash": "$argon2id$v=19$m=64,t=1,p=1$c2FsdA$aGFzaA",
        "disabled": False,
        "created_at": NOW,
    }
    fields.update(overrides)
    return User(**fields)


def _record(user_id: str, family: str, **overrides: Any) -> RefreshRecord:
    fields: dict[str, Any] = {
        "token_hash": uuid.uuid4().hex + uuid.uuid4().hex,
        "family": family,
        "user_id": user_id,
        "created_at": NOW,
        "expires_at": NOW + timedelta(days=30),
        "used_at": None,
        "revoked": False,
    }
    fields.update(overrides)
    return RefreshRecord(**fields)


async def test_users_round_trip_by_id_and_email(stores: Stores) -> None:
    """A created user reads back equal, by id and by email; unknown ones are None."""
    user = _user()
    await stores.users.create(user)
    assert await stores.users.by_id(user.id) == user
    assert await stores.users.by_email(user.email) == user
    assert await stores.users.by_id(uuid.uuid4().hex) is None
    assert await stores.users.by_email("nobody-" + user.email) is None


async def test_a_taken_email_conflicts_and_changes_nothing(stores: Stores) -> None:
    """A second account with the same email raises Conflict; the first stays as it was."""
    first = _user()
    await stores.users.create(first)
    with pytest.raises(Conflict):
        await stores.users.create(_user(email=first.email, name="Other"))
    assert await stores.users.by_email(first.email) == first


async def test_password_hash_is_replaced_and_unknown_ids_are_ignored(stores: Stores) -> None:
    """set_password_hash changes only that user, and only over the hash it is told it replaces;
    an unknown id is not an error."""
    user = _user()
    await stores.users.create(user)
    await stores.users.set_password_hash(user.id, "$argon2id$new")
    stored = await stores.users.by_id(user.id)
    assert stored is not None
    assert stored.password_hash == "$argon2id$new"
    await stores.users.set_password_hash(uuid.uuid4().hex, "$argon2id$other")
    # Only over the hash it replaces, when told which: a change made meanwhile stays.
    await stores.users.set_password_hash(user.id, "$argon2id$late", replacing="$argon2id$old")
    assert (await stores.users.by_id(user.id)).password_hash == "$argon2id$new"  # type: ignore[union-attr]
    await stores.users.set_password_hash(user.id, "$argon2id$next", replacing="$argon2id$new")
    assert (await stores.users.by_id(user.id)).password_hash == "$argon2id$next"  # type: ignore[union-attr]


async def test_disabled_flag_and_account_status_agree(stores: Stores) -> None:
    """set_disabled flips the flag both ways; the account check sees it at once."""
    user = _user()
    await stores.users.create(user)
    assert not await stores.accounts.is_disabled(user.id)
    assert await stores.users.set_disabled(user.id, True)
    stored = await stores.users.by_id(user.id)
    assert stored is not None
    assert stored.disabled
    assert await stores.accounts.is_disabled(user.id)
    assert await stores.users.set_disabled(user.id, False)
    assert not await stores.accounts.is_disabled(user.id)
    assert not await stores.users.set_disabled(uuid.uuid4().hex, True)


@pytest.mark.parametrize("user_id", ["0" * 32, "not-an-id", "", "A" * 32, "0" * 33])
async def test_account_status_fails_closed_for_unknown_ids(stores: Stores, user_id: str) -> None:
    """An id that names no user (or cannot be one) counts as disabled."""
    assert await stores.accounts.is_disabled(user_id)


async def test_refresh_records_round_trip_and_claim_once(stores: Stores) -> None:
    """A record reads back equal; the first claim wins, later ones and unknown tokens lose."""
    record = _record(uuid.uuid4().hex, "fam")
    await stores.refresh.insert(record)
    assert await stores.refresh.get(record.token_hash) == record
    assert await stores.refresh.get("unknown") is None
    used = NOW + timedelta(minutes=1)
    assert await stores.refresh.claim(record.token_hash, used)
    assert not await stores.refresh.claim(record.token_hash, used)
    assert not await stores.refresh.claim("unknown", used)
    claimed = await stores.refresh.get(record.token_hash)
    assert claimed == dataclasses.replace(record, used_at=used)


async def test_revoked_tokens_cannot_be_claimed(stores: Stores) -> None:
    """After a family revocation a token's claim fails."""
    record = _record(uuid.uuid4().hex, uuid.uuid4().hex)
    await stores.refresh.insert(record)
    assert await stores.refresh.revoke_family(record.family) == 1
    assert not await stores.refresh.claim(record.token_hash, NOW)


async def test_revocation_counts_only_what_it_changed(stores: Stores) -> None:
    """revoke_family and revoke_user revoke their own tokens once, and report how many."""
    ada, bob = uuid.uuid4().hex, uuid.uuid4().hex
    phone, laptop, other = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    records = [
        _record(ada, phone),
        _record(ada, phone),
        _record(ada, laptop),
        _record(bob, other),
    ]
    for record in records:
        await stores.refresh.insert(record)
    assert await stores.refresh.revoke_family(phone) == 2
    assert await stores.refresh.revoke_family(phone) == 0
    assert await stores.refresh.revoke_user(ada) == 1
    assert await stores.refresh.revoke_user(ada) == 0
    states = [await stores.refresh.get(r.token_hash) for r in records]
    assert [s.revoked if s else None for s in states] == [True, True, True, False]


async def test_delete_expired_removes_only_tokens_past_their_expiry(stores: Stores) -> None:
    """Tokens expiring before the given time go; one expiring exactly then stays."""
    marker = uuid.uuid4().hex
    now = NOW + timedelta(days=3650)
    gone = _record(marker, marker, expires_at=now - timedelta(seconds=1))
    edge = _record(marker, marker, expires_at=now)
    kept = _record(marker, marker, expires_at=now + timedelta(days=1))
    for record in (gone, edge, kept):
        await stores.refresh.insert(record)
    assert await stores.refresh.delete_expired(now) >= 1
    assert await stores.refresh.get(gone.token_hash) is None
    assert await stores.refresh.get(edge.token_hash) == edge
    assert await stores.refresh.get(kept.token_hash) == kept


async def test_an_ended_login_is_seen_at_once_and_kept_until_its_tokens_expire(
    stores: Stores,
) -> None:
    """end() makes session_ended true at once; ending again keeps the first and stores the
    others beside it; the sweep forgets them only after ``until``."""
    sid, other = uuid.uuid4().hex, uuid.uuid4().hex
    first = EndedSession(sid, uuid.uuid4().hex, NOW + timedelta(minutes=15))
    assert not await stores.accounts.session_ended(sid)
    await stores.ended.end([first])
    again = EndedSession(other, first.user_id, NOW + timedelta(minutes=15))
    # Ending it again beside a new one: the new one is stored, the first keeps its until.
    await stores.ended.end([dataclasses.replace(first, until=NOW + timedelta(hours=9)), again])
    assert await stores.accounts.session_ended(other)
    await stores.ended.end([])
    assert await stores.accounts.session_ended(sid)
    assert await stores.ended.delete_expired(NOW + timedelta(minutes=14)) == 0
    assert await stores.accounts.session_ended(sid)
    assert await stores.ended.delete_expired(NOW + timedelta(minutes=16)) == 2
    assert not await stores.accounts.session_ended(sid)


@pytest.mark.parametrize("session_id", ["not-an-id", "", "A" * 32, "0" * 33])
async def test_a_malformed_login_id_counts_as_ended(stores: Stores, session_id: str) -> None:
    """A login id that cannot be one fails closed, and never reaches a query."""
    assert await stores.accounts.session_ended(session_id)


async def test_ended_logins_stay_unpublished_until_marked(stores: Stores) -> None:
    """unpublished() lists an ended login until published() marks it; round trip is exact."""
    ended = EndedSession(uuid.uuid4().hex, uuid.uuid4().hex, NOW + timedelta(minutes=15))
    await stores.ended.end([ended])
    assert ended in await stores.ended.unpublished(1000)
    await stores.ended.published(ended.session_id)
    assert ended not in await stores.ended.unpublished(1000)


async def test_families_lists_each_login_of_the_user_issued_to_lately(stores: Stores) -> None:
    """families() names each login of the user with a token created after the given time
    (revoked or not), once, and no one else's."""
    user, other = uuid.uuid4().hex, uuid.uuid4().hex
    f1, f2, f3, old = (uuid.uuid4().hex for _ in range(4))
    recent = NOW - timedelta(minutes=5)
    for family, owner, created in (
        (f1, user, recent),
        (f1, user, NOW - timedelta(days=2)),
        (f2, user, recent),
        (old, user, NOW - timedelta(days=2)),
        (f3, other, recent),
    ):
        await stores.refresh.insert(_record(owner, family, created_at=created))
    await stores.refresh.revoke_family(f2)
    since = NOW - timedelta(minutes=15)
    assert await stores.refresh.families(user, issued_after=since) == {f1, f2}
    assert await stores.refresh.families(user, issued_after=NOW - timedelta(days=3)) == {
        f1,
        f2,
        old,
    }
    assert await stores.refresh.families(uuid.uuid4().hex, issued_after=since) == set()


async def test_live_logins_are_the_refreshable_ones_least_recently_refreshed_first(
    stores: Stores,
) -> None:
    """live_logins() names each login holding an unused, unrevoked, unexpired token, oldest
    token first; spent, revoked and expired tokens and other users' logins do not count."""
    user, other = uuid.uuid4().hex, uuid.uuid4().hex
    newer, older, spent, revoked, expired, theirs = (uuid.uuid4().hex for _ in range(6))
    for family, owner, overrides in (
        (newer, user, {"created_at": NOW - timedelta(minutes=1)}),
        (older, user, {"created_at": NOW - timedelta(days=3)}),
        (spent, user, {"used_at": NOW - timedelta(minutes=2)}),
        (revoked, user, {"revoked": True}),
        (expired, user, {"expires_at": NOW - timedelta(seconds=1)}),
        (theirs, other, {}),
    ):
        await stores.refresh.insert(_record(owner, family, **overrides))
    assert await stores.refresh.live_logins(user, NOW) == [older, newer]
    assert await stores.refresh.live_logins(uuid.uuid4().hex, NOW) == []
    # A token used (refreshed) or a login revoked after it was stored is no longer live.
    claimed = _record(user, uuid.uuid4().hex)
    await stores.refresh.insert(claimed)
    assert claimed.family in await stores.refresh.live_logins(user, NOW)
    assert await stores.refresh.claim(claimed.token_hash, NOW)
    await stores.refresh.revoke_family(older)
    assert await stores.refresh.live_logins(user, NOW) == [newer]


async def test_a_rename_note_is_kept_until_told_and_a_newer_one_survives(stores: Stores) -> None:
    """note() keeps one note per user (the last), pending() lists it with its time, and told()
    forgets it only while it holds the mark that was read."""
    ada, bob = uuid.uuid4().hex, uuid.uuid4().hex
    await stores.renames.note(Rename(ada, "m1", NOW))
    await stores.renames.note(Rename(ada, "m2", NOW + timedelta(seconds=1)))
    await stores.renames.note(Rename(bob, "b1", NOW))
    mine = {r.user_id: r for r in await stores.renames.pending(1000) if r.user_id in (ada, bob)}
    assert mine == {ada: Rename(ada, "m2", NOW + timedelta(seconds=1)), bob: Rename(bob, "b1", NOW)}
    await stores.renames.told(Rename(ada, "m1", NOW))  # an older mark: the note stays
    await stores.renames.told(mine[bob])
    left = {r.user_id for r in await stores.renames.pending(1000)}
    assert ada in left
    assert bob not in left
    await stores.renames.told(mine[ada])
    assert ada not in {r.user_id for r in await stores.renames.pending(1000)}
