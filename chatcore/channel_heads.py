"""The ``channels`` head documents on MongoDB or FerretDB: which history buckets a channel uses,
and its counters for unread counts (``chatcore.unread.ChannelHead``).

Written by the controller that owns the channel's partition (reserving a bucket before it stores
messages in it; the counters after each batch) and by the bucket migration (numbering older
messages' buckets below 0); read by the history pages and the unread counts. Every query is an
equality on ``_id``, which FerretDB pushes down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pymongo import ReturnDocument, UpdateOne
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.buckets import BucketRange, Reservation
from chatcore.errors import Unavailable
from chatcore.mongo import (
    WRITE_COMMANDS_IN_FLIGHT,
    Document,
    bulk_write_chunked,
    database_unavailable,
    each_keyed,
)
from chatcore.unread import BEFORE_FIRST, ChannelHead, DeletedMark


class MongoChannelHeads:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._channels = db[s.CHANNELS]

    async def reserve(self, channel_id: str) -> Reservation:
        """Reserve the channel's next bucket (``high`` counts them): its number, and the
        counters the document holds (a controller taking a channel over needs both)."""
        # No projection: FerretDB 1.24 does not implement one on findAndModify.
        try:
            doc = await self._channels.find_one_and_update(
                {s.ID: channel_id},
                {"$inc": {s.CHANNEL_HIGH: 1}, "$setOnInsert": {s.CHANNEL_LOW: 0}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        if doc is None:  # an upsert returning nothing: the server broke its own contract
            raise Unavailable(f"no head document came back for channel {channel_id}")
        return Reservation(int(doc[s.CHANNEL_HIGH]) - 1, head_from_doc(doc))

    async def extend_low(self, channel_id: str, low: int) -> None:
        """Let the range start at ``low`` or below (the migration's buckets of older messages)."""
        try:
            await self._channels.update_one(
                {s.ID: channel_id},
                {"$min": {s.CHANNEL_LOW: low}, "$setOnInsert": {s.CHANNEL_HIGH: 0}},
                upsert=True,
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def range(self, channel_id: str) -> BucketRange | None:
        """The channel's bucket numbers, or None when no message was ever bucketed in it."""
        try:
            doc = await self._channels.find_one({s.ID: channel_id}, {s.ID: 0})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        if doc is None:
            return None
        return BucketRange(int(doc.get(s.CHANNEL_LOW, 0)), int(doc.get(s.CHANNEL_HIGH, 0)))

    async def head(self, channel_id: str) -> ChannelHead:
        """The channel's counters (none, and seqs ``BEFORE_FIRST``, for a channel with nothing
        stored yet)."""
        try:
            doc = await self._channels.find_one({s.ID: channel_id})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return head_from_doc(doc)

    async def heads(self, channel_ids: Iterable[str]) -> dict[str, ChannelHead]:
        """``head`` of several channels, looked up at once (one equality query each: FerretDB
        evaluates ``$in`` over the whole collection)."""
        return await each_keyed(self.head, channel_ids)

    async def save_counters(self, channel_id: str, head: ChannelHead) -> None:
        """Store the counters (the controller that owns the channel is their only writer)."""
        await self.save_counters_many({channel_id: head})

    async def save_counters_many(
        self, heads: Mapping[str, ChannelHead], *, in_flight: int = WRITE_COMMANDS_IN_FLIGHT
    ) -> None:
        """``save_counters`` for several channels, a few per command, ``in_flight`` at once."""
        updates = [
            UpdateOne(
                {s.ID: channel_id},
                {
                    "$set": {
                        s.CHANNEL_COUNT: head.count,
                        s.CHANNEL_COUNT_SEQ: head.count_seq,
                        s.CHANNEL_LAST_SEQ: head.last_seq,
                        s.CHANNEL_DELETED: [{"seq": d.seq, "from": d.sender} for d in head.deleted],
                    },
                    "$setOnInsert": {s.CHANNEL_LOW: 0, s.CHANNEL_HIGH: 0},
                },
                upsert=True,
            )
            for channel_id, head in heads.items()
        ]
        if not updates:
            return
        try:
            await bulk_write_chunked(self._channels, updates, in_flight)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc


def head_from_doc(doc: Mapping[str, Any] | None) -> ChannelHead:
    if doc is None:
        return ChannelHead()
    deleted = doc.get(s.CHANNEL_DELETED)
    return ChannelHead(
        count=int(doc.get(s.CHANNEL_COUNT, 0)),
        count_seq=int(doc.get(s.CHANNEL_COUNT_SEQ, BEFORE_FIRST)),
        last_seq=int(doc.get(s.CHANNEL_LAST_SEQ, BEFORE_FIRST)),
        deleted=tuple(
            DeletedMark(int(d.get("seq", 0)), str(d.get("from", "")))
            for d in (deleted if isinstance(deleted, list) else ())
            if isinstance(d, Mapping)
        ),
    )
