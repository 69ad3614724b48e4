"""Persistence of users and refresh tokens behind narrow interfaces, with MongoDB implementations.

Every filter is built here from values that are already validated strings or datetimes, so no
client value can become a query operator. Conditional single-document updates stand in for
transactions, which FerretDB does not have.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from chatcore import schema as s
from chatcore.errors import Conflict, Unavailable
from chatcore.fencing import fenced, guarded, lost_race
from chatcore.mongo import Document, IndexSpec, database_unavailable
from chatcore.schema import USERS

REFRESH_TOKENS = s.REFRESH_TOKENS
_REVOKE_ATTEMPTS = 5

AUTH_INDEXES: tuple[IndexSpec, ...] = (
    IndexSpec(USERS, (("email", ASCENDING),), unique=True),
    # The controllers' set of disabled accounts (services/controller/directory.py).
    IndexSpec(USERS, (("disabled", ASCENDING),)),
    IndexSpec(REFRESH_TOKENS, (("family", ASCENDING),)),
    IndexSpec(REFRESH_TOKENS, (("user_id", ASCENDING),)),
    IndexSpec(REFRESH_TOKENS, (("expires_at", ASCENDING),)),
    # The session-event publisher's and the sweep's queries (services/auth/sessions.py).
    IndexSpec(s.ENDED_SESSIONS, ((s.ENDED_PUBLISHED, ASCENDING),)),
    IndexSpec(s.ENDED_SESSIONS, ((s.ENDED_UNTIL, ASCENDING),)),
)


@dataclass(frozen=True, slots=True)
class User:
    id: str
    email: str
    name: str
    password_hash: str
    disabled: bool
    created_at: datetime

    def public(self) -> dict[str, str]:
        """The profile with the email: for the user, and for those who share a team with them
        or already know the email."""
        return {"id": self.id, "email": self.email, "name": self.name}

    def without_email(self) -> dict[str, str | None]:
        """The profile anyone else signed in may see: ``email`` null."""
        return {"id": self.id, "email": None, "name": self.name}


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    token_hash: str
    family: str
    user_id: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked: bool


class UserStore(Protocol):
    async def create(self, user: User) -> None:
        """Insert; ``Conflict`` when the email is taken."""

    async def by_email(self, email: str) -> User | None: ...

    async def by_id(self, user_id: str) -> User | None: ...

    async def set_password_hash(
        self, user_id: str, password_hash: str, *, replacing: str | None = None
    ) -> None:
        """Replace the hash; an unknown id changes nothing, and so does a stored hash other than
        ``replacing`` when that is given (a password changed meanwhile stays changed)."""

    async def set_name(self, user_id: str, name: str) -> bool:
        """Whether the user exists (and now has that name)."""

    async def set_disabled(self, user_id: str, disabled: bool) -> bool:
        """Set the flag; False when no such user exists."""


class RefreshStore(Protocol):
    async def insert(self, record: RefreshRecord) -> None: ...

    async def get(self, token_hash: str) -> RefreshRecord | None: ...

    async def claim(self, token_hash: str, now: datetime, *, fence: int | None = None) -> bool:
        """Mark an unused, unrevoked token used; False if another request got there first."""

    async def revoke_family(self, family: str) -> int:
        """Revoke every unrevoked token of one login; the number revoked."""

    async def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        """Revoke every unrevoked token of every login of the user but the login ``keep``;
        the number revoked."""

    async def families(self, user_id: str, *, issued_after: datetime) -> set[str]:
        """The logins (families) of the user with a token created after ``issued_after``."""

    async def live_logins(self, user_id: str, now: datetime) -> list[str]:
        """The user's logins that can still be refreshed (an unused, unrevoked, unexpired
        token), least recently refreshed first."""

    async def delete_expired(self, now: datetime) -> int:
        """Delete tokens whose expiry lies before ``now``; the number deleted."""


def _user(doc: Document) -> User:
    return User(
        id=str(doc["_id"]),
        email=str(doc["email"]),
        name=str(doc["name"]),
        password_hash=str(doc["password_hash"]),
        disabled=bool(doc.get("disabled", False)),
        created_at=doc["created_at"],
    )


def _record(doc: Document) -> RefreshRecord:
    return RefreshRecord(
        token_hash=str(doc["_id"]),
        family=str(doc["family"]),
        user_id=str(doc["user_id"]),
        created_at=doc["created_at"],
        expires_at=doc["expires_at"],
        used_at=doc.get("used_at"),
        revoked=bool(doc.get("revoked", False)),
    )


class MongoUserStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._users = db[USERS]

    async def create(self, user: User) -> None:
        doc: dict[str, Any] = {
            "_id": user.id,
            "email": user.email,
            "name": user.name,
            "password_hash": user.password_hash,
            "disabled": user.disabled,
            "created_at": user.created_at,
        }
        try:
            await self._users.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("an account with this email already exists") from None
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def _one(self, query: dict[str, str]) -> User | None:
        try:
            doc = await self._users.find_one(query)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return _user(doc) if doc is not None else None

    async def by_email(self, email: str) -> User | None:
        return await self._one({"email": email})

    async def by_id(self, user_id: str) -> User | None:
        return await self._one({"_id": user_id})

    async def set_password_hash(
        self, user_id: str, password_hash: str, *, replacing: str | None = None
    ) -> None:
        query: Document = {"_id": user_id}
        if replacing is not None:
            query["password_hash"] = replacing  # our own stored hash, never a client value
        try:
            await self._users.update_one(query, {"$set": {"password_hash": password_hash}})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def set_name(self, user_id: str, name: str) -> bool:
        try:
            result = await self._users.update_one({"_id": user_id}, {"$set": {"name": name}})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return result.matched_count == 1

    async def set_disabled(self, user_id: str, disabled: bool) -> bool:
        try:
            change: Document = {s.USER_DISABLED: disabled}
            if disabled:
                # The controllers restate recent disables to relays that may have missed the
                # event (services/controller/shutouts.py); older ones hold no live token.
                change[s.USER_DISABLED_AT] = datetime.now(UTC)
            result = await self._users.update_one({"_id": user_id}, {"$set": change})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return result.matched_count == 1


# A refresh token that can still be used (unused, unrevoked): what a login's live token has, so
# counting an account's logins reads one document per login (``live_logins``).
_LIVE = "live"


class MongoRefreshStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._tokens = db[REFRESH_TOKENS]

    async def insert(self, record: RefreshRecord) -> None:
        try:
            await self._tokens.insert_one(
                {
                    "_id": record.token_hash,
                    "family": record.family,
                    "user_id": record.user_id,
                    "created_at": record.created_at,
                    "expires_at": record.expires_at,
                    "used_at": record.used_at,
                    "revoked": record.revoked,
                    _LIVE: record.used_at is None and not record.revoked,
                }
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def get(self, token_hash: str) -> RefreshRecord | None:
        try:
            doc = await self._tokens.find_one({"_id": token_hash})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return _record(doc) if doc is not None else None

    async def claim(self, token_hash: str, now: datetime, *, fence: int | None = None) -> bool:
        query: Document = {"_id": token_hash, "used_at": None, "revoked": False}
        try:
            doc = await self._tokens.find_one_and_update(
                fenced(query, fence) if fence is not None else query,
                guarded({"$set": {"used_at": now, _LIVE: False}}, fence),
                return_document=ReturnDocument.AFTER,
            )
        except PyMongoError as exc:
            if lost_race(exc):
                return False  # a concurrent use was first: handled like a replay
            raise database_unavailable(exc) from exc
        return doc is not None

    async def _revoke(self, query: Document) -> int:
        # Idempotent, so a pass that lost a race with a concurrent claim is simply run again.
        for _ in range(_REVOKE_ATTEMPTS):
            try:
                result = await self._tokens.update_many(
                    {**query, "revoked": False}, guarded({"$set": {"revoked": True, _LIVE: False}})
                )
            except PyMongoError as exc:
                if lost_race(exc):
                    continue
                raise database_unavailable(exc) from exc
            return result.modified_count
        raise Unavailable("revoking kept losing races with concurrent writes")

    async def revoke_family(self, family: str) -> int:
        return await self._revoke({"family": family})

    async def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        query: Document = {"user_id": user_id}
        if keep is not None:
            query["family"] = {"$ne": keep}  # a login id from our own signed token
        return await self._revoke(query)

    async def families(self, user_id: str, *, issued_after: datetime) -> set[str]:
        try:
            cursor = self._tokens.find(
                {"user_id": user_id, "created_at": {"$gt": issued_after}}, {"family": 1}
            )
            return {str(doc["family"]) async for doc in cursor}
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def live_logins(self, user_id: str, now: datetime) -> list[str]:
        try:
            # Equality on two top-level fields, which FerretDB hands to PostgreSQL: only the live
            # tokens are read, not the month of spent ones a busy login keeps (a login per
            # refresh, 30 days of them: 2,880 documents for a page left open, 0.33 s to decode
            # for three such devices). Tokens stored before the flag count as not live.
            cursor = self._tokens.find(
                {"user_id": user_id, _LIVE: True, "expires_at": {"$gt": now}},
                {"family": 1, "created_at": 1},
            )
            docs = await cursor.to_list(length=None)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return [str(d["family"]) for d in sorted(docs, key=lambda d: (d["created_at"], d["_id"]))]

    async def delete_expired(self, now: datetime) -> int:
        try:
            result = await self._tokens.delete_many({"expires_at": {"$lt": now}})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return result.deleted_count
