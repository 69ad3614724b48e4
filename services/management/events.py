"""Membership events on ``chat.events.v1``, so relays grant or revoke access at once.

Published after the database write succeeded, keyed by team id (one partition per team keeps a
team's events in order), value a serialized ``chat.v1.MembershipEvent``, with the request's
correlation id in a ``correlation_id`` header.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry, Counter

from chatcore.kafka import EVENTS_TOPIC
from chatcore.logging import get_logger
from chatcore.proto.chat.v1 import chat_pb2
from services.management.model import MembershipChange

_log = get_logger("management.events")

_PROTO_CHANGE: dict[MembershipChange, chat_pb2.MembershipChange.ValueType] = {
    MembershipChange.ADDED: chat_pb2.MEMBERSHIP_CHANGE_ADDED,
    MembershipChange.REMOVED: chat_pb2.MEMBERSHIP_CHANGE_REMOVED,
    MembershipChange.DEACTIVATED: chat_pb2.MEMBERSHIP_CHANGE_DEACTIVATED,
    MembershipChange.ACTIVATED: chat_pb2.MEMBERSHIP_CHANGE_ACTIVATED,
}


class MembershipPublisher(Protocol):
    async def publish(
        self, team_id: str, user_id: str, change: MembershipChange, *, actor: str
    ) -> None:
        """Announce a change that is already stored; ``user_id`` is empty for team-wide ones."""


@dataclass(frozen=True, slots=True)
class EventMetrics:
    published: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> EventMetrics:
        return cls(
            published=Counter(
                "management_membership_events_total",
                "Membership events by change and outcome (ok, failed)",
                ["change", "outcome"],
                registry=registry,
            )
        )


def encode_event(
    team_id: str, user_id: str, change: MembershipChange, *, actor: str, ts_ms: int
) -> bytes:
    """The record value: a serialized ``MembershipEvent``."""
    event = chat_pb2.MembershipEvent(
        channel_id=team_id,
        user_id=user_id,
        change=_PROTO_CHANGE[change],
        ts_ms=ts_ms,
        actor=actor,
    )
    return event.SerializeToString()


def current_correlation_id() -> str:
    """The correlation id bound to this request's logging context (empty outside a request)."""
    value = structlog.contextvars.get_contextvars().get("correlation_id")
    return value if isinstance(value, str) else ""


class KafkaMembershipPublisher:
    """Publishes with a started idempotent producer (``chatcore.kafka.make_producer``)."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        metrics: EventMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._producer = producer
        self._metrics = metrics
        self._clock = clock

    async def publish(
        self, team_id: str, user_id: str, change: MembershipChange, *, actor: str
    ) -> None:
        value = encode_event(team_id, user_id, change, actor=actor, ts_ms=int(self._clock() * 1000))
        headers = [("correlation_id", current_correlation_id().encode())]
        try:
            # Waiting for the broker's ack means the response tells the truth: when the client
            # hears "done", the relays have been (or are being) told.
            await self._producer.send_and_wait(
                EVENTS_TOPIC, value=value, key=team_id.encode(), headers=headers
            )
        except Exception as exc:
            # The change is already stored and cannot be undone here; failing the request would
            # make the client retry a change that did happen. Log and count it for alerting.
            self._metrics.published.labels(change.value, "failed").inc()
            _log.error(
                "membership_event_failed",
                team_id=team_id,
                user_id=user_id,
                change=change.value,
                error=type(exc).__name__,
            )
            return
        self._metrics.published.labels(change.value, "ok").inc()
