"""Which controllers exist right now, from their announcements on ``chat.controllers.v1``.

Every controller announces its gRPC address every ``CHAT_CONTROLLER_ANNOUNCE_INTERVAL_S`` (and
that it is leaving, after its goodbye). A partition owned by a controller no relay streams from
would fan out to nobody, so a relay must learn of a controller that joins without a restart.
``ControllerDirectory`` is the pure bookkeeping (what to add, what to drop); ``DiscoveryFeed``
reads the topic from its end, outside any consumer group, and applies the decisions to the
``ControllerLink``. Only controllers of the relay's own consumer group count (one Kafka may carry
several deployments, or a test's controllers beside a stack's). The seeds
(``CHAT_CONTROLLER_ADDRS``) are never dropped: they work without any
announcement, as before, and a seed that restarts is simply reconnected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError

from chatcore.kafka import CONTROLLERS_TOPIC
from chatcore.logging import get_logger
from chatcore.presence_feed import now_ms
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.tasks import cancel_and_wait

_log = get_logger("relay.discovery")


class ControllerDirectory:
    """Announced controllers and when each was last heard of (milliseconds)."""

    def __init__(self, seeds: Iterable[str], group: str) -> None:
        self._seeds = frozenset(seeds)
        self._group = group
        self._until: dict[str, int] = {}

    @property
    def group(self) -> str:
        return self._group

    @property
    def known(self) -> frozenset[str]:
        return self._seeds | frozenset(self._until)

    def heard(self, announcement: chat_pb2.ControllerAnnouncement, now: int) -> tuple[str, bool]:
        """Record one announcement; returns (address, whether it is to be added or dropped):
        ``True`` means add (a no-op for the link if it has it), ``False`` means drop. Another
        group's announcement returns an empty address: nothing to do."""
        if announcement.group != self._group:
            return "", False
        address = announcement.address
        if announcement.leaving:
            self._until.pop(address, None)
            return address, False
        self._until[address] = now + max(announcement.ttl_ms, 1)
        return address, True

    def expired(self, now: int) -> list[str]:
        """Announced controllers silent past their ttl (killed, partitioned): to drop."""
        gone = [a for a, until in self._until.items() if until <= now]
        for address in gone:
            del self._until[address]
        return gone

    def droppable(self, address: str) -> bool:
        return address not in self._seeds


class DiscoveryFeed:
    """Applies the directory's decisions to the relay's link as announcements arrive."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        directory: ControllerDirectory,
        *,
        add: Callable[[str], bool],
        remove: Callable[[str], Awaitable[bool]],
        expire_every_s: float = 1.0,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._consumer = consumer
        self._directory = directory
        self._add = add
        self._remove = remove
        self._expire_every_s = expire_every_s
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        # Groups other than ours heard announcing: each is logged once.
        self.other_groups: set[str] = set()

    async def start(self) -> None:
        # Outside any group: every partition, from the end (the reader's offset reset is
        # "latest"); every live controller re-announces within one interval.
        self._consumer.subscribe([CONTROLLERS_TOPIC])
        await self._consumer.start()
        self._task = asyncio.create_task(self._run(), name="controller-discovery")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        await self._consumer.stop()

    async def apply(self, announcement: chat_pb2.ControllerAnnouncement) -> None:
        address, present = self._directory.heard(announcement, self._clock())
        if not address:
            if announcement.group != self._directory.group and (
                announcement.group not in self.other_groups
            ):
                # Another deployment on the same Kafka, or (more likely on day one) the relays
                # and controllers configured with different CHAT_CONTROLLER_GROUP_IDs: then
                # messages on the other group's partitions never reach this relay's sockets.
                self.other_groups.add(announcement.group)
                _log.warning(
                    "controller_of_another_group",
                    controller=announcement.address,
                    group=announcement.group,
                    ours=self._directory.group,
                )
            return
        if present:
            self._add(address)
        elif self._directory.droppable(address):
            await self._remove(address)

    async def expire(self) -> None:
        for address in self._directory.expired(self._clock()):
            if self._directory.droppable(address):
                _log.warning("controller_silent", controller=address)
                await self._remove(address)

    async def _run(self) -> None:
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=int(self._expire_every_s * 1000))
                for records in batches.values():
                    for record in records:
                        announcement = chat_pb2.ControllerAnnouncement()
                        try:
                            announcement.ParseFromString(record.value or b"")
                        except Exception:
                            _log.warning("bad_controller_announcement", offset=record.offset)
                            continue
                        await self.apply(announcement)
                await self.expire()
            except KafkaError as exc:
                # Kafka down: keep the controllers we know; the link reconnects on its own.
                _log.warning("controller_discovery_failed", error=repr(exc))
