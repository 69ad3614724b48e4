"""The ``channels`` head documents on MongoDB or FerretDB: which history buckets a channel uses.

Written by the controller (reserving a bucket before it stores messages in it) and by the bucket
migration (numbering older messages' buckets below 0); read by the history pages. Every query is
an equality on ``_id``, which FerretDB pushes down.
"""

from __future__ import annotations

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.buckets import BucketRange
from chatcore.errors import Unavailable
from chatcore.mongo import Document, database_unavailable


class MongoChannelHeads:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._channels = db[s.CHANNELS]

    async def reserve(self, channel_id: str) -> int:
        """Reserve the channel's next bucket (``high`` counts them); return its number."""
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
        return int(doc[s.CHANNEL_HIGH]) - 1

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
