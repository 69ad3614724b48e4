"""Reading ``chat.presence.v1`` into a ``PresenceBook``: the asyncio adapter of chatcore.presence.

Every relay and management instance runs one, outside any consumer group. It starts one ttl back
in the topic (``offsets_for_times``): every live relay published a snapshot within that time, so
once the reader has read what the topic held when it started (``warm``, a second or so after
start) its book is complete. What it replays changes the book silently; transitions are reported
only from then on, so a restarted reader announces nobody as coming online.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from chatcore.kafka import PRESENCE_TOPIC
from chatcore.logging import get_logger
from chatcore.presence import PresenceBook, Transition
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.tasks import cancel_and_wait

_log = get_logger("chatcore.presence_feed")


def now_ms() -> int:
    return int(time.time() * 1000)


class PresenceFeed:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        *,
        ttl_s: float,
        on_transitions: Callable[[Sequence[Transition]], None],
        expire_every_s: float = 1.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.book = PresenceBook()
        self._consumer = consumer
        self._ttl_ms = int(ttl_s * 1000)
        self._on_transitions = on_transitions
        self._expire_every_s = expire_every_s
        self._clock = clock
        # Per partition, the end offset when the feed started, until the feed has read up to it.
        self._catching_up: dict[TopicPartition, int] = {}
        self._warm_after_ms: int | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def warm(self) -> bool:
        """The book holds every live relay's users; transitions are reported."""
        return self._warm_after_ms is not None and self._clock() >= self._warm_after_ms

    async def start(self, assignment_wait_s: float = 5.0) -> None:
        # Outside any group a subscription is every partition of the topic, assigned once the
        # consumer has the topic's metadata.
        self._consumer.subscribe([PRESENCE_TOPIC])
        await self._consumer.start()
        started_ms = self._clock()
        for _ in range(int(assignment_wait_s / 0.02)):
            if self._consumer.assignment():
                break
            await asyncio.sleep(0.02)  # aiokafka has no event for an assignment without a group
        tps = sorted(self._consumer.assignment())
        if not tps:
            # No topic yet (it is created at deployment): read what comes, from its end, and trust
            # the book only after a whole ttl, once every live relay has sent a snapshot.
            _log.warning("presence_topic_missing", topic=PRESENCE_TOPIC)
            self._warm_after_ms = started_ms + self._ttl_ms
        else:
            ends = await self._consumer.end_offsets(tps)
            since = max(0, started_ms - self._ttl_ms)
            found = await self._consumer.offsets_for_times({tp: since for tp in tps})
            for tp in tps:
                at = found.get(tp)
                start_at = ends[tp] if at is None else min(at.offset, ends[tp])
                self._consumer.seek(tp, start_at)
                if start_at < ends[tp]:
                    self._catching_up[tp] = ends[tp]
            self._caught_up_check()
        self._task = asyncio.create_task(self._run(), name="presence-feed")

    def _caught_up_check(self) -> None:
        if self._warm_after_ms is None and not self._catching_up:
            self.book.expire(self._clock())  # relays silent for a ttl were gone before we started
            self._warm_after_ms = self._clock()

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self._consumer.stop()

    def _report(self, transitions: list[Transition]) -> None:
        if transitions and self.warm:
            try:
                self._on_transitions(transitions)
            except Exception:
                # The feed outlives one bad delivery: presence is soft state, the next
                # transitions (and snapshots) go on.
                _log.exception("presence_report_failed", transitions=len(transitions))

    def _take(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> list[Transition]:
        """One record into the book; the transitions to report (none while replaying)."""
        presence = chat_pb2.RelayPresence()
        try:
            presence.ParseFromString(record.value or b"")
        except Exception:
            _log.warning("presence_record_unreadable", offset=record.offset)
            return []
        if not presence.relay_id:
            return []
        end = self._catching_up.get(tp)
        if end is None or record.offset >= end:
            return self.book.apply(presence, self._clock())
        # Replayed: its ttl counts from when it was published, and it reports nothing.
        self.book.apply(presence, record.timestamp)
        return []

    async def _run(self) -> None:
        last_expiry = 0.0
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500)
            except KafkaError as exc:
                _log.warning("presence_read_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            transitions: list[Transition] = []
            for tp, records in batches.items():
                for record in records:
                    transitions += self._take(tp, record)
            for tp, end in list(self._catching_up.items()):
                # By position, not by the last record's offset: offsets may have gaps.
                if await self._consumer.position(tp) >= end:
                    del self._catching_up[tp]
                    self._caught_up_check()
            if self.warm and time.monotonic() - last_expiry >= self._expire_every_s:
                last_expiry = time.monotonic()
                transitions += self.book.expire(self._clock())
            self._report(transitions)
