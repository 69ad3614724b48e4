"""This relay's side of presence (DESIGN 5b): who has a socket here, published on
``chat.presence.v1`` for every reader's ``chatcore.presence.PresenceBook``.

``PresenceReporter`` is pure bookkeeping: a user comes online here with their first greeted
socket and leaves once their last socket has been closed for ``grace`` (so a reconnect, a page
reload, a 1012 restart of a socket within it, changes nothing anyone sees); changes are batched
into one delta per tick, and every heartbeat a snapshot of everyone here goes out (``ttl``: three
heartbeats, after which readers take a silent relay for dead). Nothing is written per connect
to any database; the records are small and one per tick at most.

``PresencePublisher`` is the asyncio adapter: the tick loop, the heartbeat, and on drain a last
snapshot whose short ttl lets users who do not reconnect elsewhere go offline soon, while those who
do never flap.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

from chatcore.kafka import PRESENCE_TOPIC
from chatcore.logging import get_logger
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.tasks import cancel_and_wait
from services.relay.publisher import ProducerPort

_log = get_logger("relay.presence")


class PresenceReporter:
    def __init__(
        self,
        relay_id: str,
        channels_of: Callable[[str], tuple[str, ...]],
        *,
        grace_ms: int,
        ttl_ms: int,
        epoch: str | None = None,
    ) -> None:
        self._relay_id = relay_id
        self._channels_of = channels_of
        self._grace_ms = grace_ms
        self.ttl_ms = ttl_ms
        self._epoch = epoch or uuid.uuid4().hex
        self._version = 0
        self._sockets: dict[str, int] = {}
        # Users readers believe are here, and the changes not yet published.
        self._announced: set[str] = set()
        self._coming: set[str] = set()
        self._leaving: dict[str, int] = {}

    def opened(self, user_id: str) -> None:
        """A socket of the user got its hello."""
        self._sockets[user_id] = self._sockets.get(user_id, 0) + 1
        if self._leaving.pop(user_id, None) is None and user_id not in self._announced:
            self._coming.add(user_id)

    def joined(self, user_id: str) -> None:
        """The user's sockets here were given another team: readers learn its channels."""
        if user_id in self._sockets and user_id in self._announced:
            self._coming.add(user_id)  # announced again, with the channels it has now

    def closed(self, user_id: str, now_ms: int) -> None:
        """A greeted socket of the user closed."""
        left = self._sockets.get(user_id, 0) - 1
        if left > 0:
            self._sockets[user_id] = left
            return
        self._sockets.pop(user_id, None)
        self._coming.discard(user_id)
        # Readers told of the user (a re-announcement after ``joined`` may still be pending) must
        # be told they left; one who came and went within a tick was never announced at all.
        if user_id in self._announced:
            self._leaving[user_id] = now_ms + self._grace_ms

    def _record(self, now_ms: int, *, snapshot: bool, ttl_ms: int) -> chat_pb2.RelayPresence:
        self._version += 1
        return chat_pb2.RelayPresence(
            relay_id=self._relay_id,
            epoch=self._epoch,
            version=self._version,
            snapshot=snapshot,
            ts_ms=now_ms,
            ttl_ms=ttl_ms,
        )

    def _entry(self, user_id: str) -> chat_pb2.PresenceEntry:
        return chat_pb2.PresenceEntry(user_id=user_id, channels=self._channels_of(user_id))

    def due(self, now_ms: int) -> chat_pb2.RelayPresence | None:
        """The delta to publish now, if anything changed (leavings only once their grace ran)."""
        gone = sorted(u for u, at in self._leaving.items() if at <= now_ms)
        if not self._coming and not gone:
            return None
        record = self._record(now_ms, snapshot=False, ttl_ms=self.ttl_ms)
        record.online.extend(self._entry(u) for u in sorted(self._coming))
        record.offline.extend(gone)
        self._announced |= self._coming
        self._coming.clear()
        for user in gone:
            del self._leaving[user]
            self._announced.discard(user)
        return record

    def snapshot(self, now_ms: int, ttl_ms: int | None = None) -> chat_pb2.RelayPresence:
        """Everyone here (those within their grace too): the heartbeat."""
        users = sorted(set(self._sockets) | set(self._leaving))
        record = self._record(
            now_ms, snapshot=True, ttl_ms=self.ttl_ms if ttl_ms is None else ttl_ms
        )
        record.online.extend(self._entry(u) for u in users)
        self._announced = set(users)
        self._coming.clear()
        return record


class PresencePublisher:
    def __init__(
        self,
        reporter: PresenceReporter,
        producer: ProducerPort,
        *,
        heartbeat_s: float,
        tick_s: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._reporter = reporter
        self._producer = producer
        self._heartbeat_s = heartbeat_s
        self._tick_s = tick_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def _send(self, record: chat_pb2.RelayPresence) -> None:
        try:
            await self._producer.send(
                PRESENCE_TOPIC, record.SerializeToString(), key=record.relay_id.encode()
            )
        except Exception as exc:
            # Best effort: the next snapshot says it all again.
            _log.warning("presence_publish_failed", error=type(exc).__name__)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="relay-presence")

    async def _run(self) -> None:
        next_snapshot = 0.0
        while True:
            now = time.monotonic()
            if now >= next_snapshot:
                next_snapshot = now + self._heartbeat_s
                await self._send(self._reporter.snapshot(self._now_ms()))
            else:
                record = self._reporter.due(self._now_ms())
                if record is not None:
                    await self._send(record)
            await asyncio.sleep(self._tick_s)

    async def cancel(self) -> None:
        """Stop ticking (a failed start, or before the last snapshot)."""
        await cancel_and_wait(self._task)
        self._task = None

    async def stop(self, *, leaving_ttl_s: float) -> None:
        """Stop ticking; tell readers to keep this relay's users for ``leaving_ttl_s`` only."""
        await self.cancel()
        ttl_ms = int(leaving_ttl_s * 1000)
        await self._send(self._reporter.snapshot(self._now_ms(), ttl_ms=ttl_ms))
