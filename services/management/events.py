"""Membership events on ``chat.events.v1``, published from each team's outbox until Kafka acks.

A membership change and its event are stored by one single-document update (the event goes into
the team document's ``outbox``, see ``store.py``), so a stored change is never left unannounced.
After the write, the request publishes the team's pending events; a background loop republishes
every team whose outbox is still non-empty (Kafka was down, the process died in between).

Order: a team's events are published oldest first, one at a time, each after the previous one was
acknowledged, all under the team's lease (the same ``Leases`` the store's writes take, shared by
every instance through the database), so two publishers never interleave and a failed send stops
the rest until the next try. A publisher whose lease ran out stops before its next event, and its
removals carry the lease's epoch, so a publisher paused past its lease removes nothing afterwards.
Before its event is sent, each change is applied to the membership index (membership_index.py),
which therefore follows the team documents in the same order and with the same retries.
Records are keyed by team id (one partition per team) and sent with the idempotent ``acks=all``
producer of ``chatcore.kafka.make_producer``. An event may reach Kafka more than once (acked but
not yet removed when the process died; a send that timed out here but landed): relays re-check
membership on every event, so a replay changes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry, Counter

from chatcore.kafka import EVENTS_TOPIC
from chatcore.leases import Leases
from chatcore.logging import get_logger
from chatcore.messages import CORRELATION_HEADER
from chatcore.proto.chat.v1 import chat_pb2
from services.management.membership_index import MembershipIndex
from services.management.model import MembershipChange, OutboxEvent
from services.management.store import TeamStore

_log = get_logger("management.events")

EVENT_ID_HEADER = "event_id"

PROTO_CHANGE: dict[MembershipChange, chat_pb2.MembershipChange.ValueType] = {
    MembershipChange.ADDED: chat_pb2.MEMBERSHIP_CHANGE_ADDED,
    MembershipChange.REMOVED: chat_pb2.MEMBERSHIP_CHANGE_REMOVED,
    MembershipChange.DEACTIVATED: chat_pb2.MEMBERSHIP_CHANGE_DEACTIVATED,
    MembershipChange.ACTIVATED: chat_pb2.MEMBERSHIP_CHANGE_ACTIVATED,
    MembershipChange.SETTINGS: chat_pb2.MEMBERSHIP_CHANGE_SETTINGS,
    MembershipChange.ROLES: chat_pb2.MEMBERSHIP_CHANGE_ROLES,
}


class EventSender(Protocol):
    """What the outbox needs of a Kafka producer (``AIOKafkaProducer`` fits)."""

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> Any: ...


class Joiner(Protocol):
    async def joined(self, team_id: str, user_id: str) -> None:
        """Raise when it could not be done (the event is then retried with it)."""


class Announcer(Protocol):
    async def announce(self, team_id: str) -> None:
        """Publish the team's pending events now if possible; never raises."""


@dataclass(frozen=True, slots=True)
class EventMetrics:
    published: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> EventMetrics:
        return cls(
            published=Counter(
                "management_membership_events_total",
                "Membership event sends by change and outcome (ok, failed: stays in the outbox)",
                ["change", "outcome"],
                registry=registry,
            )
        )


def encode_event(team_id: str, event: OutboxEvent) -> bytes:
    """The record value: a serialized ``MembershipEvent``."""
    message = chat_pb2.MembershipEvent(
        channel_id=team_id,
        user_id=event.user_id,
        change=PROTO_CHANGE[event.change],
        ts_ms=event.ts_ms,
        actor=event.actor,
    )
    return message.SerializeToString()


def current_correlation_id() -> str:
    """The correlation id bound to this request's logging context (empty outside a request)."""
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return value if isinstance(value, str) else ""


