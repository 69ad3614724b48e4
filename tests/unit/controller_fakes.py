"""In-memory stand-ins for the controller's store, dead-letter sink, directory and consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from chatcore.buckets import BucketAllocator, BucketRange, Reservation
from chatcore.errors import Unavailable
from chatcore.kafka import MESSAGES_TOPIC
from chatcore.message_state import StoredMessage
from chatcore.mongo import DUPLICATE_KEY, Document
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.unread import ChannelHead, ReadState, Unread
from services.controller.batch import BatchProcessor
from services.controller.consumer import ConsumerLoop
from services.controller.directory import (
    AttachmentView,
    MembershipView,
    MessageView,
    ShutOut,
    TeamMembers,
)
from services.controller.lifecycle import LifecyclePass
from services.controller.metrics import ControllerMetrics
from services.controller.records import DeadLetter, Record
from services.controller.store import StoredPosition
from services.controller.write_behind import StateBuffer


class MemoryMessageStore:
    """Unique on ``id`` and on ``(channel_id, seq)``, like the real indexes; can be taken down."""

    def __init__(self) -> None:
        self.docs: list[Document] = []
        self.failures_left = 0
        self.insert_calls = 0
        self.insert_attempts: list[str] = []  # ids of every document given to an insert
        self.position_lookups: list[str] = []
        self.buckets_read: list[str] = []

    def _check_up(self) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise Unavailable("database error: ServerSelectionTimeoutError")

    async def insert_unordered(self, docs: Sequence[Document]) -> dict[int, int]:
        self._check_up()
        self.insert_calls += 1
        self.insert_attempts.extend(d["id"] for d in docs)
        failures: dict[int, int] = {}
        for index, doc in enumerate(docs):
            clash = any(
                d["id"] == doc["id"]
                or (d["channel_id"], d["seq"]) == (doc["channel_id"], doc["seq"])
                for d in self.docs
            )
            if clash:
                failures[index] = DUPLICATE_KEY
            else:
                self.docs.append(dict(doc))
        return failures

    async def positions(self, ids: Sequence[str]) -> dict[str, StoredPosition]:
        self._check_up()
        self.position_lookups.extend(ids)
        return {
            d["id"]: StoredPosition(d["channel_id"], d["seq"], d.get("bucket", ""))
            for d in self.docs
            if d["id"] in ids
        }

    async def in_bucket(self, bucket: str) -> dict[str, StoredPosition]:
        self._check_up()
        self.buckets_read.append(bucket)
        return {
            d["id"]: StoredPosition(d["channel_id"], d["seq"], d.get("bucket", ""))
            for d in self.docs
            if d.get("bucket") == bucket
        }


class MemoryChannelHeads:
    """Channel head documents (bucket ranges, counters) in memory; ``failures_left``
    reservations fail."""

    def __init__(self) -> None:
        self.ranges: dict[str, BucketRange] = {}
        self.failures_left = 0
        self.reservations: list[str] = []
        self.counters: dict[str, ChannelHead] = {}
        self.lookups: list[str] = []  # heads read by a query of their own
        self.gate: asyncio.Event | None = None  # holds counter saves while clear

    async def reserve(self, channel_id: str) -> Reservation:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise Unavailable("database error: ServerSelectionTimeoutError")
        current = self.ranges.get(channel_id, BucketRange(0, 0))
        self.ranges[channel_id] = BucketRange(current.low, current.high + 1)
        self.reservations.append(channel_id)
        return Reservation(current.high, self.counters.get(channel_id, ChannelHead()))

    async def range(self, channel_id: str) -> BucketRange | None:
        return self.ranges.get(channel_id)

    def held(self, channel_ids: Iterable[str]) -> dict[str, ChannelHead]:
        return {}  # no buffer in front: everything saved is stored

    async def head(self, channel_id: str) -> ChannelHead:
        self.lookups.append(channel_id)
        return self.counters.get(channel_id, ChannelHead())

    async def heads(self, channel_ids: Iterable[str]) -> dict[str, ChannelHead]:
        return {c: await self.head(c) for c in channel_ids}

    async def save_counters(self, channel_id: str, head: ChannelHead) -> None:
        self.counters[channel_id] = head

    async def save_counters_many(
        self, heads: Mapping[str, ChannelHead], *, in_flight: int = 4
    ) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.counters.update(heads)


class MemoryMessageStates:
    """Message state over a ``MemoryMessageStore``'s documents, and the change documents."""

    def __init__(self, store: MemoryMessageStore) -> None:
        self.store = store
        self.changes: dict[str, Document] = {}
        self.saves = 0

    def _doc(self, message_id: str) -> Document | None:
        return next((d for d in self.store.docs if d["id"] == message_id), None)

    async def by_id(self, ids: Sequence[str]) -> dict[str, StoredMessage]:
        self.store._check_up()
        found = (self._doc(i) for i in ids)
        return {d["id"]: StoredMessage.from_doc(d) for d in found if d is not None}

    async def save(self, states: Sequence[StoredMessage]) -> None:
        self.store._check_up()
        for state in states:
            doc = self._doc(state.id)
            if doc is not None:
                doc.update(state.changed_fields())
                self.saves += 1

    async def renumber(self, counts: Mapping[str, int]) -> None:
        for message_id, count in counts.items():
            doc = self._doc(message_id)
            if doc is not None:
                doc["n"] = count

    async def insert_changes(self, docs: Sequence[Document]) -> None:
        self.store._check_up()
        for doc in docs:
            self.changes.setdefault(str(doc["_id"]), dict(doc))


