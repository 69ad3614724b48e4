"""Reading ``chat.presence.v1`` into a ``PresenceBook``: the asyncio adapter of chatcore.presence.

Every relay and management instance runs one, outside any consumer group, from the topic's end:
presence is soft state that the relays' snapshots (every heartbeat) rebuild. The book's status is
trusted, and transitions reported, only once the feed has read for a whole ttl (``warm``): before
that a reader has not yet heard from every relay, and would announce everyone as coming online.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from chatcore.kafka import PRESENCE_TOPIC
from chatcore.logging import get_logger
from chatcore.presence import PresenceBook, Transition
from chatcore.proto.chat.v1 import chat_pb2

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
        self._started_ms = 0
        self._task: asyncio.Task[None] | None = None

    @property
    def warm(self) -> bool:
        return self._started_ms > 0 and self._clock() - self._started_ms >= self._ttl_ms

    async def start(self) -> None:
        # Outside any group, a subscription is every partition of the topic, read from its end
        # (the reader's ``auto_offset_reset`` is "latest").
        self._consumer.subscribe([PRESENCE_TOPIC])
        await self._consumer.start()
        self._started_ms = self._clock()
        self._task = asyncio.create_task(self._run(), name="presence-feed")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._consumer.stop()

    def _report(self, transitions: list[Transition]) -> None:
        if transitions and self.warm:
            try:
                self._on_transitions(transitions)
            except Exception:
                # The feed outlives one bad delivery: presence is soft state, the next
                # transitions (and snapshots) go on.
                _log.exception("presence_report_failed", transitions=len(transitions))

    async def _run(self) -> None:
        last_expiry = 0.0
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=500)
            except KafkaError as exc:
                _log.warning("presence_read_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            now = self._clock()
            transitions: list[Transition] = []
            for records in batches.values():
                for record in records:
                    presence = chat_pb2.RelayPresence()
                    try:
                        presence.ParseFromString(record.value or b"")
                    except Exception:
                        _log.warning("presence_record_unreadable", offset=record.offset)
                        continue
                    if presence.relay_id:
                        transitions += self.book.apply(presence, now)
            if time.monotonic() - last_expiry >= self._expire_every_s:
                last_expiry = time.monotonic()
                transitions += self.book.expire(now)
            self._report(transitions)
