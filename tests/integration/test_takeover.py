"""A partition's new owner, over the stack's FerretDB: what its predecessor stored but never
committed is found in its history buckets, fanned out again and not inserted again."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from chatcore import schema
from chatcore.buckets import BUCKET_SIZE, BucketAllocator
from chatcore.channel_heads import MongoChannelHeads
from chatcore.mongo import INDEXES, Document, ensure_indexes
from chatcore.read_states import MongoReadStates
from services.controller.batch import BatchProcessor, Outcome, Verdict
from services.controller.lifecycle import LifecyclePass
from services.controller.lifecycle_store import MongoMembers, MongoMessageStates
from services.controller.metrics import ControllerMetrics
from services.controller.store import MongoMessageStore
from services.controller.write_behind import StateBuffer
from tests.unit.controller_fakes import (
    MemoryDeadLetters,
    as_record,
    chat_message,
    message_record,
)

T = "c" * 32


class _CountingStore(MongoMessageStore):
    """The real store, noting the ids of every document it is asked to insert."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        super().__init__(db, parallel=2)
        self.attempted: list[str] = []

    async def insert_unordered(self, docs: Sequence[Document]) -> dict[int, int]:
        self.attempted.extend(str(d[schema.MESSAGE_ID]) for d in docs)
        return await super().insert_unordered(docs)


def controller_over(
    db: AsyncDatabase[Document],
) -> tuple[BatchProcessor, _CountingStore, StateBuffer]:
    """One controller process over the stack's database: its processor, store and buffer."""
    store = _CountingStore(db)
    held = StateBuffer(MongoReadStates(db), MongoChannelHeads(db))
    processor = BatchProcessor(
        store=store,
        buckets=BucketAllocator(MongoChannelHeads(db)),
        heads=held,
        lifecycle=LifecyclePass(MongoMessageStates(db), held, MongoMembers(db)),
        dead_letters=MemoryDeadLetters(),
        metrics=ControllerMetrics.create(CollectorRegistry()),
    )
    return processor, store, held


async def _persist(processor: BatchProcessor, offsets: range) -> Outcome:
    records = [message_record(chat_message(T, msg_id=f"m{o}"), offset=o) for o in offsets]
    return await processor.persist(processor.prepare([as_record(r) for r in records]))


async def test_a_successor_finds_the_stored_records_and_inserts_only_the_new_ones(
    scratch_db: AsyncDatabase[Document],
) -> None:
    """A predecessor stored 150 messages (two buckets) and checkpointed, then died having
    committed 100: its successor, given offsets 101-160, inserts only 151-160, fans all 60 out in
    order, and counts on from the predecessor's 150."""
    await ensure_indexes(scratch_db, INDEXES)
    before, _, before_held = controller_over(scratch_db)
    await _persist(before, range(1, 151))
    await before_held.flush()
    assert BUCKET_SIZE < 150  # the stored messages span two buckets

    after, store, _ = controller_over(scratch_db)
    outcome = await _persist(after, range(101, 161))
    assert store.attempted == [f"m{o}" for o in range(151, 161)]
    assert (outcome.counts[Verdict.REDELIVERED], outcome.counts[Verdict.INSERTED]) == (50, 10)
    assert [r.delivery.message.seq for r in outcome.routed] == list(range(101, 161))
    docs = await scratch_db[schema.MESSAGES].find({}, {"id": 1, "seq": 1, "n": 1}).to_list()
    assert sorted((d["seq"], d["id"]) for d in docs) == [(o, f"m{o}") for o in range(1, 161)]
    assert {d["id"]: d["n"] for d in docs if d["seq"] > 150} == {
        f"m{o}": o for o in range(151, 161)
    }
