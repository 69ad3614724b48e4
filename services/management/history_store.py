"""History reads over the stored messages: a walk over the channel's buckets (``chatcore.buckets``).

A page is the channel's head (its bucket range), the cursor's bucket (one equality lookup of the
cursor message), then one equality query per bucket from there on, newest first for a backward
page and oldest first for a forward one, until the page is full. Each query reads one bucket
(at most ``BUCKET_SIZE`` messages) whatever the channel's size: FerretDB pushes the ``bucket``
equality down, MongoDB serves it from the ``(bucket, seq)`` index. Seq bounds and visibility are
residual filters inside the bucket.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.buckets import BucketRange, bucket_key, bucket_number
from chatcore.channel_heads import MongoChannelHeads
from chatcore.mongo import Document, database_unavailable
from services.management.model import Message
from services.management.store import Carrier


def message_from_doc(doc: Mapping[str, Any]) -> Message:
    """A stored message (written by the controller) as a ``Message``."""
    return Message(
        id=str(doc.get(s.MESSAGE_ID, "")),
        seq=int(doc[s.MESSAGE_SEQ]),
        channel_id=str(doc.get(s.MESSAGE_CHANNEL_ID, "")),
        to=str(doc.get(s.MESSAGE_TO, "")),
        type=str(doc.get(s.MESSAGE_TYPE, "")),
        data=str(doc.get(s.MESSAGE_DATA, "")),
        sender=str(doc.get(s.MESSAGE_FROM, "")),
        ts=doc[s.MESSAGE_TS],
    )


def _visible_to(viewer: str) -> Document:
    # Team messages, and DMs the viewer sent or received.
    return {"$or": [{s.MESSAGE_TO: s.BROADCAST}, {s.MESSAGE_FROM: viewer}, {s.MESSAGE_TO: viewer}]}


_PROJECTION: Document = {s.ID: False, s.MESSAGE_BUCKET: False}


class MongoMessageStore:
    def __init__(self, db: AsyncDatabase[Document], heads: MongoChannelHeads) -> None:
        self._messages = db[s.MESSAGES]
        self._heads = heads

    async def page(
        self,
        channel_id: str,
        viewer: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> list[Message]:
        buckets = await self._heads.range(channel_id)
        if buckets is None or limit < 1:
            return []  # no message was ever stored in the channel
        forward = after is not None
        cursor = after if forward else before
        start = None if cursor is None else await self._bucket_of(channel_id, cursor, buckets)
        numbers = buckets.oldest_first(start) if forward else buckets.newest_first(start)
        base: Document = _visible_to(viewer)
        if cursor is not None:
            base[s.MESSAGE_SEQ] = {"$gt": cursor} if forward else {"$lt": cursor}
        found: list[Message] = []
        try:
            for number in numbers:
                query = {s.MESSAGE_BUCKET: bucket_key(channel_id, number), **base}
                docs = (
                    self._messages.find(query, projection=_PROJECTION)
                    .sort(s.MESSAGE_SEQ, ASCENDING if forward else DESCENDING)
                    .limit(limit - len(found))
                )
                found.extend([message_from_doc(doc) async for doc in docs])
                if len(found) >= limit:
                    break
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return found

    async def _bucket_of(self, channel_id: str, seq: int, buckets: BucketRange) -> int | None:
        """The bucket holding the channel's message at ``seq``, or where that seq would be.

        A cursor is normally the seq of a message the client holds, found by one equality lookup.
        Any other number is placed by a binary search over the buckets' lowest seqs, so a made-up
        cursor costs a dozen bucket reads, not a walk over the whole channel.
        """
        try:
            doc = await self._messages.find_one(
                {s.MESSAGE_CHANNEL_ID: channel_id, s.MESSAGE_SEQ: seq}, {s.MESSAGE_BUCKET: 1}
            )
            if doc is not None and isinstance(doc.get(s.MESSAGE_BUCKET), str):
                return bucket_number(doc[s.MESSAGE_BUCKET])
            low, high = buckets.low, buckets.high - 1
            while low < high:
                middle = (low + high + 1) // 2
                lowest = await self._lowest_seq_from(channel_id, middle, high)
                if lowest is None or lowest > seq:
                    high = middle - 1
                else:
                    low = middle
            return low
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def _lowest_seq_from(self, channel_id: str, number: int, last: int) -> int | None:
        # The first non-empty bucket from ``number`` up to ``last`` (buckets can be empty).
        for n in range(number, last + 1):
            doc = await self._messages.find_one(
                {s.MESSAGE_BUCKET: bucket_key(channel_id, n)},
                {s.MESSAGE_SEQ: 1},
                sort=[(s.MESSAGE_SEQ, ASCENDING)],
            )
            if doc is not None:
                return int(doc[s.MESSAGE_SEQ])
        return None

    async def carrier(self, channel_id: str, attachment_id: str, viewer: str) -> Carrier:
        # Equality on channel_id and data: pushed down on FerretDB; on MongoDB the (channel_id,
        # seq) index narrows it to the channel. No index on ``data``: a 4,000-character text
        # would exceed PostgreSQL's btree row limit under FerretDB and fail the insert.
        carrying: Document = {
            s.MESSAGE_CHANNEL_ID: channel_id,
            s.MESSAGE_DATA: attachment_id,
            s.MESSAGE_TYPE: {"$ne": s.TEXT},
        }
        try:
            if await self._messages.find_one({**carrying, **_visible_to(viewer)}, {s.ID: 1}):
                return Carrier.VISIBLE
            if await self._messages.find_one(carrying, {s.ID: 1}):
                return Carrier.HIDDEN
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return Carrier.NONE
