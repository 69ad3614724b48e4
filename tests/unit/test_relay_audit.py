"""The relay's membership audit: one member-list read per channel per pass, and a pass after
every controller stream that comes back."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable

import pytest

from chatcore.errors import Forbidden
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.settings import Settings
from services.relay.audit import MembershipAudit
from services.relay.frames import TypingFrame
from services.relay.gate import Gate, check_membership
from services.relay.hub import Effects, Hub, Session
from tests.unit.relay_fakes import FakeAuthority, RecordingFanout, offline_relay

TEAM, OTHER = "t" * 32, "o" * 32
ALICE, BOB, CAROL = "a" * 32, "b" * 32, "c" * 32


class _CountingAuthority(FakeAuthority):
    """The controllers' member lists from a dict; counts the reads of each channel."""

    def __init__(self, members: dict[str, list[str]]) -> None:
        super().__init__(members)
        self.reads: Counter[str] = Counter()

    async def members(self, channel_id: str) -> chat_pb2.GetMembersReply:
        self.reads[channel_id] += 1
        await asyncio.sleep(0)  # a real read yields: overlapping reads would show up
        return await super().members(channel_id)


async def _until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_a_pass_reads_each_channel_once_however_many_sockets_hold_it() -> None:
    """Six sockets on one team and two on another cost two member-list reads per pass, and the
    removed member's sockets lose the team."""
    fanout = RecordingFanout()
    hub = Hub(fanout)
    on_team = [Session(user, object(), {TEAM: True}) for user in (ALICE, ALICE, BOB, BOB, CAROL)]
    on_both = Session(CAROL, object(), {TEAM: True, OTHER: True})
    on_other = Session(BOB, object(), {OTHER: True})
    for session in (*on_team, on_both, on_other):
        hub.attach(session)
        hub.greet(session)
    authority = _CountingAuthority({TEAM: [ALICE, BOB], OTHER: [BOB, CAROL]})
    applied: list[Effects] = []
    audit = MembershipAudit(hub, Gate(authority), authority, applied.append, interval_s=60)

    assert await audit.audit_all() == 2  # Carol's two sockets on the team
    assert authority.reads == {TEAM: 1, OTHER: 1}
    for carol in (on_team[-1], on_both):
        assert TEAM not in carol.channels
        assert {"type": "membership", "channel_id": TEAM, "event": "removed"} in fanout.got(carol)
    assert OTHER in on_both.channels

    assert await audit.audit_all() == 0
    assert authority.reads == {TEAM: 2, OTHER: 2}


async def test_a_controller_stream_back_up_triggers_an_audit_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When a controller stream comes back UP the relay re-reads its channels' members at once
    (long before the periodic pass), so a removal whose event was lost meanwhile is enforced."""
    settings = Settings(controller_addrs=("controller.invalid:50051",), relay_audit_interval_s=60)
    relay = offline_relay(settings, "relay-audit")
    authority = _CountingAuthority({TEAM: [ALICE]})  # Carol was removed; her event was lost
    monkeypatch.setattr(relay.link, "members", authority.members)
    carol = Session(CAROL, object(), {TEAM: True})
    relay.hub.attach(carol)
    audit = asyncio.create_task(relay.audit.run())
    try:
        relay._on_stream_up("controller.invalid:50051", False)
        await _until(lambda: relay.audit.rounds == 1)
        assert authority.reads == {TEAM: 1}
        with pytest.raises(Forbidden):
            check_membership(carol, TypingFrame(TEAM, "*"))
    finally:
        audit.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await audit
        await relay.link.stop()


class _HeldAuthority(FakeAuthority):
    """Member-list reads that answer with the list as it was when asked, once released."""

    def __init__(self, members: dict[str, list[str]]) -> None:
        super().__init__(members)
        self.release = asyncio.Event()
        self.asked = 0

    async def members(self, channel_id: str) -> chat_pb2.GetMembersReply:
        reply = await super().members(channel_id)  # read now ...
        self.asked += 1
        await self.release.wait()  # ... answered later
        return reply


async def test_an_audit_read_overtaken_by_an_added_event_revokes_nothing() -> None:
    """The audit reads the team, Dave is added and his grant gives his socket the team, then the
    old list arrives: Dave keeps the team (the next pass reads again) and the stale list is not
    cached for DM checks."""
    hub = Hub(RecordingFanout())
    dave = "d" * 32
    socket = Session(dave, object(), {OTHER: True})
    hub.attach(socket)
    hub.greet(socket)
    authority = _HeldAuthority({TEAM: [ALICE], OTHER: [dave]})
    gate = Gate(authority)
    audit = MembershipAudit(hub, gate, authority, lambda _e: None, interval_s=60)
    sitter = Session(ALICE, object(), {TEAM: True})
    hub.attach(sitter)
    hub.greet(sitter)
    running = asyncio.create_task(audit.audit_all())
    await _until(lambda: authority.asked == 2)
    effects = hub.deliver(
        chat_pb2.DeliveryBatch(
            deliveries=[
                chat_pb2.Delivery(
                    membership=chat_pb2.MembershipEvent(
                        channel_id=TEAM, user_id=dave, change=chat_pb2.MEMBERSHIP_CHANGE_ADDED
                    )
                )
            ]
        )
    )
    gate.forget(effects.members_changed)
    hub.finish_grant(effects.grants[0], member=True, active=True)
    authority.members_of[TEAM] = [ALICE, dave]
    authority.release.set()
    assert await running == 0
    assert TEAM in socket.channels
    assert dave in await gate.members_of(TEAM)  # read again, not the list from before


async def test_a_member_list_read_overtaken_by_a_removal_is_not_used_after_it() -> None:
    """A DM check's read of the team is on its way when Bob is removed: DM checks after the
    removal read the team again instead of joining that read or caching its answer."""
    authority = _HeldAuthority({TEAM: [ALICE, BOB]})
    gate = Gate(authority)
    before = asyncio.create_task(gate.members_of(TEAM))
    await _until(lambda: authority.asked == 1)
    gate.forget([TEAM])
    authority.members_of[TEAM] = [ALICE]
    after = asyncio.create_task(gate.members_of(TEAM))
    await _until(lambda: authority.asked == 2)
    authority.release.set()
    assert BOB in await before  # asked before the removal: a concurrent read
    assert await after == frozenset({ALICE})
    assert await gate.members_of(TEAM) == frozenset({ALICE})
    assert authority.asked == 2
