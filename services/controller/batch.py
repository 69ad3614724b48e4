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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chatcore.buckets import BucketAllocator, Placement
from chatcore.logging import get_logger
from chatcore.messages import BROADCAST, to_document
from chatcore.mongo import DUPLICATE_KEY
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.unread import ChannelHead
from services.controller.counters import Counted, count_batch
from services.controller.lifecycle import LifecyclePass
from services.controller.lifecycle_store import MessageStates
from services.controller.metrics import ControllerMetrics
from services.controller.records import (
    ChangeItem,
    DeadLetter,
    EventItem,
    Item,
    MessageItem,
    ReadItem,
    Record,
    SignalItem,
    decode,
)
from services.controller.registry import Routed
from services.controller.store import MessageStore, StoredPosition
from services.controller.takeover import Takeover, below_stored

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
    # The history buckets given to its records by the first attempt: a retry after part of the
    # insert landed files the rest in the same buckets (new ones could put lower seqs in a
    # later bucket than higher ones, and history pages walk buckets in order).
    placement: Placement | None = None
    # Set once the messages are stored: each record's team-message count and history bucket,
    # and the channels' heads as they will be after the batch.
    counts: dict[int, int] | None = None
    buckets: dict[int, str] = field(default_factory=dict)
    heads_after: dict[str, ChannelHead] = field(default_factory=dict)
    # Set once the life-cycle pass and the heads are written: what follows each record.
    extras: dict[int, list[Routed]] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a persisted batch yields: deliveries in consumption order, and counts."""

    routed: tuple[Routed, ...]
    counts: Mapping[Verdict, int]
    dead_letters: int
    # A member marked something read: their state is stored before the ``read`` frames go out,
    # so a client that refreshes its counts on that frame sees them (write_behind.py).
    marks_read: bool = False


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


class HeadStore(Protocol):
    def held(self, channel_ids: Iterable[str]) -> dict[str, ChannelHead]:
        """The heads waiting to be written, newer than the stored ones (no I/O)."""

    async def heads(self, channel_ids: Iterable[str]) -> dict[str, ChannelHead]: ...

    async def save_counters_many(self, heads: Mapping[str, ChannelHead]) -> None: ...


def _counted(items: Sequence[Item]) -> list[Counted]:
    counted = []
    for index, item in enumerate(items):
        if isinstance(item, MessageItem):
            m = item.message
            counted.append(
                Counted(index, m.channel_id, item.record.offset, m.to == BROADCAST, message=True)
            )
        elif isinstance(item, ChangeItem):
            counted.append(
                Counted(index, item.change.channel_id, item.record.offset, False, message=False)
            )
    return counted


class BatchProcessor:
    def __init__(
        self,
        *,
        store: MessageStore,
        buckets: BucketAllocator,
        heads: HeadStore,
        lifecycle: LifecyclePass,
        dead_letters: DeadLetterSink,
        metrics: ControllerMetrics,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._store = store
        self._buckets = buckets
        self._heads = heads
        self._lifecycle = lifecycle
        self._dlq = dead_letters
        self._metrics = metrics
        self._clock = clock
        # The heads of the channels this controller stored into since its partitions last
        # moved: only it writes them while it owns their partitions.
        self._known_heads: dict[str, ChannelHead] = {}
        self._takeover = Takeover(store)

    def partitions_moved(self) -> None:
        """Partitions were assigned or revoked: open fresh history buckets and read every head
        and read state again from now on (another controller may have written them meanwhile)."""
        self._buckets.forget()
        self._known_heads.clear()
        self._takeover.partitions_moved()
        self._lifecycle.partitions_moved()

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
        """Dead-letter, store, classify, apply changes and read state; raises ``Unavailable``
        (retry the same batch: every step already done is skipped or redone idempotently)."""
        if batch.dead_letters and not batch.dead_letters_sent:
            await self._send_dead(batch.dead_letters)
            batch.dead_letters_sent = True

        late_dead: list[DeadLetter] = []
        if batch.counts is None:
            late_dead = await self._store_messages(batch)
        if batch.extras is None:
            await self._apply_lifecycle(batch)

        routed: list[Routed] = []
        extras = batch.extras or {}
        for index, item in enumerate(batch.items):
            r = _routed(item, batch.verdicts.get(index))
            if r is not None:
                routed.append(r)
            routed.extend(extras.get(index, ()))
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
            marks_read=any(isinstance(item, ReadItem) for item in batch.items),
        )

    async def _store_messages(self, batch: PendingBatch) -> list[DeadLetter]:
        """Count, place and insert the batch's messages; classify each."""
        counted = _counted(batch.items)
        if not counted:
            batch.counts = {}
            return []
        started = self._clock()
        channels = sorted({c.channel_id for c in counted})
        missing = [c for c in channels if c not in self._known_heads]
        # Taken before reserving: a head not held now was stored before the reservation read it.
        held = self._heads.held(missing) if missing else {}
        placement = batch.placement
        if placement is None:
            placement = await self._buckets.assign([c.channel_id for c in counted])
            batch.placement = placement
        if missing:
            await self._learn_heads(missing, held, placement.heads)
        heads = {c: self._known_heads[c] for c in channels}
        numbers, after = count_batch(counted, heads)
        buckets = {c.index: key for c, key in zip(counted, placement.keys, strict=True)}

        messages = [
            (i, item) for i, item in enumerate(batch.items) if isinstance(item, MessageItem)
        ]
        late_dead: list[DeadLetter] = []
        verdicts: dict[int, Verdict] = {}
        if messages:
            known = await self._takeover.stored_already(messages, buckets)
            if known:
                # Every record: a stored one lands on its own bucket, where the thread change
                # of a stored reply (same seq) belongs too.
                buckets.update(
                    below_stored(((c.index, c.channel_id, c.seq) for c in counted), known.values())
                )
            fresh = [pos for pos, (_, item) in enumerate(messages) if item.message.id not in known]
            docs = [
                to_document(item.message, item.record.offset, buckets[i], numbers[i])
                for i, item in (messages[pos] for pos in fresh)
            ]
            inserted = await self._store.insert_unordered(docs) if docs else {}
            # Positions in ``messages``; one stored already is as if its insert had clashed.
            failures = {fresh[k]: code for k, code in inserted.items()}
            failures.update(
                (pos, DUPLICATE_KEY)
                for pos, (_, item) in enumerate(messages)
                if item.message.id in known
            )
            duplicate_ids = sorted(
                {messages[pos][1].message.id for pos, c in failures.items() if c == DUPLICATE_KEY}
                - known.keys()
            )
            stored = dict(known)
            if duplicate_ids:
                stored.update(await self._store.positions(duplicate_ids))
            for pos, (index, item) in enumerate(messages):
                code = failures.get(pos)
                verdict = classify(item, code, stored)
                verdicts[index] = verdict
                if verdict is Verdict.REJECTED:
                    late_dead.append(DeadLetter(item.record, _rejection(code)))
            excluded = {i for i, v in verdicts.items() if not v.fans_out}
            if excluded:
                # Not stored here: they must not hold a number. Count again without them and
                # correct the numbers already stored on the messages after them.
                renumbered, after = count_batch(counted, heads, excluded)
                # Redelivered ones too: a retry after the insert landed finds the first
                # attempt's numbers on them (for a message counted before this run both
                # counts give the head's number, so nothing is written for it).
                fixes = {
                    item.message.id: renumbered[i]
                    for i, item in messages
                    if verdicts[i] in (Verdict.INSERTED, Verdict.REDELIVERED)
                    and renumbered[i] != numbers[i]
                }
                if fixes:
                    await self._lifecycle_messages().renumber(fixes)
                numbers = renumbered
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
        self._metrics.persist_latency.observe(self._clock() - started)
        # Recorded only once the rejected ones are safely dead-lettered: a retry before this
        # point redoes the insert, and the already inserted ones come back as redeliveries.
        batch.verdicts = verdicts
        batch.counts = numbers
        batch.buckets = buckets
        batch.heads_after = after
        return late_dead

    async def _learn_heads(
        self,
        channels: Sequence[str],
        held: Mapping[str, ChannelHead],
        seen: Mapping[str, ChannelHead],
    ) -> None:
        """The heads of channels new to this controller: what waits to be written, else what
        the bucket reservation read (a channel taken over always reserves, so on failover or
        scale-out this costs no query of its own), else one lookup each."""
        found = {c: held[c] if c in held else seen[c] for c in channels if c in held or c in seen}
        rest = [c for c in channels if c not in found]
        if rest:
            found.update(await self._heads.heads(rest))
        self._known_heads.update(found)

    def _lifecycle_messages(self) -> MessageStates:
        return self._lifecycle.messages

    async def _apply_lifecycle(self, batch: PendingBatch) -> None:
        heads = dict(batch.heads_after)
        stored = {i: v.fans_out for i, v in batch.verdicts.items()}
        extras = await self._lifecycle.run(
            batch.items, stored, batch.counts or {}, batch.buckets, heads
        )
        changed = {c: h for c, h in heads.items() if self._known_heads.get(c) != h}
        await self._heads.save_counters_many(changed)
        self._known_heads.update(changed)
        batch.extras = extras

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