class MemoryReadStates:
    """Read documents in memory; ``failures_left`` saves fail; ``gate`` holds saves while clear."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], ReadState] = {}
        self.loaded: list[tuple[str, str]] = []  # every (channel, user) looked up, in order
        self.saved: list[tuple[str, str]] = []  # every (channel, user) written, in order
        self.in_flight: list[int] = []  # each save's commands in flight
        self.failures_left = 0
        self.gate: asyncio.Event | None = None

    async def load(self, channel_id: str, users: Iterable[str]) -> dict[str, ReadState | None]:
        users = list(users)
        self.loaded.extend((channel_id, u) for u in users)
        return {u: self.states.get((channel_id, u)) for u in users}

    async def load_many(
        self, wanted: Mapping[str, Iterable[str]]
    ) -> dict[str, dict[str, ReadState | None]]:
        return {c: await self.load(c, users) for c, users in wanted.items()}

    async def save(self, channel_id: str, states: Mapping[str, ReadState]) -> None:
        for user, state in states.items():
            self.states[(channel_id, user)] = state

    async def save_many(
        self, states: Mapping[str, Mapping[str, ReadState]], *, in_flight: int = 4
    ) -> None:
        self.in_flight.append(in_flight)
        if self.gate is not None:
            await self.gate.wait()
        if self.failures_left > 0:
            self.failures_left -= 1
            raise Unavailable("database error: AutoReconnect")
        for channel_id, by_user in states.items():
            self.saved.extend((channel_id, u) for u in by_user)
            await self.save(channel_id, by_user)

    async def of_user(self, user_id: str) -> dict[str, ReadState]:
        return {c: st for (c, u), st in self.states.items() if u == user_id}


class MemoryMembers:
    def __init__(self, members: Iterable[tuple[str, str]] = ()) -> None:
        self.members = set(members)

    async def is_member(self, channel_id: str, user_id: str) -> bool:
        return (channel_id, user_id) in self.members


@dataclass
class Processing:
    """A batch processor over in-memory stores, and the stores."""

    store: MemoryMessageStore
    heads: MemoryChannelHeads
    states: MemoryMessageStates
    reads: MemoryReadStates
    members: MemoryMembers
    processor: BatchProcessor
    # With ``held=True``: the buffer in front of ``reads`` and ``heads`` (write behind).
    held: StateBuffer | None = None


def make_processor(
    metrics: ControllerMetrics,
    *,
    store: MemoryMessageStore | None = None,
    dead_letters: MemoryDeadLetters | None = None,
    bucket_size: int = 128,
    held: bool = False,
) -> Processing:
    store = store if store is not None else MemoryMessageStore()
    heads, reads, members = MemoryChannelHeads(), MemoryReadStates(), MemoryMembers()
    stores = _Stores(store, heads, MemoryMessageStates(store), reads, members)
    dead_letters = dead_letters if dead_letters is not None else MemoryDeadLetters()
    return _wired(stores, metrics, dead_letters, bucket_size=bucket_size, held=held)


def restarted(p: Processing, *, bucket_size: int = 128) -> Processing:
    """Another controller process over the same stores, with its own caches and write-behind
    buffer: what a restart or a partition's next owner sees."""
    stores = _Stores(p.store, p.heads, p.states, p.reads, p.members)
    metrics = ControllerMetrics.create(CollectorRegistry())
    return _wired(stores, metrics, MemoryDeadLetters(), bucket_size=bucket_size, held=True)


