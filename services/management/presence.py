"""``GET /v1/teams/{team_id}/presence``: members' status and when they were last seen.

Status comes from the presence feed every management instance reads (chatcore.presence_feed):
nothing is written per connect. When a user goes offline the instance notes the time, and writes
the notes down in batches (every few seconds, one small document per user who left), so
``last_seen`` survives a restart; an instance that never saw a user online reads theirs from the
database once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.logging import get_logger
from chatcore.messages import iso_datetime, to_datetime
from chatcore.mongo import Document, database_unavailable, each_bounded
from chatcore.presence import OFFLINE, ONLINE, PresenceBook, Transition

_log = get_logger("management.presence")


class MongoLastSeen:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._presence = db[s.PRESENCE]

    async def load(self, users: Sequence[str]) -> dict[str, int]:
        async def one(user_id: str) -> Document | None:
            return await self._presence.find_one({s.ID: user_id})

        try:
            docs = await each_bounded(one, users)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        found: dict[str, int] = {}
        for user, doc in zip(users, docs, strict=True):
            at = doc.get(s.PRESENCE_LAST_SEEN) if doc is not None else None
            if isinstance(at, datetime):
                found[user] = int(at.timestamp() * 1000)
        return found

    async def save(self, seen: dict[str, int]) -> None:
        try:
            for user, at_ms in seen.items():
                await self._presence.update_one(
                    {s.ID: user},
                    {"$max": {s.PRESENCE_LAST_SEEN: to_datetime(at_ms)}},
                    upsert=True,
                )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc


class MemberPresence:
    def __init__(
        self,
        book: Callable[[], PresenceBook],
        store: MongoLastSeen,
        *,
        clock: Callable[[], int],
    ) -> None:
        self._book = book
        self._store = store
        self._clock = clock
        self._seen: dict[str, int] = {}
        self._unsaved: dict[str, int] = {}

    def on_transitions(self, transitions: Sequence[Transition]) -> None:
        for t in transitions:
            if t.status == OFFLINE:
                self._seen[t.user_id] = t.at_ms
                self._unsaved[t.user_id] = t.at_ms

    async def flush(self) -> None:
        pending, self._unsaved = self._unsaved, {}
        if not pending:
            return
        try:
            await self._store.save(pending)
        except Exception:
            # Kept for the next flush (newer notes win).
            self._unsaved = {**pending, **self._unsaved}
            raise

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.flush()
            except Exception as exc:
                _log.warning("last_seen_flush_failed", error=type(exc).__name__)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.flush()

    async def of_members(self, team_id: str, members: Sequence[str]) -> list[dict[str, Any]]:
        now = self._clock()
        book = self._book()
        unknown = [u for u in members if not book.online_in(u, team_id) and u not in self._seen]
        if unknown:
            self._seen.update(await self._store.load(unknown))
        out = []
        for user in members:
            online = book.online_in(user, team_id)
            at = now if online else self._seen.get(user)
            out.append(
                {
                    "user_id": user,
                    "status": ONLINE if online else OFFLINE,
                    "last_seen": iso_datetime(datetime.fromtimestamp(at / 1000, UTC))
                    if at
                    else None,
                }
            )
        return out
