"""In-memory stand-ins for the controller's store, dead-letter sink, directory and consumer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition

from chatcore.buckets import BucketRange
from chatcore.errors import Unavailable
from chatcore.kafka import MESSAGES_TOPIC
from chatcore.mongo import Document
from chatcore.proto.chat.v1 import chat_pb2
from services.controller.directory import AttachmentView, MembershipView, TeamMembers
from services.controller.records import DeadLetter, Record
from services.controller.store import DUPLICATE_KEY, StoredPosition


class MemoryMessageStore:
    """Unique on ``id`` and on ``(channel_id, seq)``, like the real indexes; can be taken down."""

    def __init__(self) -> None:
        self.docs: list[Document] = []
        self.failures_left = 0
        self.insert_calls = 0

    def _check_up(self) -> None:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise Unavailable("database error: ServerSelectionTimeoutError")

    async def insert_unordered(self, docs: Sequence[Document]) -> dict[int, int]:
        self._check_up()
        self.insert_calls += 1
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
        return {
            d["id"]: StoredPosition(d["channel_id"], d["seq"]) for d in self.docs if d["id"] in ids
        }


class MemoryChannelHeads:
    """Channel head documents (bucket ranges) in memory; ``failures_left`` reservations fail."""

    def __init__(self) -> None:
        self.ranges: dict[str, BucketRange] = {}
        self.failures_left = 0
        self.reservations: list[str] = []

    async def reserve(self, channel_id: str) -> int:
        if self.failures_left > 0:
            self.failures_left -= 1
            raise Unavailable("database error: ServerSelectionTimeoutError")
        current = self.ranges.get(channel_id, BucketRange(0, 0))
        self.ranges[channel_id] = BucketRange(current.low, current.high + 1)
        self.reservations.append(channel_id)
        return current.high

    async def range(self, channel_id: str) -> BucketRange | None:
        return self.ranges.get(channel_id)


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
    down: bool = False
    queries: list[str] = field(default_factory=list)

    def _check_up(self) -> None:
        if self.down:
            raise Unavailable("database error: AutoReconnect")

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
