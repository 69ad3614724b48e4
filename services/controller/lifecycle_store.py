"""What the life-cycle pass reads and writes, behind narrow interfaces, with MongoDB versions.

Messages by id (changes and thread roots), the changes feed, and whether a mentioned user is a
member. The controller that owns a channel's partition is the only writer of its messages'
state and of its change documents, so it reads, applies in memory and writes back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from chatcore import schema as s
from chatcore.message_state import StoredMessage
from chatcore.mongo import DUPLICATE_KEY, Document, database_unavailable, each_bounded


class MessageStates(Protocol):
    async def by_id(self, ids: Sequence[str]) -> dict[str, StoredMessage]:
        """The stored messages with these ids (absent ones are missing)."""

    async def save(self, states: Sequence[StoredMessage]) -> None:
        """Store what changes did to these messages."""

    async def renumber(self, counts: Mapping[str, int]) -> None:
        """Correct the team-message count stored on these messages (by id)."""

    async def insert_changes(self, docs: Sequence[Document]) -> None:
        """Store change documents; one already stored (same ``_id``) is left as it is."""


class Members(Protocol):
    async def is_member(self, channel_id: str, user_id: str) -> bool: ...


def change_doc(change: str, seq: int, bucket: str, count: int, state: StoredMessage) -> Document:
    """The stored form of one applied change: the message as it left it, in its bucket."""
    return {
        s.ID: f"{state.channel_id}:{seq}:{change}",
        s.CHANGE_CHANNEL_ID: state.channel_id,
        s.CHANGE_SEQ: seq,
        s.MESSAGE_BUCKET: bucket,
        s.CHANGE_KIND: change,
        s.CHANGE_MESSAGE_ID: state.id,
        s.MESSAGE_TO: state.to,
        s.MESSAGE_FROM: state.sender,
        s.MESSAGE_COUNT: count,
        s.CHANGE_MESSAGE: message_doc(state),
    }


def message_doc(state: StoredMessage) -> Document:
    """Every stored field of a message (a change document's snapshot of it)."""
    return {
        s.MESSAGE_ID: state.id,
        s.MESSAGE_SEQ: state.seq,
        s.MESSAGE_CHANNEL_ID: state.channel_id,
        s.MESSAGE_TO: state.to,
        s.MESSAGE_TYPE: state.type,
        s.MESSAGE_FROM: state.sender,
        s.MESSAGE_TS: state.ts,
        s.MESSAGE_THREAD_ID: state.thread_id,
        s.MESSAGE_COUNT: state.count,
        **state.changed_fields(),
    }


class MongoMessageStates:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._messages = db[s.MESSAGES]
        self._changes = db[s.CHANGES]

    async def by_id(self, ids: Sequence[str]) -> dict[str, StoredMessage]:
        async def one(message_id: str) -> Document | None:
            return await self._messages.find_one({s.MESSAGE_ID: message_id})

        try:
            found = await each_bounded(one, dict.fromkeys(ids))
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        states = (StoredMessage.from_doc(doc) for doc in found if doc is not None)
        return {state.id: state for state in states}

    async def save(self, states: Sequence[StoredMessage]) -> None:
        try:
            for state in states:
                await self._messages.update_one(
                    {s.MESSAGE_ID: state.id}, {"$set": state.changed_fields()}
                )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def renumber(self, counts: Mapping[str, int]) -> None:
        try:
            for message_id, count in counts.items():
                await self._messages.update_one(
                    {s.MESSAGE_ID: message_id}, {"$set": {s.MESSAGE_COUNT: count}}
                )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def insert_changes(self, docs: Sequence[Document]) -> None:
        if not docs:
            return
        try:
            await self._changes.insert_many([dict(d) for d in docs], ordered=False)
        except BulkWriteError as exc:
            others = [
                e for e in exc.details.get("writeErrors", ()) if e.get("code") != DUPLICATE_KEY
            ]
            if others or exc.details.get("writeConcernErrors"):
                raise database_unavailable(exc) from exc
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc


class MongoMembers:
    """Membership by the index's ``_id`` (one equality lookup)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._memberships = db[s.MEMBERSHIPS]

    async def is_member(self, channel_id: str, user_id: str) -> bool:
        try:
            doc = await self._memberships.find_one(
                {s.ID: s.membership_id(channel_id, user_id)}, {s.ID: 1}
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return doc is not None
