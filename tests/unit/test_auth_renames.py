"""Telling a renamed user's teams: the ``renames`` outbox publisher and its Kafka records."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from chatcore.kafka import EVENTS_TOPIC
from chatcore.proto.chat.v1 import chat_pb2
from services.auth.events import KafkaEvents, Renamed
from services.auth.renames import Rename, RenamePublisher
from tests.unit.auth_fakes import FakeBroker, MemoryRenameStore

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ADA, BOB = "a" * 32, "b" * 32
TEAMS = {ADA: ["1" * 32, "2" * 32], BOB: ["2" * 32]}


class _Events:
    def __init__(self) -> None:
        self.sent: list[Renamed] = []
        self.down = False
        # Runs while a send is in flight (a rename arriving meanwhile).
        self.during: list[tuple[Rename, str]] = []
        self.store: MemoryRenameStore | None = None

    async def members_renamed(self, renamed: Sequence[Renamed]) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.sent.extend(renamed)
        if self.store is not None:
            for rename, name in self.during:
                await self.store.note(rename)
                NAMES[rename.user_id] = name
            self.during = []


NAMES: dict[str, str] = {}


async def _name_of(user_id: str) -> str | None:
    return NAMES.get(user_id)


async def _teams_of(user_id: str) -> list[str]:
    return TEAMS.get(user_id, [])


def _publisher(store: MemoryRenameStore, events: _Events) -> RenamePublisher:
    return RenamePublisher(store, events, name_of=_name_of, teams_of=_teams_of)


def _note(user_id: str, mark: str = "m1") -> Rename:
    return Rename(user_id, mark, NOW)


async def test_each_rename_tells_every_team_of_the_user_the_name_stored_once() -> None:
    """One event per team with the name as the user's document has it when sent (however many
    notes came before); a user deleted meanwhile is told to nobody; a second pass sends nothing."""
    NAMES.clear()
    NAMES.update({ADA: "Ada Lovelace", BOB: "Bob"})
    store, events = MemoryRenameStore(), _Events()
    await store.note(_note(ADA, "m1"))
    await store.note(_note(ADA, "m2"))
    await store.note(_note(BOB))
    await store.note(_note("c" * 32))  # deleted since
    publisher = _publisher(store, events)
    assert await publisher.publish_pending() == 3
    assert [(r.user_id, r.name, r.teams) for r in events.sent if r.teams] == [
        (ADA, "Ada Lovelace", tuple(TEAMS[ADA])),
        (BOB, "Bob", tuple(TEAMS[BOB])),
    ]
    assert store.notes == {}
    assert await publisher.publish_pending() == 0


async def test_kafka_away_keeps_the_note_for_the_next_pass() -> None:
    """A failed send forgets nothing; the next pass tells the name."""
    NAMES.clear()
    NAMES[ADA] = "Ada"
    store, events = MemoryRenameStore(), _Events()
    await store.note(_note(ADA))
    publisher = _publisher(store, events)
    events.down = True
    assert await publisher.publish_pending() == 0
    assert ADA in store.notes
    events.down = False
    assert await publisher.publish_pending() == 2
    assert store.notes == {}


async def test_a_rename_during_the_send_is_told_by_the_next_pass() -> None:
    """The note told is forgotten only if it still holds the mark read: the newer one stays, so
    the teams end up with the latest name."""
    NAMES.clear()
    NAMES[ADA] = "Ada"
    store, events = MemoryRenameStore(), _Events()
    events.store = store
    await store.note(_note(ADA, "m1"))
    events.during = [(_note(ADA, "m2"), "Ada Lovelace")]
    publisher = _publisher(store, events)
    await publisher.publish_pending()
    assert store.notes[ADA].mark == "m2"
    await publisher.publish_pending()
    assert [r.name for r in events.sent] == ["Ada", "Ada Lovelace"]
    assert store.notes == {}


async def test_profile_records_are_keyed_by_team_and_carry_the_name() -> None:
    """Each team's event goes to the team's partition with the user and the name they chose."""
    broker = FakeBroker()
    events = KafkaEvents(broker.producer, timeout_s=1.0)
    await events.members_renamed([Renamed(ADA, "Ada ✨", tuple(TEAMS[ADA]), 1_800_000_000_000)])
    assert [(topic, key) for topic, key, _ in broker.records] == [
        (EVENTS_TOPIC, team.encode()) for team in TEAMS[ADA]
    ]
    for (_, key, value), team in zip(broker.records, TEAMS[ADA], strict=True):
        assert value is not None
        assert key == team.encode()
        event = chat_pb2.MembershipEvent.FromString(value)
        assert event.change == chat_pb2.MEMBERSHIP_CHANGE_PROFILE
        assert (event.channel_id, event.user_id, event.user_name) == (team, ADA, "Ada ✨")
        assert event.ts_ms == 1_800_000_000_000
    await events.members_renamed([Renamed(BOB, "Bob", (), 0)])  # in no team: nothing to send
    assert len(broker.records) == 2
    await events.aclose()


async def test_both_outboxes_share_the_producer_one_send_at_a_time() -> None:
    """A rename sent while a logout's event is still starting the producer waits for it, and
    both arrive on the one producer (a send on a producer still starting used to fail and close
    it under the other)."""
    broker = FakeBroker(slow_start=asyncio.Event())
    events = KafkaEvents(broker.producer, timeout_s=1.0)
    logout = asyncio.create_task(events.sessions_ended([(ADA, "1" * 32)]))
    await asyncio.sleep(0)
    rename = asyncio.create_task(events.members_renamed([Renamed(BOB, "Bob", ("2" * 32,), 0)]))
    await asyncio.sleep(0.01)
    assert broker.slow_start is not None
    broker.slow_start.set()
    await asyncio.gather(logout, rename)
    assert len(broker.producers) == 1
    assert [key for _, key, _ in broker.records] == [ADA.encode(), ("2" * 32).encode()]
    await events.aclose()