class OutboxPublisher:
    """Publishes teams' outboxes in order and removes exactly the events Kafka acknowledged."""

    def __init__(
        self,
        store: TeamStore,
        sender: EventSender,
        leases: Leases,
        metrics: EventMetrics,
        index: MembershipIndex,
        *,
        send_timeout_s: float,
        batch: int = 100,
        joiner: Joiner | None = None,
    ) -> None:
        self._store = store
        self._sender = sender
        self._leases = leases
        self._index = index
        self._joiner = joiner
        self._metrics = metrics
        self._send_timeout_s = send_timeout_s
        self._batch = batch

    async def flush(self, team_id: str) -> bool:
        """Publish the team's pending events oldest first; True once its outbox is empty."""
        async with self._leases.hold(team_id) as lease:
            events = await self._store.outbox(team_id)
            sent: list[OutboxEvent] = []
            for event in events:
                # A publisher whose lease ran out stops here: the next holder publishes in order.
                lease.check()
                # Unavailable propagates: the event stays for the next flush.
                await self._index.apply(team_id, event)
                if not await self._send(team_id, event):
                    break
                if not await self._join(team_id, event):
                    break
                sent.append(event)
            # Also with nothing sent: clears a flag left set by a crash after the last removal.
            if sent or not events:
                await self._store.acknowledge(team_id, sent, fence=lease.epoch)
            drained = len(sent) == len(events)
            if drained and any(e.change is MembershipChange.REMOVED for e in sent):
                # The last member's departure empties a team; its document goes once announced.
                await self._store.delete_if_closed(team_id)
            return drained

    async def _send(self, team_id: str, event: OutboxEvent) -> bool:
        headers = [
            (CORRELATION_HEADER, event.correlation_id.encode()),
            (EVENT_ID_HEADER, event.id.encode()),
        ]
        try:
            # Bounded: a request waits at most this long before answering (the change is stored
            # either way). A send cut off here may still land; then the retry is a harmless replay.
            async with asyncio.timeout(self._send_timeout_s):
                await self._sender.send_and_wait(
                    EVENTS_TOPIC,
                    value=encode_event(team_id, event),
                    key=team_id.encode(),
                    headers=headers,
                )
        except Exception as exc:
            self._metrics.published.labels(event.change.value, "failed").inc()
            _log.warning(
                "membership_event_pending",
                team_id=team_id,
                event_id=event.id,
                change=event.change.value,
                error=type(exc).__name__,
            )
            return False
        self._metrics.published.labels(event.change.value, "ok").inc()
        return True

    async def _join(self, team_id: str, event: OutboxEvent) -> bool:
        """A member added: their read position starts at the channel's end."""
        if self._joiner is None or event.change is not MembershipChange.ADDED:
            return True
        try:
            await self._joiner.joined(team_id, event.user_id)
        except Exception as exc:
            _log.warning("join_marker_pending", team_id=team_id, error=type(exc).__name__)
            return False
        return True

    async def announce(self, team_id: str) -> None:
        """``flush`` for the request path: any failure leaves the events to the retry loop."""
        try:
            await self.flush(team_id)
        except Exception as exc:
            # The change is stored and its event with it; answering an error would make the
            # client retry a change that did happen.
            _log.warning("outbox_flush_failed", team_id=team_id, error=type(exc).__name__)

    async def republish_pending(self) -> int:
        """One pass of the retry loop: flush every team with a pending outbox; how many drained."""
        drained = 0
        for team_id in await self._store.with_pending_outbox(limit=self._batch):
            try:
                if not await self.flush(team_id):
                    # Kafka refused a send: the other teams would only wait out the same timeout
                    # (holding their locks meanwhile). The next pass starts over.
                    break
            except Exception as exc:
                _log.warning("outbox_flush_failed", team_id=team_id, error=type(exc).__name__)
            else:
                drained += 1
        return drained

    async def run(self, interval_s: float) -> None:
        """Republish pending outboxes every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.republish_pending()
            except Exception as exc:
                # Typically the database is down; the next pass tries again.
                _log.warning("outbox_pass_failed", error=type(exc).__name__)
