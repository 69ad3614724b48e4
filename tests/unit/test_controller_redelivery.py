"""What a controller stores when records are consumed again (a crash before the checkpoint, a
partition moved, a retried batch): counts, mentions, numbers and buckets end as if each record
had been consumed once."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from chatcore.errors import Unavailable
from chatcore.mongo import Document
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.unread import ChannelHead, ReadState, Unread, unread
from services.controller.batch import Outcome, PendingBatch
from services.controller.metrics import ControllerMetrics
from services.controller.write_behind import StateBuffer
from tests.unit.controller_fakes import (
    FakeKafkaRecord,
    MemoryMessageStore,
    Processing,
    as_record,
    change_record,
    chat_message,
    make_processor,
    message_record,
    read_record,
    restarted,
)

T = "t" * 32
A, B, C = "a" * 32, "b" * 32, "c" * 32
EDIT, DELETE = chat_pb2.CHANGE_KIND_EDIT, chat_pb2.CHANGE_KIND_DELETE


def _stores(**kw: object) -> Processing:
    p = make_processor(ControllerMetrics.create(CollectorRegistry()), held=True, **kw)  # type: ignore[arg-type]
    p.members.members.update({(T, A), (T, B), (T, C)})
    return p


class _Controller:
    """One controller process over the shared stores: its own write-behind buffer and caches."""

    def __init__(self, p: Processing, bucket_size: int = 128) -> None:
        process = restarted(p, bucket_size=bucket_size)
        assert process.held is not None
        self.buffer: StateBuffer = process.held
        self.processor = process.processor

    def prepare(self, records: list[FakeKafkaRecord]) -> PendingBatch:
        return self.processor.prepare([as_record(r) for r in records])

    async def run(self, records: list[FakeKafkaRecord]) -> Outcome:
        return await self.processor.persist(self.prepare(records))


def _msg(offset: int, msg_id: str, **kw: str) -> FakeKafkaRecord:
    return message_record(chat_message(T, msg_id=msg_id, **kw), offset=offset)


def _unread(p: Processing, user: str) -> Unread:
    return unread(
        p.heads.counters.get(T, ChannelHead()), p.reads.states.get((T, user), ReadState()), user
    )


async def test_a_delete_consumed_again_after_a_crash_still_takes_its_counts_back() -> None:
    """A DM and a mentioning team text are stored and checkpointed; their deletes are applied,
    then the controller dies before the next checkpoint. Its successor consumes the deletes
    again (already applied to the messages): nobody has anything unread or a mention left."""
    p = _stores()
    first = _Controller(p)
    await first.run([_msg(10, "d1", sender=A, to=B), _msg(11, "m1", sender=A, text=f"hi <@{C}>")])
    await first.buffer.flush()
    assert (_unread(p, B).count, _unread(p, C).mentions) == (2, 1)
    deletes = [
        change_record(T, "d1", DELETE, offset=12, actor=A),
        change_record(T, "m1", DELETE, offset=13, actor=A),
    ]
    await first.run(deletes)  # ... and the process dies: nothing of it checkpointed
    successor = _Controller(p)
    await successor.run(deletes)
    await successor.buffer.flush()
    assert _unread(p, B) == Unread(0, 0, -1)
    assert _unread(p, C) == Unread(0, 0, -1)


async def test_records_consumed_again_after_their_checkpoint_keep_the_deletes() -> None:
    """Everything was checkpointed but not committed: the DM and the mention come back first,
    then their deletes, which take them back again."""
    p = _stores()
    records = [
        _msg(10, "d1", sender=A, to=B),
        change_record(T, "d1", DELETE, offset=11, actor=A),
        _msg(12, "m1", sender=A, text=f"hi <@{C}>"),
        change_record(T, "m1", DELETE, offset=13, actor=A),
    ]
    first = _Controller(p)
    await first.run(records)
    await first.buffer.flush()
    successor = _Controller(p)
    await successor.run(records)
    await successor.buffer.flush()
    assert (_unread(p, B), _unread(p, C)) == (Unread(0, 0, -1), Unread(0, 0, -1))


async def test_a_mention_edited_out_and_then_deleted_is_taken_back() -> None:
    """The edit takes the mention back, and the delete after it takes back nothing more (it
    starts from the mentions the edit left, not from the text as first stored)."""
    p = _stores()
    c = _Controller(p)
    await c.run([_msg(10, "m1", sender=A, text=f"ping <@{C}>")])
    await c.run([change_record(T, "m1", EDIT, offset=11, actor=A, data="never mind")])
    await c.run([change_record(T, "m1", DELETE, offset=12, actor=A)])
    await c.buffer.flush()
    assert _unread(p, C) == Unread(0, 0, -1)


async def test_an_edit_consumed_again_after_a_crash_still_counts_the_mention_it_added() -> None:
    """A team text is stored and checkpointed; an edit naming C is applied to the message, then
    the controller dies before the next checkpoint: its successor consumes the edit again
    (already applied) and C has the mention, once."""
    p = _stores()
    first = _Controller(p)
    await first.run([_msg(10, "m1", sender=A, text="hello")])
    await first.buffer.flush()
    edit = [change_record(T, "m1", EDIT, offset=11, actor=A, data=f"hello <@{C}>")]
    await first.run(edit)  # ... and the process dies: nothing of it checkpointed
    assert _unread(p, C).mentions == 0
    successor = _Controller(p)
    await successor.run(edit)
    await successor.run(edit)
    await successor.buffer.flush()
    assert _unread(p, C) == Unread(1, 1, -1)


async def test_an_edit_consumed_again_after_a_crash_still_takes_away_the_mention_it_removed() -> (
    None
):
    """A text naming C is stored and checkpointed; an edit that drops the name is applied, then
    the controller dies before the next checkpoint: its successor consumes the edit again and C
    no longer has the mention; a delete consumed again after that leaves nothing either."""
    p = _stores()
    first = _Controller(p)
    await first.run([_msg(10, "m1", sender=A, text=f"ping <@{C}>")])
    await first.buffer.flush()
    assert _unread(p, C).mentions == 1
    edit = [change_record(T, "m1", EDIT, offset=11, actor=A, data="never mind")]
    await first.run(edit)  # ... and the process dies: nothing of it checkpointed
    successor = _Controller(p)
    await successor.run(edit)
    await successor.buffer.flush()
    assert _unread(p, C) == Unread(1, 0, -1)
    delete = [change_record(T, "m1", DELETE, offset=12, actor=A)]
    await successor.run(delete)  # ... and this one dies too
    last = _Controller(p)
    await last.run([*edit, *delete])
    await last.buffer.flush()
    assert _unread(p, C) == Unread(0, 0, -1)


async def test_a_batch_retried_after_a_partial_save_applies_every_delete_s_counts() -> None:
    """Two deletes in one batch; saving the tombstones fails after the first: the retried batch
    takes both messages out of the counts."""
    p = _stores()
    c = _Controller(p)
    await c.run([_msg(10, "m1", sender=A), _msg(11, "m2", sender=A)])
    await c.buffer.flush()
    saves = p.states.save

    async def one_then_down(states: Sequence[object]) -> None:
        await saves(list(states)[:1])  # type: ignore[arg-type]
        raise Unavailable("database error: AutoReconnect")

    p.states.save = one_then_down  # type: ignore[method-assign]
    batch = c.prepare(
        [
            change_record(T, "m1", DELETE, offset=12, actor=A),
            change_record(T, "m2", DELETE, offset=13, actor=A),
        ]
    )
    with contextlib.suppress(Unavailable):
        await c.processor.persist(batch)
    p.states.save = saves  # type: ignore[method-assign]
    await c.processor.persist(batch)
    await c.buffer.flush()
    assert {d.seq for d in p.heads.counters[T].deleted} == {10, 11}
    assert _unread(p, B).count == 0


class _PositionsFailOnce(MemoryMessageStore):
    fail = False

    async def positions(self, ids: Sequence[str]) -> dict[str, object]:  # type: ignore[override]
        if self.fail:
            self.fail = False
            raise Unavailable("database error: NetworkTimeout")
        return await super().positions(ids)  # type: ignore[return-value]


async def test_a_retried_batch_corrects_the_numbers_its_first_attempt_stored() -> None:
    """A client retry of a stored message and a new one: the first attempt inserts the new one
    numbered as if the retry counted, then fails; the retry stores its right number."""
    store = _PositionsFailOnce()
    p = _stores(store=store)
    c = _Controller(p)
    await c.run([_msg(5, "m0", sender=A)])
    batch = c.prepare([_msg(10, "m0", sender=A), _msg(11, "m1", sender=A)])
    store.fail = True
    with contextlib.suppress(Unavailable):
        await c.processor.persist(batch)
    await c.processor.persist(batch)
    stored = {d["id"]: d["n"] for d in store.docs}
    assert stored == {"m0": 1, "m1": 2}


class _HalfInsert(MemoryMessageStore):
    """Inserts the first half of what it is given, then fails (a slice landed, another not)."""

    fail = False

    async def insert_unordered(self, docs: Sequence[Document]) -> dict[int, int]:
        if self.fail:
            self.fail = False
            await super().insert_unordered(docs[len(docs) // 2 :])
            raise Unavailable("database error: AutoReconnect")
        return await super().insert_unordered(docs)


async def test_a_batch_retried_after_a_partial_insert_keeps_its_buckets() -> None:
    """Buckets of 4: the higher half of a batch lands and the insert fails; the retry files the
    rest in the buckets the first attempt chose, so every bucket holds lower seqs than the next."""
    store = _HalfInsert()
    p = _stores(store=store)
    c = _Controller(p, bucket_size=4)
    batch = c.prepare([_msg(o, f"m{o}", sender=A) for o in range(10, 16)])
    store.fail = True
    with contextlib.suppress(Unavailable):
        await c.processor.persist(batch)
    await c.processor.persist(batch)
    by_bucket: dict[str, list[int]] = {}
    for doc in store.docs:
        by_bucket.setdefault(str(doc["bucket"]), []).append(int(doc["seq"]))
    ordered = [
        sorted(seqs)
        for _, seqs in sorted(by_bucket.items(), key=lambda kv: int(kv[0].rsplit("/", 1)[1]))
    ]
    flat = [seq for seqs in ordered for seq in seqs]
    assert flat == list(range(10, 16))


async def test_read_positions_are_stored_before_the_counters_they_were_taken_from() -> None:
    """A checkpoint whose read documents fail stores no counters either; consumed again, A's
    message and B's after it leave A one unread (B's), not none."""
    p = _stores()
    records = [_msg(10, "m1", sender=A), _msg(11, "m2", sender=B)]
    first = _Controller(p)
    await first.run(records)
    p.reads.failures_left = 1
    with contextlib.suppress(Unavailable):
        await first.buffer.flush()
    successor = _Controller(p)
    await successor.run(records)
    await successor.buffer.flush()
    assert _unread(p, A) == Unread(1, 0, 10)


async def test_a_late_read_marker_announces_the_position_as_it_stands() -> None:
    """A marker below the member's position moves nothing, and the ``read`` frame says where
    the member is, never a lower seq."""
    p = _stores()
    c = _Controller(p)
    await c.run([_msg(10, "m1", sender=A), _msg(11, "m2", sender=A)])
    await c.run([read_record(T, B, 11, 2, offset=12)])
    late = await c.run([read_record(T, B, 10, 1, offset=13)])
    assert [r.delivery.read.seq for r in late.routed if r.delivery.HasField("read")] == [11]


class _DiesBeforeChanges(Exception):
    pass


def _bucket(p: Processing, record_id: str) -> int:
    docs = [d for d in p.store.docs if d["id"] == record_id] or [
        d for key, d in p.states.changes.items() if key.endswith(record_id)
    ]
    return int(str(docs[0]["bucket"]).rsplit("/", 1)[1])


async def _dies_before_changes_then_taken_over(
    p: Processing, first: _Controller, batch: list[FakeKafkaRecord]
) -> None:
    """``first`` stores the batch's messages and dies before its change documents are written;
    a successor that took the partition over consumes the same batch."""
    inserted = p.states.insert_changes

    async def dies(_docs: Sequence[Document]) -> None:
        raise _DiesBeforeChanges

    p.states.insert_changes = dies  # type: ignore[method-assign, assignment]
    with contextlib.suppress(_DiesBeforeChanges):
        await first.run(batch)
    p.states.insert_changes = inserted  # type: ignore[method-assign]
    successor = _Controller(p)
    successor.processor.partitions_moved()
    await successor.run(batch)


async def test_a_new_owner_files_what_its_predecessor_left_unstored_below_what_it_stored() -> None:
    """The predecessor stored a batch's messages (seqs 100 and 102) and died before writing the
    edit at 101; its successor files the edit's change document in the bucket of message 102, not
    in its own new bucket after it, so a walk over buckets meets 100, 101, 102 in order."""
    p = _stores()
    first = _Controller(p)
    await first.run([_msg(90, "m0", sender=A, text="v1")])
    await first.buffer.flush()
    batch = [
        _msg(100, "m1", sender=A),
        change_record(T, "m0", EDIT, offset=101, actor=A, data="v2"),
        _msg(102, "m2", sender=A),
    ]
    await _dies_before_changes_then_taken_over(p, first, batch)
    assert list(p.states.changes) == [f"{T}:101:edited"]
    assert _bucket(p, "101:edited") == _bucket(p, "m2") == _bucket(p, "m1")


async def test_a_new_owner_files_a_stored_reply_s_thread_change_in_the_reply_s_bucket() -> None:
    """The predecessor stored a reply (seq 101) and a later message (102), and died before the
    root's thread change at 101 was written: its successor files that change in the reply's
    bucket, not in its own new bucket after 102's."""
    p = _stores()
    first = _Controller(p)
    await first.run([_msg(90, "root", sender=A)])
    await first.buffer.flush()
    reply = chat_message(T, msg_id="r1", sender=B)
    reply.thread_id = "root"
    batch = [message_record(reply, offset=101), _msg(102, "m2", sender=A)]
    await _dies_before_changes_then_taken_over(p, first, batch)
    assert list(p.states.changes) == [f"{T}:101:thread"]
    assert _bucket(p, "101:thread") == _bucket(p, "r1") == _bucket(p, "m2")


async def test_a_new_owner_files_messages_a_failed_slice_left_below_the_stored_ones() -> None:
    """Buckets of 4: the predecessor's insert of seqs 10-15 stored only 13-15 before it died;
    its successor inserts 10-12 into 13's bucket, never into a later one."""
    store = _HalfInsert()
    p = _stores(store=store)
    first = _Controller(p, bucket_size=4)
    batch = [_msg(o, f"m{o}", sender=A) for o in range(10, 16)]
    store.fail = True
    with contextlib.suppress(Unavailable):
        await first.run(batch)
    successor = _Controller(p, bucket_size=4)
    successor.processor.partitions_moved()
    await successor.run(batch)
    seqs = sorted((_bucket(p, f"m{o}"), o) for o in range(10, 16))
    assert [o for _, o in seqs] == list(range(10, 16))
