"""Telling a renamed user's teams: the ``renames`` outbox publisher and its Kafka records."""

from __future__ import annotations

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
        self.during: list[Rename] = []
        self.store: MemoryRenameStore | None = None

    async def members_renamed(self, renamed: Sequence[Renamed]) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.sent.extend(renamed)
        if self.store is not None:
            for rename in self.during:
                await self.store.note(rename)
            self.during = []


async def _teams_of(user_id: str) -> list[str]:
    return TEAMS.get(user_id, [])


async def test_each_rename_is_told_to_every_team_of_the_user_once() -> None:
    """One event per team with the latest name; a second pass sends nothing again."""
    store, events = MemoryRenameStore(), _Events()
    await store.note(Rename(ADA, "Ada", NOW))
    await store.note(Rename(ADA, "Ada Lovelace", NOW))
    await store.note(Rename(BOB, "Bob", NOW))
    await store.note(Rename("c" * 32, "In no team", NOW))
    publisher = RenamePublisher(store, events, _teams_of)
    assert await publisher.publish_pending() == 3
    assert [(r.user_id, r.name, r.teams) for r in events.sent] == [
        (ADA, "Ada Lovelace", tuple(TEAMS[ADA])),
        (BOB, "Bob", tuple(TEAMS[BOB])),
        ("c" * 32, "In no team", ()),
    ]
    assert store.notes == {}
    assert await publisher.publish_pending() == 0


async def test_kafka_away_keeps_the_note_for_the_next_pass() -> None:
    """A failed send forgets nothing; the next pass tells the name."""
    store, events = MemoryRenameStore(), _Events()
    await store.note(Rename(ADA, "Ada", NOW))
    publisher = RenamePublisher(store, events, _teams_of)
    events.down = True
    assert await publisher.publish_pending() == 0
    assert ADA in store.notes
    events.down = False
    assert await publisher.publish_pending() == 2
    assert store.notes == {}


async def test_a_rename_during_the_send_is_told_by_the_next_pass() -> None:
    """The note told is forgotten only if it still holds the name sent: the newer one stays, so
    the teams end up with the latest name."""
    store, events = MemoryRenameStore(), _Events()
    events.store = store
    await store.note(Rename(ADA, "Ada", NOW))
    events.during = [Rename(ADA, "Ada Lovelace", NOW)]
    publisher = RenamePublisher(store, events, _teams_of)
    await publisher.publish_pending()
    assert store.notes[ADA].name == "Ada Lovelace"
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