@dataclass
class _Stores:
    store: MemoryMessageStore
    heads: MemoryChannelHeads
    states: MemoryMessageStates
    reads: MemoryReadStates
    members: MemoryMembers


def _wired(
    s: _Stores,
    metrics: ControllerMetrics,
    dead_letters: MemoryDeadLetters,
    *,
    bucket_size: int,
    held: bool,
) -> Processing:
    buffer = StateBuffer(s.reads, s.heads) if held else None
    processor = BatchProcessor(
        store=s.store,
        buckets=BucketAllocator(s.heads, size=bucket_size),
        heads=buffer if buffer is not None else s.heads,
        lifecycle=LifecyclePass(s.states, buffer if buffer is not None else s.reads, s.members),
        dead_letters=dead_letters,
        metrics=metrics,
    )
    return Processing(s.store, s.heads, s.states, s.reads, s.members, processor, buffer)


class MemoryDeadLetters:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []
        self.failures_left = 0

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise Unavailable("dead-letter produce failed: KafkaTimeoutError")
        self.letters.extend(letters)


@dataclass
class MemoryDirectory:
    teams: dict[str, Document] = field(default_factory=dict)
    attachments: dict[str, AttachmentView] = field(default_factory=dict)
    disabled_users: set[str] = field(default_factory=set)
    ended: dict[str, tuple[str, ...]] = field(default_factory=dict)
    messages: dict[tuple[str, str], MessageView] = field(default_factory=dict)
    unread_counts: dict[tuple[str, str], Unread] = field(default_factory=dict)
    down: bool = False
    queries: list[str] = field(default_factory=list)

    def _check_up(self) -> None:
        if self.down:
            raise Unavailable("database error: AutoReconnect")

    async def unread(self, user_id: str, channel_ids: Sequence[str]) -> dict[str, Unread]:
        self._check_up()
        return {c: self.unread_counts.get((c, user_id), Unread(0, 0, 0)) for c in channel_ids}

    async def message(self, channel_id: str, message_id: str) -> MessageView | None:
        self._check_up()
        return self.messages.get((channel_id, message_id))

    async def memberships(self, user_id: str) -> list[MembershipView]:
        self._check_up()
        self.queries.append(user_id)
        return [
            MembershipView(channel_id=team_id, active=doc["active"])
            for team_id, doc in sorted(self.teams.items())
            if user_id in doc["members"]
        ]

    async def disabled(self, user_id: str) -> bool:
        self._check_up()
        return user_id in self.disabled_users

    async def ended_sessions(self, user_id: str) -> tuple[str, ...]:
        self._check_up()
        return self.ended.get(user_id, ())

    async def shut_out(self) -> ShutOut:
        self._check_up()
        return ShutOut(disabled=frozenset(self.disabled_users), ended=dict(self.ended))

    async def members(self, channel_id: str) -> TeamMembers | None:
        self._check_up()
        doc = self.teams.get(channel_id)
        if doc is None:
            return None
        return TeamMembers(user_ids=tuple(doc["members"]), active=doc["active"])

    async def attachment(self, attachment_id: str) -> AttachmentView | None:
        self._check_up()
        return self.attachments.get(attachment_id)


