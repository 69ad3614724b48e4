"""Telling a user's teams that they renamed themselves: the ``renames`` outbox and its publisher.

A rename is stored on the user's document first (``PATCH /v1/auth/me`` answers once it is), then
noted here, one document per user holding the latest name. The publisher looks up the user's
teams in the membership index and sends one ``profile`` event per team; the relays turn each into
a ``profile`` frame for that team's sockets, so every page that shows the name changes it at once.

The note is deleted only if it still holds the name that was told: a second rename meanwhile
leaves it for the next pass, whose events follow the first's on each team's partition. Kafka away
keeps the note until a pass gets through; a page that loads meanwhile reads the new name anyway.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.logging import get_logger
from chatcore.mongo import Document, database_unavailable, stored_utc
from services.auth.events import Renamed
from services.auth.outbox import Outbox

_log = get_logger("auth.renames")

# Renames told per pass; the rest wait for the next one, which starts at once.
_BATCH = 50


@dataclass(frozen=True, slots=True)
class Rename:
    user_id: str
    name: str
    at: datetime


class RenameStore(Protocol):
    async def note(self, rename: Rename) -> None:
        """Keep the user's latest name until their teams have been told it."""

    async def pending(self, limit: int) -> list[Rename]:
        """Renames not told yet."""

    async def told(self, rename: Rename) -> None:
        """Forget the note, unless the user renamed themselves again meanwhile."""


class RenameEvents(Protocol):
    async def members_renamed(self, renamed: Sequence[Renamed]) -> None:
        """A ``profile`` event per team of each user; raises unless Kafka acknowledged all."""


def _rename(doc: Document) -> Rename:
    return Rename(
        user_id=str(doc["_id"]),
        name=str(doc[s.RENAME_NAME]),
        at=stored_utc(doc[s.RENAME_AT]),
    )


class MongoRenameStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._renames = db[s.RENAMES]

    async def note(self, rename: Rename) -> None:
        try:
            await self._renames.replace_one(
                {"_id": rename.user_id},
                {s.RENAME_NAME: rename.name, s.RENAME_AT: rename.at},
                upsert=True,
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def pending(self, limit: int) -> list[Rename]:
        try:
            return [_rename(doc) async for doc in self._renames.find({}).limit(limit)]
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def told(self, rename: Rename) -> None:
        try:
            await self._renames.delete_one({"_id": rename.user_id, s.RENAME_NAME: rename.name})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc


class RenamePublisher(Outbox):
    """Tells each noted rename to the user's teams, once woken and then every interval."""

    failure_event = "rename_events_failed"

    def __init__(
        self,
        store: RenameStore,
        events: RenameEvents,
        teams_of: Callable[[str], Awaitable[Sequence[str]]],
    ) -> None:
        super().__init__()
        self._store = store
        self._events = events
        self._teams_of = teams_of

    async def publish_pending(self) -> int:
        """One pass over the noted renames; the number of events published."""
        sent = 0
        while True:
            pending = await self._store.pending(_BATCH)
            renamed = [
                Renamed(
                    r.user_id,
                    r.name,
                    tuple(await self._teams_of(r.user_id)),
                    int(r.at.timestamp() * 1000),
                )
                for r in pending
            ]
            events = sum(len(r.teams) for r in renamed)
            try:
                await self._events.members_renamed(renamed)
            except Exception as exc:  # Kafka away: the next pass tries again
                _log.warning("rename_events_unpublished", events=events, error=type(exc).__name__)
                return sent
            for rename in pending:
                await self._store.told(rename)
            sent += events
            if len(pending) < _BATCH:
                return sent
