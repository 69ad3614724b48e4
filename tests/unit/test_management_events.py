"""The membership-event outbox: encoding, in-order publishing, a failing broker, the retry loop."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from prometheus_client import CollectorRegistry

from chatcore.kafka import EVENTS_TOPIC
from chatcore.leases import local_leases
from chatcore.logging import bind_context, reset_context
from chatcore.memberships import MembershipEntry
from chatcore.proto.chat.v1 import chat_pb2
from services.management.events import EventMetrics, OutboxPublisher, encode_event
from services.management.model import (
    MemberRef,
    MembershipChange,
    OutboxEvent,
    TeamChanges,
    TeamDraft,
)
from services.management.teams import TeamService
from tests.unit.management_fakes import (
    FakeKafka,
    FakeUserDirectory,
    MemoryMembershipIndex,
    MemoryTeamStore,
    Published,
    team_service,
)

S, U, V = "1" * 32, "2" * 32, "3" * 32
ADDED, REMOVED = MembershipChange.ADDED, MembershipChange.REMOVED
TOKEN = "caller-token"


@dataclasses.dataclass
class World:
    store: MemoryTeamStore
    kafka: FakeKafka
    outbox: OutboxPublisher
    service: TeamService
    metrics: EventMetrics
    index: MemoryMembershipIndex


@pytest.fixture
def world() -> World:
    """A team service whose outbox publishes to a fake Kafka, sharing the store's locks."""
    store, kafka = MemoryTeamStore(), FakeKafka()
    metrics = EventMetrics.create(CollectorRegistry())
    index = MemoryMembershipIndex(store)
    outbox = OutboxPublisher(store, kafka, local_leases("team"), metrics, index, send_timeout_s=5.0)
    ids = iter(f"{i:032x}" for i in range(1, 1000))
    service = team_service(
        store,
        FakeUserDirectory({"u@example.com": U, "v@example.com": V}),
        outbox,
        clock=lambda: 1_700_000_000.5,
        new_event_id=lambda: next(ids),
    )
    return World(store, kafka, outbox, service, metrics, index)


async def _team_with(world: World, *members: str) -> str:
    team = await world.service.create(TeamDraft("t", "", ()), creator=S)
    for member in members:
        await world.service.add_member(team.id, MemberRef(user_id=member), caller=S, bearer=TOKEN)
    return team.id


def _event(event_id: str, user_id: str, change: MembershipChange) -> OutboxEvent:
    return OutboxEvent(event_id, user_id, change, S, 1, "corr")


@pytest.mark.parametrize(
    ("change", "proto"),
    [
        (MembershipChange.ADDED, chat_pb2.MEMBERSHIP_CHANGE_ADDED),
        (MembershipChange.REMOVED, chat_pb2.MEMBERSHIP_CHANGE_REMOVED),
        (MembershipChange.DEACTIVATED, chat_pb2.MEMBERSHIP_CHANGE_DEACTIVATED),
        (MembershipChange.ACTIVATED, chat_pb2.MEMBERSHIP_CHANGE_ACTIVATED),
        (MembershipChange.SETTINGS, chat_pb2.MEMBERSHIP_CHANGE_SETTINGS),
        (MembershipChange.ROLES, chat_pb2.MEMBERSHIP_CHANGE_ROLES),
    ],
)
def test_encoding_round_trips(change: MembershipChange, proto: int) -> None:
    """Each domain change maps to its protobuf enum value and every field survives."""
    event = OutboxEvent("e" * 32, U, change, S, 1234, "c")
    decoded = chat_pb2.MembershipEvent.FromString(encode_event("t" * 32, event))
    assert (decoded.channel_id, decoded.user_id, decoded.change, decoded.ts_ms) == (
        "t" * 32,
        U,
        proto,
        1234,
    )
    assert decoded.actor == S