@dataclass(frozen=True)
class FakeKafkaRecord:
    """Shaped like aiokafka's ``ConsumerRecord`` as far as the controller reads it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class FakeConsumer:
    """Hands out queued batches; records commits, pauses and seeks."""

    def __init__(self, partitions: Sequence[TopicPartition]) -> None:
        self.assigned: set[TopicPartition] = set(partitions)
        self.batches: list[dict[TopicPartition, list[FakeKafkaRecord]]] = []
        self.commits: list[dict[TopicPartition, int]] = []
        self.paused: set[TopicPartition] = set()
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.polls = 0
        self.polls_while_paused = 0
        self.commit_error: Exception | None = None
        self.events: list[str] = []

    def queue(self, records: Sequence[FakeKafkaRecord]) -> None:
        batch: dict[TopicPartition, list[FakeKafkaRecord]] = {}
        for r in records:
            batch.setdefault(TopicPartition(r.topic, r.partition), []).append(r)
        self.batches.append(batch)

    async def getmany(
        self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[Any, list[Any]]:
        self.polls += 1
        if self.paused:
            self.polls_while_paused += 1
            return {}
        if self.batches:
            self.events.append("poll")
            return dict(self.batches.pop(0))
        await asyncio.sleep(0.001)
        return {}

    async def commit(self, offsets: dict[Any, int] | None = None) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        self.events.append("commit")
        self.commits.append(dict(offsets or {}))

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    def pause(self, *partitions: Any) -> None:
        self.paused.update(partitions)

    def resume(self, *partitions: Any) -> None:
        self.paused.difference_update(partitions)

    def seek(self, partition: Any, offset: int) -> None:
        self.seeks.append((partition, offset))

    def highwater(self, partition: Any) -> int | None:
        return None

    async def position(self, partition: Any) -> int:
        return 0


class FakeClock:
    """Monotonic time that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def chat_message(
    channel_id: str, *, msg_id: str, text: str = "hi", sender: str = "u1", to: str = "*"
) -> chat_pb2.ChatMessage:
    return chat_pb2.ChatMessage(
        id=msg_id,
        channel_id=channel_id,
        to=to,
        type=chat_pb2.MESSAGE_TYPE_TEXT,
        data=text,
        sender=sender,
        ts_ms=1_700_000_000_000,
    )


def message_record(
    message: chat_pb2.ChatMessage, *, offset: int, partition: int = 0
) -> FakeKafkaRecord:
    return FakeKafkaRecord(
        topic=MESSAGES_TOPIC,
        partition=partition,
        offset=offset,
        key=message.channel_id.encode(),
        value=message.SerializeToString(),
        headers=(("correlation_id", b"c-1"),),
    )


def as_record(record: FakeKafkaRecord) -> Record:
    return Record.from_kafka(record)


def change_record(
    channel_id: str,
    message_id: str,
    kind: chat_pb2.ChangeKind.ValueType,
    *,
    offset: int,
    actor: str = "u1",
    data: str = "",
    emoji: str = "",
) -> FakeKafkaRecord:
    change = chat_pb2.MessageChange(
        id=f"c{offset}",
        channel_id=channel_id,
        message_id=message_id,
        kind=kind,
        actor=actor,
        data=data,
        emoji=emoji,
        ts_ms=1_700_000_060_000,
    )
    return FakeKafkaRecord(
        MESSAGES_TOPIC, 0, offset, channel_id.encode(), change.SerializeToString(),
        (("kind", b"change"),),
    )  # fmt: skip


def read_record(
    channel_id: str, user_id: str, seq: int, count: int, *, offset: int, joined: bool = False
) -> FakeKafkaRecord:
    marker = chat_pb2.ReadMarker(
        channel_id=channel_id, user_id=user_id, seq=seq, count=count, joined=joined
    )
    return FakeKafkaRecord(
        MESSAGES_TOPIC, 0, offset, channel_id.encode(), marker.SerializeToString(),
        (("kind", b"read"),),
    )  # fmt: skip


async def run_loop_until(loop: ConsumerLoop, condition: Callable[[], bool]) -> None:
    """Run the consume loop until ``condition`` holds (at most ~3 s), then stop it."""
    task = asyncio.create_task(loop.run())
    try:
        for _ in range(3000):
            if condition():
                break
            await asyncio.sleep(0.001)
        assert condition(), "condition not reached"
    finally:
        loop.request_stop()
        await asyncio.wait_for(task, 5)


def membership_events(batches: list[chat_pb2.DeliveryBatch]) -> list[tuple[str, int, str]]:
    """(user_id, change, session_id) of each membership delivery, in order."""
    return [
        (d.membership.user_id, d.membership.change, d.membership.session_id)
        for b in batches
        for d in b.deliveries
    ]
