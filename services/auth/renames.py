"""Telling a user's teams that they renamed themselves: the ``renames`` outbox and its publisher.

A rename is first noted here (one document per user, with a fresh ``mark``), then stored on the
user's document; ``PATCH /v1/auth/me`` answers once both are written. The note says only "tell
this user's name": the publisher reads the name from the user's document when it sends, looks up
the user's teams in the membership index and sends one ``profile`` event per team; the relays turn
each into a ``profile`` frame for that team's sockets, so every page that shows the name changes
it at once.

Noting first means every stored name is told: a failure after the note leaves a note whose pass
tells the name as stored (the old one, if the store failed). Reading the name at send time means
two renames at once tell the one stored last, whatever order their notes landed in. The note is
deleted only if it still holds the mark that was read: a rename meanwhile leaves it for the next
pass, whose events follow on each team's partition. Kafka away keeps the note until a pass gets
through; a page that loads meanwhile reads the new name anyway.
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
    """A note that the user's name is to be told; ``mark`` tells one note from a later one."""

    user_id: str
    mark: str
    at: datetime


class RenameStore(Protocol):
    async def note(self, rename: Rename) -> None:
        """Keep (or replace) the user's note until their teams have been told their name."""

    async def pending(self, limit: int) -> list[Rename]:
        """Notes not told yet."""

    async def told(self, rename: Rename) -> None:
        """Forget the note, unless the user renamed themselves again meanwhile (a new mark)."""


class RenameEvents(Protocol):
    async def members_renamed(self, renamed: Sequence[Renamed]) -> None:
        """A ``profile`` event per team of each user; raises unless Kafka acknowledged all."""


def _rename(doc: Document) -> Rename:
    return Rename(
        user_id=str(doc["_id"]),
        mark=str(doc[s.RENAME_MARK]),
        at=stored_utc(doc[s.RENAME_AT]),
    )


class MongoRenameStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._renames = db[s.RENAMES]

    async def note(self, rename: Rename) -> None:
        try:
            await self._renames.replace_one(
                {"_id": rename.user_id},
                {s.RENAME_MARK: rename.mark, s.RENAME_AT: rename.at},
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
            await self._renames.delete_one({"_id": rename.user_id, s.RENAME_MARK: rename.mark})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc


class RenamePublisher(Outbox):
    """Tells each noted user's name to their teams, once woken and then every interval."""

    failure_event = "rename_events_failed"

    def __init__(
        self,
        store: RenameStore,
        events: RenameEvents,
        *,
        name_of: Callable[[str], Awaitable[str | None]],
        teams_of: Callable[[str], Awaitable[Sequence[str]]],
    ) -> None:
        super().__init__()
        self._store = store
        self._events = events
        self._name_of = name_of
        self._teams_of = teams_of

    async def publish_pending(self) -> int:
        """One pass over the notes; the number of events published. Each user's events go out
        together and their note is forgotten once Kafka has them all, so a user in many teams
        is one send, and a failure costs the next pass only the notes not told yet."""
        sent = 0
        while True:
            pending = await self._store.pending(_BATCH)
            for rename in pending:
                name = await self._name_of(rename.user_id)
                teams = tuple(await self._teams_of(rename.user_id)) if name is not None else ()
                told = Renamed(rename.user_id, name or "", teams, int(rename.at.timestamp() * 1000))
                try:
                    await self._events.members_renamed([told])
                except Exception as exc:  # Kafka away: the next pass tries again
                    _log.warning(
                        "rename_events_unpublished", events=len(teams), error=type(exc).__name__
                    )
                    return sent
                await self._store.told(rename)
                sent += len(teams)
            if len(pending) < _BATCH:
                return sent
