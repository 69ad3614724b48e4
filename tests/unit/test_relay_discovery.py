"""Controller discovery: announcements add controllers, leaving or silence drops them, seeds stay;
controllers announce themselves and their leaving."""

from __future__ import annotations

import asyncio
from typing import Any

from chatcore.kafka import CONTROLLERS_TOPIC
from chatcore.proto.chat.v1 import chat_pb2
from services.controller.announce import Announcer, advertised_address
from services.relay.discovery import ControllerDirectory, DiscoveryFeed


def _ann(address: str, *, leaving: bool = False, ttl_ms: int = 6000, group: str = "g") -> Any:
    return chat_pb2.ControllerAnnouncement(
        address=address, leaving=leaving, ttl_ms=ttl_ms, group=group
    )


class FakeLink:
    def __init__(self) -> None:
        self.added: list[str] = []
        self.removed: list[str] = []

    def add(self, address: str) -> bool:
        self.added.append(address)
        return True

    async def remove(self, address: str) -> bool:
        self.removed.append(address)
        return True


def _feed(seeds: list[str], clock: list[int]) -> tuple[DiscoveryFeed, FakeLink]:
    link = FakeLink()
    feed = DiscoveryFeed(
        None,  # apply/expire never touch the consumer
        ControllerDirectory(seeds, "g"),
        add=link.add,
        remove=link.remove,
        clock=lambda: clock[0],
    )
    return feed, link


async def test_a_joining_controller_is_added_and_a_leaving_one_dropped() -> None:
    """An announcement adds the controller; its leaving record drops it."""
    clock = [0]
    feed, link = _feed(["seed:1"], clock)
    await feed.apply(_ann("c2:50051"))
    await feed.apply(_ann("c2:50051", leaving=True))
    assert link.added == ["c2:50051"]
    assert link.removed == ["c2:50051"]


async def test_a_silent_controller_expires_after_its_ttl() -> None:
    """A controller killed with -9 stops announcing and is dropped once its ttl passed."""
    clock = [1000]
    feed, link = _feed([], clock)
    await feed.apply(_ann("c3:1", ttl_ms=6000))
    clock[0] = 6999
    await feed.expire()
    assert link.removed == []
    await feed.apply(_ann("c3:1", ttl_ms=6000))  # re-announced: lives on
    clock[0] = 12_998
    await feed.expire()
    assert link.removed == []
    clock[0] = 12_999
    await feed.expire()
    assert link.removed == ["c3:1"]


async def test_another_groups_controllers_are_ignored() -> None:
    """One Kafka may carry several deployments: only the relay's own group's controllers count."""
    clock = [0]
    feed, link = _feed([], clock)
    await feed.apply(_ann("other:1", group="other-deployment"))
    await feed.apply(_ann("other:1", group="other-deployment", leaving=True))
    assert (link.added, link.removed) == ([], [])
    # Logged once per group, since it may be the relays' and controllers' settings disagreeing.
    assert feed.other_groups == {"other-deployment"}


async def test_seeds_are_never_dropped() -> None:
    """A seed (CHAT_CONTROLLER_ADDRS) that leaves or goes silent keeps its stream."""
    clock = [0]
    feed, link = _feed(["seed:1"], clock)
    await feed.apply(_ann("seed:1", ttl_ms=10))
    clock[0] = 100
    await feed.expire()
    await feed.apply(_ann("seed:1", leaving=True))
    assert link.removed == []
    assert link.added == ["seed:1"]


class RecordingSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []

    async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> object:
        self.sent.append((topic, value, key))
        return None


async def test_the_announcer_announces_with_a_ttl_of_three_intervals() -> None:
    """Records carry the address, a ttl of three intervals, and leaving on the way out."""
    sender = RecordingSender()
    announcer = Announcer(sender, "ctl:50051", group="g", interval_s=2.0, timeout_s=1.0)
    assert await announcer.announce()
    assert await announcer.announce(leaving=True)
    decoded = [chat_pb2.ControllerAnnouncement.FromString(v) for _t, v, _k in sender.sent]
    assert [(d.address, d.group, d.leaving, d.ttl_ms) for d in decoded] == [
        ("ctl:50051", "g", False, 6000),
        ("ctl:50051", "g", True, 6000),
    ]
    assert {(t, k) for t, _v, k in sender.sent} == {(CONTROLLERS_TOPIC, b"ctl:50051")}


async def test_an_announcement_kafka_never_takes_is_a_logged_failure() -> None:
    """A send that hangs times out and reports False instead of blocking the controller."""

    class Hanging(RecordingSender):
        async def send_and_wait(self, topic: str, value: bytes, key: bytes) -> object:
            await asyncio.Event().wait()
            return None

    announcer = Announcer(Hanging(), "ctl:1", group="g", interval_s=1.0, timeout_s=0.01)
    assert not await announcer.announce()


def test_advertised_address_defaults_to_the_bound_host() -> None:
    """Configured wins; a loopback bind advertises loopback; a wildcard bind the host name."""
    assert advertised_address("x:1", "127.0.0.1", 5) == "x:1"
    assert advertised_address("", "127.0.0.1", 5) == "127.0.0.1:5"
    assert not advertised_address("", "0.0.0.0", 5).startswith("0.0.0.0")  # noqa: S104
