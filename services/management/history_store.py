"""History reads over the stored messages: a walk over the channel's buckets (``chatcore.buckets``).

A page is the channel's head (its bucket range), the cursor's bucket (one equality lookup of the
cursor message), then one equality query per bucket from there on, newest first for a backward
page and oldest first for a forward one, until the page is full. Each query reads one bucket
(at most ``BUCKET_SIZE`` messages) whatever the channel's size: FerretDB pushes the ``bucket``
equality down, MongoDB serves it from the ``(bucket, seq)`` index. Seq bounds and visibility are
residual filters inside the bucket, so a bucket costs its whole size to read however little of it
the viewer may see: a walk reads at most ``PAGE_BUCKETS`` of them and then says where to go on
(``Walk.resume_at``), rather than read a channel of other members' DMs to its end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.buckets import BucketRange, bucket_key, bucket_number
from chatcore.channel_heads import MongoChannelHeads
from chatcore.message_state import StoredMessage, visible_filter
from chatcore.mongo import Document, database_unavailable
from services.management.store import CREATED, Carrier, ChangeEntry, Walk, entry_order

# About a thousand stored messages (8 x BUCKET_SIZE) per request at most: tens of milliseconds
# of FerretDB, however large the channel. A page of 50 that everyone may see takes one bucket.
PAGE_BUCKETS = 8


def message_from_doc(doc: Mapping[str, Any]) -> StoredMessage:
    """A stored message (written by the controller)."""
    return StoredMessage.from_doc(doc)


def _visible_to(viewer: str) -> Document:
    return visible_filter(viewer)


_PROJECTION: Document = {s.ID: False, s.MESSAGE_BUCKET: False}


class MongoMessageStore:
    def __init__(
        self,
        db: AsyncDatabase[Document],
        heads: MongoChannelHeads,
        *,
        page_buckets: int = PAGE_BUCKETS,
    ) -> None:
        self._messages = db[s.MESSAGES]
        self._changes = db[s.CHANGES]
        self._heads = heads
        self._page_buckets = page_buckets

    async def message(self, channel_id: str, message_id: str) -> StoredMessage | None:
        try:
            doc = await self._messages.find_one({s.MESSAGE_ID: message_id}, _PROJECTION)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        if doc is None or doc.get(s.MESSAGE_CHANNEL_ID) != channel_id:
            return None
        return message_from_doc(doc)

    async def thread(
        self, channel_id: str, root_id: str, viewer: str, *, after: int, limit: int
    ) -> list[StoredMessage]:
        # Equality on thread_id reaches the database (a GIN index locally); the rest filters
        # the thread's replies only.
        query: Document = {
            s.MESSAGE_THREAD_ID: root_id,
            s.MESSAGE_CHANNEL_ID: channel_id,
            s.MESSAGE_SEQ: {"$gt": after},
            **_visible_to(viewer),
        }
        try:
            docs = (
                self._messages.find(query, projection=_PROJECTION)
                .sort(s.MESSAGE_SEQ, ASCENDING)
                .limit(limit)
            )
            return [message_from_doc(doc) async for doc in docs]
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def changes(
        self, channel_id: str, viewer: str, *, after: int, limit: int
    ) -> Walk[ChangeEntry]:
        buckets = await self._heads.range(channel_id)
        if buckets is None or limit < 1:
            return Walk([])
        start = await self._bucket_of(channel_id, after, buckets) if after > 0 else None
        base: Document = {s.MESSAGE_SEQ: {"$gt": after}, **_visible_to(viewer)}
        found: list[ChangeEntry] = []
        read: list[int] = []
        try:
            for number in buckets.oldest_first(start):
                edge = await self._share_read(channel_id, read, number, forward=True, cursor=after)
                if edge is not None:
                    return Walk(found, edge)
                key = bucket_key(channel_id, number)
                # Both collections' share of the bucket at once: two reads, one wait.
                created, changed = await asyncio.gather(
                    self._messages.find({s.MESSAGE_BUCKET: key, **base}, _PROJECTION).to_list(),
                    self._changes.find({s.MESSAGE_BUCKET: key, **base}).to_list(),
                )
                entries = [
                    ChangeEntry(int(d[s.MESSAGE_SEQ]), CREATED, message_from_doc(d))
                    for d in created
                ] + [
                    ChangeEntry(
                        int(d[s.CHANGE_SEQ]),
                        str(d[s.CHANGE_KIND]),
                        message_from_doc(d[s.CHANGE_MESSAGE]),
                    )
                    for d in changed
                ]
                # A thread change shares the seq of the reply it counts (or of the delete that
                # takes one off): that record comes first.
                entries.sort(key=entry_order)
                found.extend(entries)
                if len(found) >= limit:
                    break
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return Walk(found[:limit])

    async def count_at(self, channel_id: str, seq: int, viewer: str | None = None) -> int | None:
        seen: Document = {} if viewer is None else _visible_to(viewer)
        at: Document = {s.MESSAGE_CHANNEL_ID: channel_id, s.MESSAGE_SEQ: seq, **seen}
        try:
            doc = await self._messages.find_one(at, {s.MESSAGE_COUNT: 1})
            if doc is None:
                doc = await self._changes.find_one(
                    {s.CHANGE_CHANNEL_ID: channel_id, s.CHANGE_SEQ: seq, **seen},
                    {s.MESSAGE_COUNT: 1},
                )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return None if doc is None else int(doc.get(s.MESSAGE_COUNT, 0))

    async def count_before(self, channel_id: str, seq: int) -> int:
        buckets = await self._heads.range(channel_id)
        if buckets is None or seq < 0:
            return 0
        start = await self._bucket_of(channel_id, seq, buckets)
        try:
            # The cursor's bucket starts at or below ``seq``, so it normally answers; an empty
            # bucket (a reservation never filled) passes the walk to the one below.
            for number in buckets.newest_first(start):
                doc = await self._messages.find_one(
                    {
                        s.MESSAGE_BUCKET: bucket_key(channel_id, number),
                        s.MESSAGE_SEQ: {"$lte": seq},
                    },
                    {s.MESSAGE_COUNT: 1},
                    sort=[(s.MESSAGE_SEQ, DESCENDING)],
                )
                if doc is not None:
                    return int(doc.get(s.MESSAGE_COUNT, 0))
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return 0

    async def page(
        self,
        channel_id: str,
        viewer: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> Walk[StoredMessage]:
        buckets = await self._heads.range(channel_id)
        if buckets is None or limit < 1:
            return Walk([])  # no message was ever stored in the channel
        forward = after is not None
        cursor = after if forward else before
        # Before the first seq (after=-1) is where the oldest bucket starts.
        start = (
            None
            if cursor is None or cursor < 0
            else await self._bucket_of(channel_id, cursor, buckets)
        )
        numbers = buckets.oldest_first(start) if forward else buckets.newest_first(start)
        base: Document = _visible_to(viewer)
        if cursor is not None:
            base[s.MESSAGE_SEQ] = {"$gt": cursor} if forward else {"$lt": cursor}
        found: list[StoredMessage] = []
        read: list[int] = []
        try:
            for number in numbers:
                # A bucket of edits and reactions only (its records all in ``changes``) is no
                # empty bucket: it counts toward the share, and its records place the cursor.
                edge = await self._share_read(
                    channel_id, read, number, forward=forward, cursor=cursor
                )
                if edge is not None:
                    return Walk(found, edge)
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
        return Walk(found)

    async def _share_read(
        self,
        channel_id: str,
        read: list[int],
        number: int,
        *,
        forward: bool,
        cursor: int | None,
    ) -> int | None:
        """Before a walk reads bucket ``number``: None to go on (it is added to ``read``), or,
        once the walk has read its share, the seq it stops at (see ``_edge``). Never one that
        does not move past ``cursor``: a client would ask for the same page forever."""
        if len(read) >= self._page_buckets:
            edge = await self._edge(channel_id, read, forward=forward)
            if edge is not None and (
                cursor is None or (edge > cursor if forward else edge < cursor)
            ):
                return edge
            # Nothing beyond the cursor in what was read (empty buckets, reservations never
            # filled): the walk goes on, its share counted afresh.
            read.clear()
        read.append(number)
        return None

    async def _edge(self, channel_id: str, read: list[int], *, forward: bool) -> int | None:
        """Where a walk that read the buckets ``read`` (in walking order) goes on from: the far
        end of the last one that holds anything, a record of the channel (so ``_bucket_of``
        places it by one lookup): a message's or a change's, whichever the walk is for, since
        both sit in the channel's buckets in seq order. Records of that bucket beyond it are read
        again by the next request, never skipped. None when none of them holds a record."""
        order = DESCENDING if forward else ASCENDING
        for number in reversed(read):
            key = bucket_key(channel_id, number)
            seqs: list[int] = []
            for collection in (self._messages, self._changes):
                doc = await collection.find_one(
                    {s.MESSAGE_BUCKET: key}, {s.MESSAGE_SEQ: 1}, sort=[(s.MESSAGE_SEQ, order)]
                )
                if doc is not None:
                    seqs.append(int(doc[s.MESSAGE_SEQ]))
            if seqs:
                return max(seqs) if forward else min(seqs)
        return None

    async def _bucket_of(self, channel_id: str, seq: int, buckets: BucketRange) -> int | None:
        """The bucket holding the channel's message at ``seq``, or where that seq would be.

        A cursor is normally the seq of a message or a change the client holds, found by one or
        two equality lookups. Any other number is placed by a binary search over the buckets'
        lowest seqs, so a made-up cursor costs a dozen bucket reads, not a walk over the channel.
        """
        try:
            at = {s.MESSAGE_CHANNEL_ID: channel_id, s.MESSAGE_SEQ: seq}
            doc = await self._messages.find_one(at, {s.MESSAGE_BUCKET: 1})
            if doc is None:
                doc = await self._changes.find_one(at, {s.MESSAGE_BUCKET: 1})
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

    async def carried_besides(self, channel_id: str, attachment_id: str, message_id: str) -> bool:
        carrying: Document = {
            s.MESSAGE_CHANNEL_ID: channel_id,
            s.MESSAGE_DATA: attachment_id,
            s.MESSAGE_TYPE: {"$ne": s.TEXT},
            s.MESSAGE_ID: {"$ne": message_id},
        }
        try:
            return await self._messages.find_one(carrying, {s.ID: 1}) is not None
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
