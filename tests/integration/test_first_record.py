"""The first record of a partition sits at offset 0, a seq like any other, over the stack's
FerretDB: the controller counts it, unread counts and read positions include it, and the
history and changes pages find it from the start (``after=-1``)."""

from __future__ import annotations

from pymongo.asynchronous.database import AsyncDatabase

from chatcore.channel_heads import MongoChannelHeads
from chatcore.mongo import INDEXES, Document, ensure_indexes
from chatcore.read_states import UnreadReader
from chatcore.unread import Unread
from services.management.history_store import MongoMessageStore as HistoryStore
from tests.integration.test_takeover import controller_over
from tests.unit.controller_fakes import (
    FakeKafkaRecord,
    as_record,
    chat_message,
    message_record,
    read_record,
)

T = "f" * 32
ALICE, BOB = "a" * 32, "b" * 32


async def _controller_pass(db: AsyncDatabase[Document], records: list[FakeKafkaRecord]) -> None:
    """One controller consuming ``records`` and checkpointing its read state and counters."""
    processor, _store, held = controller_over(db)
    await processor.persist(processor.prepare([as_record(r) for r in records]))
    await held.flush()


async def test_the_record_at_offset_0_is_counted_read_and_paged(
    scratch_db: AsyncDatabase[Document],
) -> None:
    """Alice's team message at offset 0 and her DM to Bob at 1: Bob has 2 unread, 1 mention and
    has read nothing (-1); the pages from the start list both; reading seq 0 leaves the DM."""
    await ensure_indexes(scratch_db, INDEXES)
    await _controller_pass(
        scratch_db,
        [
            message_record(chat_message(T, msg_id="m0", sender=ALICE), offset=0),
            message_record(chat_message(T, msg_id="d1", sender=ALICE, to=BOB), offset=1),
        ],
    )
    reader = UnreadReader(scratch_db)
    assert await reader.unread(BOB, [T]) == {T: Unread(count=2, mentions=1, last_read_seq=-1)}
    assert (await reader.unread(ALICE, [T]))[T] == Unread(count=0, mentions=0, last_read_seq=1)

    history = HistoryStore(scratch_db, MongoChannelHeads(scratch_db))
    assert [e.seq for e in (await history.changes(T, BOB, after=-1, limit=50)).found] == [0, 1]
    assert [e.seq for e in (await history.changes(T, BOB, after=0, limit=50)).found] == [1]
    page = await history.page(T, BOB, before=None, after=-1, limit=50)
    assert [m.seq for m in page.found] == [0, 1]
    assert await history.count_at(T, 0) == 1

    await _controller_pass(scratch_db, [read_record(T, BOB, 0, 1, offset=2)])
    reader = UnreadReader(scratch_db)
    assert await reader.unread(BOB, [T]) == {T: Unread(count=1, mentions=1, last_read_seq=0)}
