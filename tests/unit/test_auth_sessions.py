"""Announcing ended logins: the outbox publisher and the lazily started producer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from chatcore.kafka import EVENTS_TOPIC
from chatcore.proto.chat.v1 import chat_pb2
from services.auth.events import KafkaEvents
from services.auth.sessions import EndedSession, SessionEventPublisher
from tests.unit.auth_fakes import FakeBroker, MemoryEndedSessionStore

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ADA = "a" * 32
BOB = "b" * 32


class _Events:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.calls = 0
        self.down = False

    async def sessions_ended(self, ended: Sequence[tuple[str, str]]) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("broker unreachable")
        self.sent.extend(ended)


def _ended(n: int, *, until: datetime = NOW + timedelta(minutes=15)) -> EndedSession:
    return EndedSession(session_id=f"{n:032x}", user_id=ADA, until=until)


async def test_pending_events_are_sent_once_and_marked_published() -> None:
    """Every ended login's event is sent, and a second pass sends nothing again."""
    store, events = MemoryEndedSessionStore(), _Events()
    for n in range(250):  # more than one pass's page
        await store.end([_ended(n)])
    publisher = SessionEventPublisher(store, events, clock=lambda: NOW)
    assert await publisher.publish_pending() == 250
    assert sorted(events.sent) == sorted((ADA, f"{n:032x}") for n in range(250))
    assert events.calls == 3  # a page of them at a time
    assert await publisher.publish_pending() == 0
    assert len(events.sent) == 250


async def test_kafka_away_leaves_events_for_the_next_pass() -> None:
    """A failed send stops the pass and marks nothing; the next pass sends what is left."""
    store, events = MemoryEndedSessionStore(), _Events()
    await store.end([_ended(1)])
    await store.end([_ended(2)])
    publisher = SessionEventPublisher(store, events, clock=lambda: NOW)
    events.down = True
    assert await publisher.publish_pending() == 0
    assert store.unacked == {f"{1:032x}", f"{2:032x}"}
    events.down = False
    assert await publisher.publish_pending() == 2
    assert store.unacked == set()


async def test_a_login_whose_tokens_expired_is_not_announced() -> None:
    """Its sockets closed at their token's expiry: it is marked done without an event."""
    store, events = MemoryEndedSessionStore(), _Events()
    await store.end([_ended(1, until=NOW - timedelta(seconds=1))])
    publisher = SessionEventPublisher(store, events, clock=lambda: NOW)
    assert await publisher.publish_pending() == 0
    assert events.sent == []
    assert store.unacked == set()


async def test_one_producer_serves_every_event_and_is_replaced_after_a_failure() -> None:
    """Started at the first event, reused after, stopped and rebuilt once it failed."""
    broker = FakeBroker(down_starts=1)
    events = KafkaEvents(broker.producer, timeout_s=1.0, wall_clock=lambda: 1.8e9)
    with pytest.raises(ConnectionError):
        await events.sessions_ended([(ADA, "1" * 32)])
    assert broker.producers[0].stopped
    await events.sessions_ended([(ADA, "2" * 32), (BOB, "4" * 32)])
    await events.sessions_ended([(ADA, "3" * 32)])
    assert len(broker.producers) == 2
    assert broker.producers[1].started
    [(topic, key, value), (_, bob_key, _), _] = broker.records
    assert bob_key == BOB.encode()
    assert value is not None
    event = chat_pb2.MembershipEvent.FromString(value)
    assert (topic, key) == (EVENTS_TOPIC, ADA.encode())
    assert event.change == chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED
    assert (event.user_id, event.session_id, event.channel_id) == (ADA, "2" * 32, "")
    await events.aclose()
    assert broker.producers[1].stopped