async def test_record_is_keyed_by_team_with_the_correlation_and_event_ids(world: World) -> None:
    """The record goes to chat.events.v1, keyed by team id, with the request's correlation id."""
    tokens = bind_context(request_id="r1", correlation_id="corr-1")
    try:
        team_id = await _team_with(world)
    finally:
        reset_context(tokens)
    (record,) = world.kafka.records
    assert record["topic"] == EVENTS_TOPIC
    assert record["key"] == team_id.encode()
    headers = dict(record["headers"])
    assert headers["correlation_id"] == b"corr-1"
    assert len(headers["event_id"]) == 32
    assert chat_pb2.MembershipEvent.FromString(record["value"]).ts_ms == 1_700_000_000_500
    assert world.store.outboxes[team_id] == []


async def test_removal_while_kafka_is_down_is_stored_and_announced_later(world: World) -> None:
    """With Kafka down the removal succeeds and its event waits; once Kafka is back it goes."""
    team_id = await _team_with(world, U)
    world.kafka.down = True
    team = await world.service.remove_member(team_id, U, caller=S)
    assert U not in team.members
    (pending,) = world.store.outboxes[team_id]
    assert (pending.user_id, pending.change) == (U, REMOVED)
    assert world.metrics.published.labels("removed", "failed")._value.get() == 1

    assert await world.outbox.republish_pending() == 0  # still down: still pending
    world.kafka.down = False
    assert await world.outbox.republish_pending() == 1
    assert world.kafka.published[-1] == Published(team_id, U, REMOVED, S)
    assert world.store.outboxes[team_id] == []
    assert await world.store.with_pending_outbox(limit=10) == []


async def test_pending_events_go_out_in_order_and_a_failure_stops_the_rest(world: World) -> None:
    """Events are sent oldest first; after a failed send the later ones wait, none is skipped."""
    team_id = await _team_with(world)
    world.kafka.down = True
    await world.service.add_member(team_id, MemberRef(user_id=U), caller=S, bearer=TOKEN)
    await world.service.add_member(team_id, MemberRef(user_id=V), caller=S, bearer=TOKEN)
    await world.service.remove_member(team_id, U, caller=S)
    assert [e.change for e in world.store.outboxes[team_id]] == [ADDED, ADDED, REMOVED]

    world.kafka.down = False
    world.kafka.fail_after = 2  # the team's creation event plus one more, then the broker fails
    assert not await world.outbox.flush(team_id)
    assert [(e.user_id, e.change) for e in world.store.outboxes[team_id]] == [
        (V, ADDED),
        (U, REMOVED),
    ]
    world.kafka.fail_after = None
    assert await world.outbox.flush(team_id)
    assert [(p.user_id, p.change) for p in world.kafka.published] == [
        (S, ADDED),
        (U, ADDED),
        (V, ADDED),
        (U, REMOVED),
    ]


async def test_concurrent_flushes_of_one_team_send_each_event_once() -> None:
    """Two publishers racing on one team (request path and retry loop) do not double-send."""
    store = MemoryTeamStore()
    gate = asyncio.Event()

    class SlowKafka(FakeKafka):
        async def send_and_wait(
            self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
        ) -> None:
            await gate.wait()
            await super().send_and_wait(topic, value, key, headers)

    kafka = SlowKafka()
    outbox = OutboxPublisher(
        store,
        kafka,
        local_leases("team"),
        EventMetrics.create(CollectorRegistry()),
        MemoryMembershipIndex(store),
        send_timeout_s=5.0,
    )
    store.outboxes["t" * 32] = [_event("a" * 32, U, ADDED), _event("b" * 32, U, REMOVED)]
    first = asyncio.create_task(outbox.flush("t" * 32))
    second = asyncio.create_task(outbox.flush("t" * 32))
    gate.set()
    assert list(await asyncio.gather(first, second)) == [True, True]
    assert [p.change for p in kafka.published] == [ADDED, REMOVED]


