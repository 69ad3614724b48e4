"""Membership events: protobuf encoding, key and correlation header, and a failing broker."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from chatcore.kafka import EVENTS_TOPIC
from chatcore.logging import bind_context, reset_context
from chatcore.proto.chat.v1 import chat_pb2
from services.management.events import EventMetrics, KafkaMembershipPublisher, encode_event
from services.management.model import MembershipChange

TEAM, USER, ACTOR = "a" * 32, "b" * 32, "c" * 32


class FakeProducer:
    """Records sends; fails them when told to."""

    def __init__(self, *, fail: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail

    async def send_and_wait(self, topic: str, **kwargs: Any) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append({"topic": topic, **kwargs})


@pytest.mark.parametrize(
    ("change", "proto"),
    [
        (MembershipChange.ADDED, chat_pb2.MEMBERSHIP_CHANGE_ADDED),
        (MembershipChange.REMOVED, chat_pb2.MEMBERSHIP_CHANGE_REMOVED),
        (MembershipChange.DEACTIVATED, chat_pb2.MEMBERSHIP_CHANGE_DEACTIVATED),
        (MembershipChange.ACTIVATED, chat_pb2.MEMBERSHIP_CHANGE_ACTIVATED),
    ],
)
def test_encoding_round_trips(change: MembershipChange, proto: int) -> None:
    """Each domain change maps to its protobuf enum value and every field survives."""
    event = chat_pb2.MembershipEvent.FromString(
        encode_event(TEAM, USER, change, actor=ACTOR, ts_ms=1234)
    )
    assert (event.channel_id, event.user_id, event.change, event.ts_ms, event.actor) == (
        TEAM,
        USER,
        proto,
        1234,
        ACTOR,
    )


async def test_publish_keys_by_team_and_carries_the_correlation_id() -> None:
    """The record goes to chat.events.v1, keyed by team id, with the bound correlation id."""
    producer = FakeProducer()
    metrics = EventMetrics.create(CollectorRegistry())
    publisher = KafkaMembershipPublisher(producer, metrics, clock=lambda: 1.5)
    tokens = bind_context(request_id="r1", correlation_id="corr-1")
    try:
        await publisher.publish(TEAM, USER, MembershipChange.ADDED, actor=ACTOR)
    finally:
        reset_context(tokens)
    (sent,) = producer.sent
    assert sent["topic"] == EVENTS_TOPIC
    assert sent["key"] == TEAM.encode()
    assert sent["headers"] == [("correlation_id", b"corr-1")]
    assert chat_pb2.MembershipEvent.FromString(sent["value"]).ts_ms == 1500
    assert metrics.published.labels("added", "ok")._value.get() == 1


async def test_broker_failure_is_counted_not_raised() -> None:
    """A failed publish after a stored change is logged and counted; the request still succeeds."""
    metrics = EventMetrics.create(CollectorRegistry())
    publisher = KafkaMembershipPublisher(FakeProducer(fail=True), metrics)
    await publisher.publish(TEAM, "", MembershipChange.DEACTIVATED, actor=ACTOR)
    assert metrics.published.labels("deactivated", "failed")._value.get() == 1
