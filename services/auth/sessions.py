"""Ending a login: its ``ended_sessions`` document, and the ``session_ended`` event it stands for.

A login is a refresh-token family, and its access tokens carry the family as their ``sid`` claim.
Revoking the family (a logout, a replayed refresh token) stops new access tokens; the ones already
out are ended by a small document per login, ``_id`` = the family, kept until the last of those
tokens has expired (``until``). Every verifier with the database refuses a token whose login has
one (``chatcore.accounts``), and the controllers give a user's ended logins to the relays at each
handshake, so from the document's write no request and no new socket gets through with them.

The document is also the outbox of the ``session_ended`` event that makes the relays close the
sockets already open with those tokens: ``published`` is false until Kafka acknowledged it. A
logout never waits for Kafka (logging out must work while it is away): the publisher is woken
after the write, and retries every few seconds what is still unpublished, for as long as the
login's tokens live. Several auth instances may send the same event; relays closing sockets that
are already closed changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from chatcore import schema as s
from chatcore.logging import get_logger
from chatcore.mongo import DUPLICATE_KEY, Document, database_unavailable, stored_utc
from services.auth.outbox import Outbox

_log = get_logger("auth.sessions")

# Events sent per pass; the rest wait for the next one, which starts at once.
_BATCH = 100


@dataclass(frozen=True, slots=True)
class EndedSession:
    session_id: str
    user_id: str
    until: datetime


class EndedSessionStore(Protocol):
    async def end(self, sessions: Sequence[EndedSession]) -> None:
        """Store the ended logins; ending one again changes nothing."""

    async def unpublished(self, limit: int) -> list[EndedSession]:
        """Ended logins whose event Kafka has not acknowledged."""

    async def published(self, session_id: str) -> None:
        """Record that Kafka acknowledged the login's event."""

    async def delete_expired(self, now: datetime) -> int:
        """Forget logins whose access tokens have all expired; the number forgotten."""


class SessionEvents(Protocol):
    async def sessions_ended(self, ended: Sequence[tuple[str, str]]) -> None:
        """Publish a ``session_ended`` event per (user id, session id); raises unless Kafka
        acknowledged every one."""


def _ended(doc: Document) -> EndedSession:
    return EndedSession(
        session_id=str(doc["_id"]),
        user_id=str(doc[s.ENDED_USER_ID]),
        until=stored_utc(doc[s.ENDED_UNTIL]),
    )


class MongoEndedSessionStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._ended = db[s.ENDED_SESSIONS]

    async def end(self, sessions: Sequence[EndedSession]) -> None:
        docs = [
            {
                "_id": e.session_id,
                s.ENDED_USER_ID: e.user_id,
                s.ENDED_UNTIL: e.until,
                s.ENDED_PUBLISHED: False,
            }
            for e in sessions
        ]
        if not docs:
            return
        try:
            # Unordered: one already ended does not stop the others.
            await self._ended.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            # Ended already: its tokens expire no later than that first ending knew.
            if any(e.get("code") != DUPLICATE_KEY for e in exc.details.get("writeErrors", [])):
                raise database_unavailable(exc) from exc
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def unpublished(self, limit: int) -> list[EndedSession]:
        try:
            cursor = self._ended.find({s.ENDED_PUBLISHED: False}).limit(limit)
            return [_ended(doc) async for doc in cursor]
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def published(self, session_id: str) -> None:
        try:
            await self._ended.update_one({"_id": session_id}, {"$set": {s.ENDED_PUBLISHED: True}})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def delete_expired(self, now: datetime) -> int:
        try:
            result = await self._ended.delete_many({s.ENDED_UNTIL: {"$lt": now}})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return result.deleted_count


class SessionEventPublisher(Outbox):
    """Sends the events of ended logins, once woken and then every ``interval_s``, until acked."""

    failure_event = "session_events_failed"

    def __init__(
        self,
        store: EndedSessionStore,
        events: SessionEvents,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__()
        self._store = store
        self._events = events
        self._clock = clock

    async def publish_pending(self) -> int:
        """One pass over the unpublished events; the number published. Stops at a failure.

        Each page of events goes out together, so one user's many logins (a logout everywhere)
        cost one round trip to Kafka per page, not one per login, and others' wait little.
        """
        sent = 0
        while True:
            pending = await self._store.unpublished(_BATCH)
            now = self._clock()
            # Those whose tokens all expired closed their sockets then: nothing to announce.
            live = [e for e in pending if e.until > now]
            if live:
                try:
                    await self._events.sessions_ended([(e.user_id, e.session_id) for e in live])
                except Exception as exc:  # Kafka away: the next pass tries again
                    _log.warning(
                        "session_events_unpublished", events=len(live), error=type(exc).__name__
                    )
                    return sent
            for session in pending:
                await self._store.published(session.session_id)
            sent += len(live)
            if len(pending) < _BATCH:
                return sent