async def test_a_send_that_never_answers_is_a_failure_not_a_hang() -> None:
    """A broker that accepts the connection but never acks leaves the event pending."""
    store = MemoryTeamStore()

    class SilentKafka(FakeKafka):
        async def send_and_wait(
            self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
        ) -> None:
            await asyncio.Event().wait()

    outbox = OutboxPublisher(
        store,
        SilentKafka(),
        local_leases("team"),
        EventMetrics.create(CollectorRegistry()),
        MemoryMembershipIndex(store),
        send_timeout_s=0.01,
    )
    store.outboxes["t" * 32] = [_event("a" * 32, U, REMOVED)]
    assert not await outbox.flush("t" * 32)
    assert len(store.outboxes["t" * 32]) == 1


async def test_last_member_leaving_while_kafka_is_down_deletes_after_announcing(
    world: World,
) -> None:
    """The emptied team is gone for readers at once, its document once the event is out."""
    team_id = await _team_with(world)
    world.kafka.down = True
    await world.service.leave(team_id, caller=S)
    assert await world.store.get(team_id) is None
    assert team_id in world.store.teams  # still carries the REMOVED event
    world.kafka.down = False
    assert await world.outbox.republish_pending() == 1
    assert team_id not in world.store.teams
    assert world.kafka.published[-1] == Published(team_id, S, REMOVED, S)


async def test_a_database_failure_after_the_write_does_not_fail_the_request(world: World) -> None:
    """The change is stored; an error while publishing its outbox is left to the retry loop."""
    team_id = await _team_with(world, U)

    class BrokenStore(MemoryTeamStore):
        async def outbox(self, team_id: str) -> tuple[OutboxEvent, ...]:
            raise ConnectionError("database gone")

    world.store.__class__ = BrokenStore
    team = await world.service.remove_member(team_id, U, caller=S)
    assert U not in team.members
    assert world.store.outboxes[team_id][-1].change is REMOVED


async def test_a_retry_pass_stops_at_the_first_refused_send(world: World) -> None:
    """With Kafka down, one pass tries one team, not every pending one; once up, all drain."""
    teams = [await _team_with(world) for _ in range(3)]
    world.kafka.down = True
    for team_id in teams:
        await world.service.add_member(team_id, MemberRef(user_id=U), caller=S, bearer=TOKEN)
    failed = world.metrics.published.labels("added", "failed")
    before = failed._value.get()
    assert await world.outbox.republish_pending() == 0
    assert failed._value.get() == before + 1
    world.kafka.down = False
    assert await world.outbox.republish_pending() == 3
    assert await world.store.with_pending_outbox(limit=10) == []


async def test_the_membership_index_follows_every_change_before_kafka_hears_of_it(
    world: World,
) -> None:
    """Creation, additions, deactivation and removal reach the index in order, each before its
    event is published; a removed member's entry is gone."""
    team = await _team_with(world, U, V)
    assert await world.index.teams_of(S) == [MembershipEntry(team, True)]
    assert await world.index.teams_of(U) == [MembershipEntry(team, True)]
    await world.service.update(team, TeamChanges(active=False), caller=S)
    assert await world.index.teams_of(V) == [MembershipEntry(team, False)]
    await world.service.remove_member(team, U, caller=S)
    assert await world.index.teams_of(U) == []
    assert [p.change for p in world.kafka.published][-1] is REMOVED


async def test_an_index_write_that_fails_holds_the_event_back_until_it_succeeds(
    world: World,
) -> None:
    """With the index's database unreachable the event is neither published nor dropped; the
    next pass applies and publishes it."""
    team = await _team_with(world)
    world.kafka.records.clear()
    world.index.fail_next = 1
    await world.service.add_member(team, MemberRef(user_id=U), caller=S, bearer=TOKEN)
    assert world.kafka.published == []
    assert await world.index.teams_of(U) == []
    assert await world.outbox.flush(team)
    assert await world.index.teams_of(U) == [MembershipEntry(team, True)]
    assert [(p.user_id, p.change) for p in world.kafka.published] == [(U, ADDED)]
