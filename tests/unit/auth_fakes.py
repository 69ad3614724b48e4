"""In-memory stand-ins for the auth stores, behind the same interfaces as the MongoDB ones.

``tests/integration/test_auth_store_contract.py`` runs one contract suite over each of these and
its MongoDB counterpart, so a rule the fakes get wrong fails there rather than hiding in unit tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from datetime import datetime

from chatcore.errors import Conflict, Unavailable
from chatcore.schema import ID_RE
from services.auth.renames import Rename
from services.auth.sessions import EndedSession
from services.auth.store import RefreshRecord, User


class MemoryUserStore:
    def __init__(self) -> None:
        self.users: dict[str, User] = {}

    async def create(self, user: User) -> None:
        if user.id in self.users or any(u.email == user.email for u in self.users.values()):
            raise Conflict("an account with this email already exists")
        self.users[user.id] = user

    async def by_email(self, email: str) -> User | None:
        return next((u for u in self.users.values() if u.email == email), None)

    async def by_id(self, user_id: str) -> User | None:
        return self.users.get(user_id)

    async def set_password_hash(
        self, user_id: str, password_hash: str, *, replacing: str | None = None
    ) -> None:
        stored = self.users.get(user_id)
        if stored is not None and replacing in (None, stored.password_hash):
            self.users[user_id] = dataclasses.replace(
                self.users[user_id], password_hash=password_hash
            )

    async def set_name(self, user_id: str, name: str) -> bool:
        if user_id not in self.users:
            return False
        self.users[user_id] = dataclasses.replace(self.users[user_id], name=name)
        return True

    async def set_disabled(self, user_id: str, disabled: bool) -> bool:
        if user_id not in self.users:
            return False
        self.users[user_id] = dataclasses.replace(self.users[user_id], disabled=disabled)
        return True


class MemoryEndedSessionStore:
    def __init__(self) -> None:
        self.ended: dict[str, EndedSession] = {}
        self.unacked: set[str] = set()
        self.down = False  # every write fails, as with the database away

    async def end(self, sessions: Sequence[EndedSession]) -> None:
        if self.down:
            raise Unavailable("database error: AutoReconnect")
        for session in sessions:
            if session.session_id not in self.ended:
                self.ended[session.session_id] = session
                self.unacked.add(session.session_id)

    async def unpublished(self, limit: int) -> list[EndedSession]:
        return [self.ended[sid] for sid in sorted(self.unacked)][:limit]

    async def published(self, session_id: str) -> None:
        self.unacked.discard(session_id)

    async def delete_expired(self, now: datetime) -> int:
        expired = [sid for sid, e in self.ended.items() if e.until < now]
        for sid in expired:
            del self.ended[sid]
            self.unacked.discard(sid)
        return len(expired)


class MemoryRenameStore:
    """``services.auth.renames.RenameStore`` in a dict, keyed by user."""

    def __init__(self) -> None:
        self.notes: dict[str, Rename] = {}
        self.down = False  # every write fails, as with the database away

    async def note(self, rename: Rename) -> None:
        if self.down:
            raise Unavailable("database error: AutoReconnect")
        self.notes[rename.user_id] = rename

    async def pending(self, limit: int) -> list[Rename]:
        return [self.notes[u] for u in sorted(self.notes)][:limit]

    async def told(self, rename: Rename) -> None:
        if (held := self.notes.get(rename.user_id)) is not None and held.mark == rename.mark:
            del self.notes[rename.user_id]


class MemoryAccountStatus:
    """``chatcore.accounts.AccountStatus`` over a ``MemoryUserStore`` (and ended logins)."""

    def __init__(
        self, users: MemoryUserStore, ended: MemoryEndedSessionStore | None = None
    ) -> None:
        self._users = users
        self._ended = ended if ended is not None else MemoryEndedSessionStore()

    async def is_disabled(self, user_id: str) -> bool:
        user = self._users.users.get(user_id) if ID_RE.fullmatch(user_id) else None
        return user is None or user.disabled

    async def session_ended(self, session_id: str) -> bool:
        return not ID_RE.fullmatch(session_id) or session_id in self._ended.ended


class MemoryRefreshStore:
    def __init__(self) -> None:
        self.records: dict[str, RefreshRecord] = {}

    async def insert(self, record: RefreshRecord) -> None:
        self.records[record.token_hash] = record

    async def get(self, token_hash: str) -> RefreshRecord | None:
        return self.records.get(token_hash)

    async def claim(self, token_hash: str, now: datetime, *, fence: int | None = None) -> bool:
        record = self.records.get(token_hash)
        if record is None or record.used_at is not None or record.revoked:
            return False
        self.records[token_hash] = dataclasses.replace(record, used_at=now)
        return True

    def _revoke(self, hits: list[str]) -> int:
        for h in hits:
            self.records[h] = dataclasses.replace(self.records[h], revoked=True)
        return len(hits)

    async def revoke_family(self, family: str) -> int:
        return self._revoke(
            [h for h, r in self.records.items() if r.family == family and not r.revoked]
        )

    async def revoke_user(self, user_id: str, *, keep: str | None = None) -> int:
        return self._revoke(
            [
                h
                for h, r in self.records.items()
                if r.user_id == user_id and not r.revoked and r.family != keep
            ]
        )

    async def families(self, user_id: str, *, issued_after: datetime) -> set[str]:
        return {
            r.family
            for r in self.records.values()
            if r.user_id == user_id and r.created_at > issued_after
        }

    async def live_logins(self, user_id: str, now: datetime) -> list[str]:
        live = [
            r
            for r in self.records.values()
            if r.user_id == user_id and not r.revoked and r.used_at is None and r.expires_at > now
        ]
        return [r.family for r in sorted(live, key=lambda r: (r.created_at, r.token_hash))]

    async def delete_expired(self, now: datetime) -> int:
        expired = [h for h, r in self.records.items() if r.expires_at < now]
        for h in expired:
            del self.records[h]
        return len(expired)


@dataclasses.dataclass
class FakeProducer:
    """One producer instance talking to a ``FakeBroker``."""

    broker: FakeBroker
    started: bool = False
    stopped: bool = False

    async def start(self) -> None:
        self.started = True
        if self.broker.slow_start is not None:
            await self.broker.slow_start.wait()
        if self.broker.down_starts:
            self.broker.down_starts -= 1
            raise ConnectionError("bootstrap refused")

    async def stop(self) -> None:
        self.stopped = True

    async def send_and_wait(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> object:
        if self.stopped or not self.started:
            raise RuntimeError("send on a producer that is not running")
        if self.broker.lost_acks:
            self.broker.lost_acks -= 1
            raise TimeoutError
        self.broker.records.append((topic, key, value))
        return object()


@dataclasses.dataclass
class FakeBroker:
    """A Kafka stand-in that refuses the first ``down_starts`` starts and loses ``lost_acks``."""

    down_starts: int = 0
    lost_acks: int = 0
    # Starts wait for this event when set (a broker slow to answer).
    slow_start: asyncio.Event | None = None
    records: list[tuple[str, bytes | None, bytes | None]] = dataclasses.field(default_factory=list)
    producers: list[FakeProducer] = dataclasses.field(default_factory=list)

    def producer(self) -> FakeProducer:
        made = FakeProducer(self)
        self.producers.append(made)
        return made
