"""Disabling and enabling accounts, and the user_disabled event published until Kafka acks."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from chatcore.errors import NotFound, Unavailable
from chatcore.kafka import EVENTS_TOPIC
from chatcore.proto.chat.v1 import chat_pb2
from services.auth.admin import AccountAdmin
from services.auth.events import KafkaUserEvents
from services.auth.store import RefreshRecord, User
from tests.unit.auth_fakes import (
    FakeBroker,
    MemoryAccountStatus,
    MemoryRefreshStore,
    MemoryUserStore,
)

NOW = datetime(2027, 1, 1, tzinfo=UTC)
ADA = User(
    id="a" * 32,
    email="ada@example.com",
    name="Ada",
    password_hash="$argon2id$x",
    disabled=False,
    created_at=NOW,
)


@dataclasses.dataclass
class RecordingEvents:
    """Records user_disabled calls; fails the first ``failures`` of them."""

    published: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    failures: int = 0

    async def user_disabled(self, user_id: str, *, actor: str) -> None:
        if self.failures:
            self.failures -= 1
            raise Unavailable("kafka down")
        self.published.append((user_id, actor))


@dataclasses.dataclass
class _World:
    admin: AccountAdmin
    users: MemoryUserStore
    tokens: MemoryRefreshStore
    events: RecordingEvents


def _record(token_hash: str, user_id: str, family: str) -> RefreshRecord:
    return RefreshRecord(
        token_hash=token_hash,
        family=family,
        user_id=user_id,
        created_at=NOW,
        expires_at=NOW + timedelta(days=30),
        used_at=None,
        revoked=False,
    )


@pytest.fixture
async def world() -> _World:
    """Ada with two logins, Bob with one, over in-memory stores."""
    users, tokens, events = MemoryUserStore(), MemoryRefreshStore(), RecordingEvents()
    await users.create(ADA)
    await users.create(dataclasses.replace(ADA, id="b" * 32, email="bob@example.com"))
    for token_hash, user_id, family in (
        ("h1", "a" * 32, "f1"),
        ("h2", "a" * 32, "f2"),
        ("h3", "b" * 32, "f3"),
    ):
        await tokens.insert(_record(token_hash, user_id, family))
    admin = AccountAdmin(users=users, refresh_tokens=tokens, events=events)
    return _World(admin, users, tokens, events)


async def test_disable_sets_the_flag_revokes_sessions_and_announces(world: _World) -> None:
    """Disabling flags the user, revokes all their refresh tokens, and publishes the event."""
    change = await world.admin.disable("ada@example.com", actor="op")
    assert change.revoked_refresh_tokens == 2
    assert not change.was_disabled
    assert await MemoryAccountStatus(world.users).is_disabled("a" * 32)
    assert [r.revoked for r in world.tokens.records.values()] == [True, True, False]
    assert world.events.published == [("a" * 32, "op")]


async def test_disable_is_idempotent_and_republishes(world: _World) -> None:
    """Running it again changes nothing more but publishes the event again."""
    await world.admin.disable("ada@example.com", actor="op")
    again = await world.admin.disable("ada@example.com", actor="op")
    assert again.was_disabled
    assert again.revoked_refresh_tokens == 0
    assert len(world.events.published) == 2


async def test_disable_keeps_the_database_changes_when_the_event_fails(world: _World) -> None:
    """If Kafka never acks, REST access is still cut and a re-run completes the job."""
    world.events.failures = 1
    with pytest.raises(Unavailable):
        await world.admin.disable("ada@example.com", actor="op")
    assert await MemoryAccountStatus(world.users).is_disabled("a" * 32)
    assert all(r.revoked for r in world.tokens.records.values() if r.user_id == "a" * 32)
    await world.admin.disable("ada@example.com", actor="op")
    assert world.events.published == [("a" * 32, "op")]


async def test_enable_clears_the_flag_only(world: _World) -> None:
    """Enabling lets the user log in again; old sessions stay revoked and nothing is published."""
    await world.admin.disable("ada@example.com", actor="op")
    change = await world.admin.enable("ada@example.com", actor="op")
    assert change.was_disabled
    assert not await MemoryAccountStatus(world.users).is_disabled("a" * 32)
    assert world.tokens.records["h1"].revoked
    assert len(world.events.published) == 1


async def test_unknown_email_is_not_found(world: _World) -> None:
    """No account, no change, no event."""
    with pytest.raises(NotFound):
        await world.admin.disable("nobody@example.com", actor="op")
    assert world.events.published == []


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _events(broker: FakeBroker, clock: _Clock, timeout_s: float = 10.0) -> KafkaUserEvents:
    async def sleep(seconds: float) -> None:
        clock.now += seconds

    return KafkaUserEvents(
        broker.producer, timeout_s=timeout_s, clock=clock, wall_clock=lambda: 1.5, sleep=sleep
    )


async def test_event_is_a_user_wide_membership_event_keyed_by_user() -> None:
    """The record is a MembershipEvent USER_DISABLED, channel empty, key and user_id the user."""
    broker = FakeBroker()
    await _events(broker, _Clock()).user_disabled("a" * 32, actor="op")
    [(topic, key, value)] = broker.records
    assert topic == EVENTS_TOPIC
    assert key == b"a" * 32
    event = chat_pb2.MembershipEvent.FromString(value or b"")
    assert event.change == chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED
    assert (event.channel_id, event.user_id, event.actor, event.ts_ms) == ("", "a" * 32, "op", 1500)
    assert all(p.stopped for p in broker.producers)


async def test_publish_retries_until_kafka_acks() -> None:
    """A broker that is down, then loses an ack, still gets the event, with fresh producers."""
    broker = FakeBroker(down_starts=2, lost_acks=1)
    await _events(broker, _Clock()).user_disabled("a" * 32, actor="op")
    assert len(broker.records) == 1
    assert len(broker.producers) == 4
    assert all(p.stopped for p in broker.producers)


async def test_publish_gives_up_with_a_clear_error_at_the_deadline() -> None:
    """A broker that never answers makes the publish fail with Unavailable naming the timeout."""
    broker = FakeBroker(down_starts=1_000)
    clock = _Clock()
    with pytest.raises(Unavailable, match=r"did not acknowledge .* within 10 s"):
        await _events(broker, clock, timeout_s=10.0).user_disabled("a" * 32, actor="op")
    assert broker.records == []
    assert clock.now <= 100.0 + 10.0
    assert 3 <= len(broker.producers) <= 10  # backed off, not hammering
