"""One consumed batch: decode, dead-letter, persist, classify, and what to fan out.

The order is the delivery guarantee: the consumer loop fans out only what ``persist`` returns and
commits offsets only after that, so a crash anywhere leads to the batch being consumed again, never
to a committed offset whose message is not stored.

Classifying duplicates (FerretDB reports a duplicate key by position only, not which index):

* stored under the same id at the same ``(channel_id, seq)``: the same Kafka record consumed again
  (a crash or rebalance between the write and the commit). Fan it out again: the first fan-out may
  never have happened, and relays' clients dedupe by id (at-least-once delivery).
* stored under the same id at another seq: a client retry (same ``client_msg_id``, so same id) that
  Kafka holds as a second record. Exactly-once storage means it is not fanned out.
* no message with that id: the ``(channel_id, seq)`` slot is held by a different message, which
  only happens when the topic was recreated under an old database. Dead-lettered, never dropped.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chatcore.buckets import BucketAllocator
from chatcore.logging import get_logger
from chatcore.messages import to_document
from chatcore.proto.chat.v1 import chat_pb2
from services.controller.metrics import ControllerMetrics
from services.controller.records import (
    DeadLetter,
    EventItem,
    Item,
    MessageItem,
    Record,
    SignalItem,
    decode,
)
from services.controller.registry import Routed
from services.controller.store import DUPLICATE_KEY, MessageStore, StoredPosition

_log = get_logger("controller.batch")


class DeadLetterSink(Protocol):
    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Write the records durably to the dead-letter topic, or raise ``Unavailable``."""


class Verdict(enum.Enum):
    """What became of one chat message of a batch."""

    INSERTED = "inserted"
    REDELIVERED = "redelivered"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"

    @property
    def fans_out(self) -> bool:
        return self in (Verdict.INSERTED, Verdict.REDELIVERED)


def classify(
    item: MessageItem, error_code: int | None, stored: Mapping[str, StoredPosition]
) -> Verdict:
    """The verdict for one message from its insert result and the stored positions of its id."""
    if error_code is None:
        return Verdict.INSERTED
    if error_code != DUPLICATE_KEY:
        return Verdict.REJECTED
    position = stored.get(item.message.id)
    if position is None:
        return Verdict.REJECTED
    if position == StoredPosition(item.message.channel_id, item.record.offset):
        return Verdict.REDELIVERED
    return Verdict.DUPLICATE


def _rejection(error_code: int | None) -> str:
    if error_code == DUPLICATE_KEY:
        return "seq_conflict: (channel_id, seq) is held by another message"
    return f"store_rejected: database error code {error_code}"


@dataclass(slots=True)
class PendingBatch:
    """A decoded batch and how far its side effects got (so a retry does not repeat them)."""

    items: list[Item]
    dead_letters: list[DeadLetter]
    records: int
    dead_letters_sent: bool = False
    verdicts: dict[int, Verdict] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a persisted batch yields: deliveries in consumption order, and counts."""

    routed: tuple[Routed, ...]
    counts: Mapping[Verdict, int]
    dead_letters: int


def _routed(item: Item, verdict: Verdict | None) -> Routed | None:
    if isinstance(item, MessageItem):
        if verdict is None or not verdict.fans_out:
            return None
        persisted = chat_pb2.PersistedMessage(message=item.message, seq=item.record.offset)
        return Routed.to_channel(item.message.channel_id, chat_pb2.Delivery(message=persisted))
    if isinstance(item, SignalItem):
        return Routed.to_channel(item.signal.channel_id, chat_pb2.Delivery(signal=item.signal))
    if isinstance(item, EventItem):
        return Routed.to_all(chat_pb2.Delivery(membership=item.event))
    return None


class BatchProcessor:
    def __init__(
        self,
        *,
        store: MessageStore,
        buckets: BucketAllocator,
        dead_letters: DeadLetterSink,
        metrics: ControllerMetrics,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._store = store
        self._buckets = buckets
        self._dlq = dead_letters
        self._metrics = metrics
        self._clock = clock

    def partitions_moved(self) -> None:
        """Partitions were assigned or revoked: open fresh history buckets from now on."""
        self._buckets.forget()

    def prepare(self, records: Sequence[Record]) -> PendingBatch:
        """Decode every record (pure); undecodable ones become dead letters."""
        items: list[Item] = []
        dead: list[DeadLetter] = []
        for record in records:
            decoded = decode(record)
            if isinstance(decoded, DeadLetter):
                dead.append(decoded)
            else:
                items.append(decoded)
        return PendingBatch(items=items, dead_letters=dead, records=len(records))

    async def persist(self, batch: PendingBatch) -> Outcome:
        """Dead-letter, store and classify; raises ``Unavailable`` (retry the same batch)."""
        if batch.dead_letters and not batch.dead_letters_sent:
            await self._send_dead(batch.dead_letters)
            batch.dead_letters_sent = True

        messages = [
            (i, item) for i, item in enumerate(batch.items) if isinstance(item, MessageItem)
        ]
        late_dead: list[DeadLetter] = []
        if messages and not batch.verdicts:
            started = self._clock()
            buckets = await self._buckets.assign([item.message.channel_id for _, item in messages])
            docs = [
                to_document(item.message, item.record.offset, bucket)
                for (_, item), bucket in zip(messages, buckets, strict=True)
            ]
            failures = await self._store.insert_unordered(docs)
            duplicate_ids = sorted(
                {messages[pos][1].message.id for pos, c in failures.items() if c == DUPLICATE_KEY}
            )
            stored = await self._store.positions(duplicate_ids) if duplicate_ids else {}
            self._metrics.persist_latency.observe(self._clock() - started)
            verdicts: dict[int, Verdict] = {}
            for pos, (index, item) in enumerate(messages):
                code = failures.get(pos)
                verdict = classify(item, code, stored)
                verdicts[index] = verdict
                if verdict is Verdict.REJECTED:
                    late_dead.append(DeadLetter(item.record, _rejection(code)))
            if logging.getLogger("controller.batch").isEnabledFor(logging.DEBUG):
                # Per message, so DEBUG: the relay's message_accepted line has the same id.
                for index, item in messages:
                    _log.debug(
                        "message_persisted",
                        correlation_id=item.record.correlation_id,
                        channel_id=item.message.channel_id,
                        seq=item.record.offset,
                        outcome=verdicts[index].value,
                    )
            if late_dead:
                await self._send_dead(late_dead)
            # Recorded only once the rejected ones are safely dead-lettered: a retry before this
            # point redoes the insert, and the already inserted ones come back as redeliveries.
            batch.verdicts = verdicts

        routed = [
            r
            for index, item in enumerate(batch.items)
            if (r := _routed(item, batch.verdicts.get(index))) is not None
        ]
        counts = {v: 0 for v in Verdict}
        for verdict in batch.verdicts.values():
            counts[verdict] += 1
        for verdict, n in counts.items():
            if n:
                self._metrics.messages.labels(verdict.value).inc(n)
        self._metrics.batch_size.observe(batch.records)
        return Outcome(
            routed=tuple(routed),
            counts=counts,
            dead_letters=len(batch.dead_letters) + len(late_dead),
        )

    async def _send_dead(self, letters: Sequence[DeadLetter]) -> None:
        await self._dlq.send(letters)
        for letter in letters:
            self._metrics.dead_letters.labels(letter.record.topic).inc()
            _log.warning(
                "record_dead_lettered",
                topic=letter.record.topic,
                partition=letter.record.partition,
                offset=letter.record.offset,
                error=letter.error,
                correlation_id=letter.record.correlation_id,
            )
