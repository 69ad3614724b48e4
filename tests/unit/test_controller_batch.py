"""Batch processing: decoding, dead letters, persistence and duplicate classification."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from chatcore.errors import Unavailable
from chatcore.kafka import EVENTS_TOPIC, MESSAGES_TOPIC, SIGNALS_TOPIC
from chatcore.proto.chat.v1 import chat_pb2
from services.controller.batch import Outcome, Verdict
from services.controller.dlq import dead_letter_headers
from services.controller.metrics import ControllerMetrics
from services.controller.records import DeadLetter, EventItem, MessageItem, Record, decode
from tests.unit.controller_fakes import (
    FakeKafkaRecord,
    MemoryDeadLetters,
    MemoryMessageStore,
    as_record,
    chat_message,
    make_processor,
    message_record,
)


class _Setup:
    def __init__(self) -> None:
        self.store = MemoryMessageStore()
        self.dlq = MemoryDeadLetters()
        self.prometheus = CollectorRegistry()
        self.processing = make_processor(
            ControllerMetrics.create(self.prometheus),
            store=self.store,
            dead_letters=self.dlq,
            bucket_size=2,
        )
        self.heads = self.processing.heads
        self.processor = self.processing.processor

    async def run(self, records: list[FakeKafkaRecord]) -> Outcome:
        return await self.processor.persist(self.processor.prepare([as_record(r) for r in records]))

    def count(self, outcome: str) -> float | None:
        return self.prometheus.get_sample_value("controller_messages_total", {"outcome": outcome})


def _seqs(outcome: Outcome) -> list[int]:
    return [r.delivery.message.seq for r in outcome.routed if r.delivery.HasField("message")]


def _garbage(offset: int, value: bytes = b"\xff\xfe not protobuf") -> FakeKafkaRecord:
    return FakeKafkaRecord(MESSAGES_TOPIC, 0, offset, b"t1", value, (("correlation_id", b"c-9"),))


async def test_new_messages_are_stored_and_fanned_out_with_seq_offset() -> None:
    """Inserted messages are stored once with seq = offset and fanned out in record order."""
    s = _Setup()
    records = [message_record(chat_message("t1", msg_id=f"m{i}"), offset=10 + i) for i in range(3)]
    outcome = await s.run(records)
    assert outcome.counts[Verdict.INSERTED] == 3
    assert _seqs(outcome) == [10, 11, 12]
    assert [r.channel_id for r in outcome.routed] == ["t1"] * 3
    assert [(d["id"], d["seq"]) for d in s.store.docs] == [("m0", 10), ("m1", 11), ("m2", 12)]
    assert s.count("inserted") == 3.0


async def test_redelivered_record_is_fanned_out_again() -> None:
    """The same record again (same id, channel and seq) is not stored twice but is fanned out."""
    s = _Setup()
    record = message_record(chat_message("t1", msg_id="m1"), offset=4)
    await s.run([record])
    outcome = await s.run([record, message_record(chat_message("t1", msg_id="m2"), offset=5)])
    assert outcome.counts[Verdict.REDELIVERED] == 1
    assert outcome.counts[Verdict.INSERTED] == 1
    assert _seqs(outcome) == [4, 5]
    assert len(s.store.docs) == 2
    assert s.count("redelivered") == 1.0


async def test_records_stored_before_a_partition_moved_are_looked_up_not_inserted_again() -> None:
    """A partition taken over with records its previous owner stored but never committed: those
    are found by lookup and fanned out again, only the new one is inserted, and a client retry
    among them is still a duplicate."""
    s = _Setup()
    first = [message_record(chat_message("t1", msg_id=f"m{i}"), offset=4 + i) for i in range(2)]
    await s.run(first)
    s.processor.partitions_moved()
    retry = message_record(chat_message("t1", msg_id="m0"), offset=7)
    s.store.insert_attempts.clear()
    s.store.position_lookups.clear()
    outcome = await s.run(
        [*first, message_record(chat_message("t1", msg_id="m2"), offset=6), retry]
    )
    assert s.store.insert_attempts == ["m2"]
    # The probes (the partition's first and last message); the rest came from one bucket read.
    assert s.store.position_lookups == ["m0", "m2"]
    assert s.store.buckets_read == ["t1/0"]
    assert _seqs(outcome) == [4, 5, 6]
    assert (outcome.counts[Verdict.REDELIVERED], outcome.counts[Verdict.INSERTED]) == (2, 1)
    assert outcome.counts[Verdict.DUPLICATE] == 1
    assert [(d["id"], d["seq"]) for d in s.store.docs] == [("m0", 4), ("m1", 5), ("m2", 6)]


async def test_the_search_walks_down_past_an_empty_bucket_until_below_what_it_seeks() -> None:
    """Buckets are read newest first from below the one the batch opened, an empty one (its
    reserver died) included, and no further than the bucket holding the lowest offset sought."""
    s = _Setup()
    await s.run(
        [message_record(chat_message("t1", msg_id=f"m{i}"), offset=1 + i) for i in range(5)]
    )
    await s.heads.reserve("t1")  # bucket 3: reserved, then its controller died
    s.processor.partitions_moved()
    s.store.insert_attempts.clear()
    again = [message_record(chat_message("t1", msg_id=f"m{i}"), offset=1 + i) for i in (2, 3, 4)]
    outcome = await s.run([*again, message_record(chat_message("t1", msg_id="m5"), offset=6)])
    assert s.store.buckets_read == ["t1/3", "t1/2", "t1/1"]
    assert s.store.insert_attempts == ["m5"]
    assert _seqs(outcome) == [3, 4, 5, 6]
    assert outcome.counts[Verdict.REDELIVERED] == 3


async def test_a_channel_new_to_a_partition_in_doubt_costs_no_bucket_read() -> None:
    """A channel whose first bucket this controller just opened has nothing below it to read
    (buckets under 0 only hold messages from before buckets existed)."""
    s = _Setup()
    stored = message_record(chat_message("t1", msg_id="m0"), offset=1)
    await s.run([stored])
    s.processor.partitions_moved()
    outcome = await s.run([stored, message_record(chat_message("t2", msg_id="x0"), offset=2)])
    assert s.store.buckets_read == ["t1/0"]
    assert (outcome.counts[Verdict.REDELIVERED], outcome.counts[Verdict.INSERTED]) == (1, 1)


async def test_buckets_read_while_in_doubt_serve_the_next_batches_too() -> None:
    """Records consumed again over several batches: each bucket is read once, and once a batch
    starts with a new message the partition goes straight to the insert."""
    s = _Setup()
    stored = [message_record(chat_message("t1", msg_id=f"m{i}"), offset=1 + i) for i in range(4)]
    await s.run(stored)
    s.processor.partitions_moved()
    await s.run(stored[:1])
    await s.run(stored[1:])
    assert s.store.buckets_read == ["t1/1", "t1/0"]
    s.store.insert_attempts.clear()
    outcome = await s.run([message_record(chat_message("t1", msg_id="m4"), offset=5)])
    assert s.store.insert_attempts == ["m4"]
    assert s.store.buckets_read == ["t1/1", "t1/0"]
    assert outcome.counts[Verdict.INSERTED] == 1
    assert s.count("redelivered") == 4.0


async def test_a_partition_whose_first_record_is_new_is_looked_up_once_then_inserted() -> None:
    """After a move, one lookup of a partition's first and last message that finds neither
    settles it: that batch and the later ones go straight to the insert."""
    s = _Setup()
    await s.run([message_record(chat_message("t1", msg_id="m0"), offset=1)])
    s.processor.partitions_moved()
    s.store.position_lookups.clear()
    batch = [message_record(chat_message("t1", msg_id=f"n{i}"), offset=2 + i) for i in range(3)]
    await s.run(batch)
    assert s.store.position_lookups == ["n0", "n2"]
    await s.run([message_record(chat_message("t1", msg_id="n9"), offset=9)])
    assert s.store.position_lookups == ["n0", "n2"]
    assert len(s.store.docs) == 5


async def test_client_retry_duplicate_is_not_fanned_out() -> None:
    """Same id at a new offset (a client retry) is neither stored nor fanned out."""
    s = _Setup()
    await s.run([message_record(chat_message("t1", msg_id="m1"), offset=4)])
    outcome = await s.run([message_record(chat_message("t1", msg_id="m1"), offset=9)])
    assert outcome.counts[Verdict.DUPLICATE] == 1
    assert outcome.routed == ()
    assert [(d["id"], d["seq"]) for d in s.store.docs] == [("m1", 4)]
    assert s.count("duplicate") == 1.0


async def test_duplicate_within_one_batch_is_delivered_once() -> None:
    """A retry that lands in the same batch as its original is delivered once, the first seq."""
    s = _Setup()
    outcome = await s.run(
        [
            message_record(chat_message("t1", msg_id="m1"), offset=1),
            message_record(chat_message("t1", msg_id="m1"), offset=2),
        ]
    )
    assert _seqs(outcome) == [1]
    assert outcome.counts[Verdict.DUPLICATE] == 1


async def test_seq_held_by_another_message_is_dead_lettered() -> None:
    """A (channel_id, seq) slot taken by another id (topic recreated) goes to the DLQ."""
    s = _Setup()
    await s.run([message_record(chat_message("t1", msg_id="old"), offset=3)])
    outcome = await s.run([message_record(chat_message("t1", msg_id="new"), offset=3)])
    assert outcome.counts[Verdict.REJECTED] == 1
    assert outcome.routed == ()
    assert [letter.error.split(":")[0] for letter in s.dlq.letters] == ["seq_conflict"]


async def test_garbage_is_dead_lettered_and_the_rest_flows() -> None:
    """Undecodable records go to the DLQ with their reason; the other records are processed."""
    s = _Setup()
    good = message_record(chat_message("t1", msg_id="m1"), offset=2)
    outcome = await s.run([_garbage(1), good, _garbage(3, b"")])
    assert _seqs(outcome) == [2]
    assert [letter.record.offset for letter in s.dlq.letters] == [1, 3]
    assert outcome.dead_letters == 2
    headers = dict(dead_letter_headers(s.dlq.letters[0]))
    assert headers["correlation_id"] == b"c-9"
    assert headers["source"] == f"{MESSAGES_TOPIC}/0/1".encode()
    assert headers["error"]
    assert (
        s.prometheus.get_sample_value("controller_dlq_records_total", {"topic": MESSAGES_TOPIC})
        == 2.0
    )


def test_record_keyed_otherwise_than_its_channel_is_dead_lettered() -> None:
    """A ChatMessage whose key is not its channel_id would break seq order: dead letter."""
    record = message_record(chat_message("t1", msg_id="m1"), offset=1)
    decoded = decode(as_record(FakeKafkaRecord(**{**record.__dict__, "key": b"t2"})))
    assert isinstance(decoded, DeadLetter)
    assert "keyed" in decoded.error


def test_signals_and_events_decode_and_garbage_does_not() -> None:
    """Signals and membership events decode from their topics; empty shells are refused."""
    event = chat_pb2.MembershipEvent(
        channel_id="t1", user_id="u2", change=chat_pb2.MEMBERSHIP_CHANGE_ADDED
    )
    decoded = decode(Record(EVENTS_TOPIC, 0, 1, b"t1", event.SerializeToString()))
    assert isinstance(decoded, EventItem)
    assert isinstance(decode(Record(EVENTS_TOPIC, 0, 2, b"t1", b"")), DeadLetter)
    assert isinstance(decode(Record(SIGNALS_TOPIC, 0, 2, b"t1", b"\x08")), DeadLetter)
    assert isinstance(decode(Record("other.topic", 0, 1, None, b"x")), DeadLetter)
    good = message_record(chat_message("t1", msg_id="m1"), offset=1)
    assert isinstance(decode(as_record(good)), MessageItem)


@pytest.mark.parametrize(
    ("user_id", "session_id", "channel_id", "ok"),
    [
        ("u2", "s" * 32, "", True),
        ("", "s" * 32, "", False),
        ("u2", "", "", False),
        ("u2", "s" * 32, "t1", False),
    ],
)
def test_a_session_ended_event_names_a_user_and_a_login_and_no_channel(
    user_id: str, session_id: str, channel_id: str, ok: bool
) -> None:
    """session_ended decodes with a user and a login and no channel; otherwise dead letter."""
    event = chat_pb2.MembershipEvent(
        channel_id=channel_id,
        user_id=user_id,
        session_id=session_id,
        change=chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED,
    )
    decoded = decode(Record(EVENTS_TOPIC, 0, 1, b"u2", event.SerializeToString()))
    assert isinstance(decoded, EventItem if ok else DeadLetter)


@pytest.mark.parametrize(
    ("user_id", "name", "channel_id", "ok"),
    [
        ("u2", "Ada", "t1", True),
        ("", "Ada", "t1", False),
        ("u2", "", "t1", False),
        ("u2", "Ada", "", False),
    ],
)
def test_a_profile_event_names_a_team_a_user_and_their_name(
    user_id: str, name: str, channel_id: str, ok: bool
) -> None:
    """profile decodes with a team, a user and the name; otherwise dead letter."""
    event = chat_pb2.MembershipEvent(
        channel_id=channel_id,
        user_id=user_id,
        user_name=name,
        change=chat_pb2.MEMBERSHIP_CHANGE_PROFILE,
    )
    decoded = decode(Record(EVENTS_TOPIC, 0, 1, b"t1", event.SerializeToString()))
    assert isinstance(decoded, EventItem if ok else DeadLetter)


async def test_signals_go_to_their_channel_and_events_to_all() -> None:
    """Signals are routed to their channel and not stored; membership events to every stream."""
    s = _Setup()
    signal = chat_pb2.Signal(
        kind=chat_pb2.SIGNAL_KIND_TYPING, channel_id="t1", to="*", sender="u1", ts_ms=1
    )
    event = chat_pb2.MembershipEvent(
        channel_id="t1", user_id="u2", change=chat_pb2.MEMBERSHIP_CHANGE_REMOVED
    )
    outcome = await s.run(
        [
            FakeKafkaRecord(SIGNALS_TOPIC, 0, 1, b"t1", signal.SerializeToString()),
            FakeKafkaRecord(EVENTS_TOPIC, 0, 1, b"t1", event.SerializeToString()),
        ]
    )
    assert [(r.channel_id, r.delivery.WhichOneof("payload")) for r in outcome.routed] == [
        ("t1", "signal"),
        (None, "membership"),
    ]
    assert s.store.docs == []
    assert s.store.insert_calls == 0


async def test_store_down_raises_and_retry_does_not_resend_dead_letters() -> None:
    """While the store is down persist raises Unavailable; the retry completes the same batch."""
    s = _Setup()
    s.store.failures_left = 2
    pending = s.processor.prepare(
        [
            as_record(_garbage(1)),
            as_record(message_record(chat_message("t1", msg_id="m"), offset=2)),
        ]
    )
    for _ in range(2):
        with pytest.raises(Unavailable):
            await s.processor.persist(pending)
    outcome = await s.processor.persist(pending)
    assert _seqs(outcome) == [2]
    assert len(s.dlq.letters) == 1
    assert len(s.store.docs) == 1


async def test_dead_letter_failure_is_retried_before_anything_is_stored() -> None:
    """A failing DLQ producer fails the attempt (no commit may follow); the retry succeeds."""
    s = _Setup()
    s.dlq.failures_left = 1
    pending = s.processor.prepare([as_record(_garbage(1))])
    with pytest.raises(Unavailable):
        await s.processor.persist(pending)
    await s.processor.persist(pending)
    assert len(s.dlq.letters) == 1
