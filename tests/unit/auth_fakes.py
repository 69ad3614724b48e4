"""In-memory stand-ins for the auth stores, behind the same interfaces as the MongoDB ones."""

from __future__ import annotations

import dataclasses
from datetime import datetime

from chatcore.errors import Conflict
from services.auth.store import RefreshRecord, User


class MemoryUserStore:
    def __init__(self) -> None:
        self.users: dict[str, User] = {}

    async def create(self, user: User) -> None:
        if any(u.email == user.email for u in self.users.values()):
            raise Conflict("an account with this email already exists")
        self.users[user.id] = user

    async def by_email(self, email: str) -> User | None:
        return next((u for u in self.users.values() if u.email == email), None)

    async def by_id(self, user_id: str) -> User | None:
        return self.users.get(user_id)

    async def set_password_hash(self, user_id: str, password_hash: str) -> None:
        self.users[user_id] = dataclasses.replace(self.users[user_id], password_hash=password_hash)

    def disable(self, user_id: str) -> None:
        self.users[user_id] = dataclasses.replace(self.users[user_id], disabled=True)


class MemoryRefreshStore:
    def __init__(self) -> None:
        self.records: dict[str, RefreshRecord] = {}

    async def insert(self, record: RefreshRecord) -> None:
        self.records[record.token_hash] = record

    async def get(self, token_hash: str) -> RefreshRecord | None:
        return self.records.get(token_hash)

    async def claim(self, token_hash: str, now: datetime) -> bool:
        record = self.records.get(token_hash)
        if record is None or record.used_at is not None or record.revoked:
            return False
        self.records[token_hash] = dataclasses.replace(record, used_at=now)
        return True

    async def revoke_family(self, family: str) -> int:
        hits = [h for h, r in self.records.items() if r.family == family and not r.revoked]
        for h in hits:
            self.records[h] = dataclasses.replace(self.records[h], revoked=True)
        return len(hits)

    async def delete_expired(self, now: datetime) -> int:
        expired = [h for h, r in self.records.items() if r.expires_at < now]
        for h in expired:
            del self.records[h]
        return len(expired)
