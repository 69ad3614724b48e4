"""Per-user budgets and the bounds on concurrent scans, with a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from chatcore.errors import Busy, RateLimited
from services.management.limits import ScanGate, UserBudget

ALICE, BOB = "a" * 32, "b" * 32


def test_a_user_gets_the_burst_then_waits_for_the_refill() -> None:
    """Three writes at once, the fourth refused with the wait rounded up, one more per second."""
    now = [0.0]
    limiter = UserBudget(burst=3, per_s=0.4, clock=lambda: now[0])
    for _ in range(3):
        limiter.check(ALICE)
    with pytest.raises(RateLimited) as refused:
        limiter.check(ALICE)
    assert refused.value.retry_after == 3  # 2.5 s for one token, rounded up
    limiter.check(BOB)  # budgets are per user
    now[0] += 2.5
    limiter.check(ALICE)
    with pytest.raises(RateLimited):
        limiter.check(ALICE)


async def test_scan_gate_refuses_at_once_without_a_wait() -> None:
    """With every slot taken and no wait, the next scan is Busy; a freed slot serves again."""
    gate = ScanGate(limit=2, wait_s=0)
    async with gate.hold(ALICE), gate.hold(ALICE):
        with pytest.raises(Busy) as busy:
            async with gate.hold(ALICE):
                pass
        assert busy.value.retry_after == 1
    async with gate.hold(ALICE):
        pass


async def test_scan_gate_queues_briefly_for_a_slot() -> None:
    """A scan that arrives while the slot is taken runs as soon as it is freed."""
    gate = ScanGate(limit=1, wait_s=30)
    release = asyncio.Event()
    order: list[str] = []

    async def first() -> None:
        async with gate.hold(ALICE):
            order.append("first")
            await release.wait()

    async def second() -> None:
        async with gate.hold(BOB):
            order.append("second")

    one = asyncio.create_task(first())
    while not order:
        await asyncio.sleep(0)
    two = asyncio.create_task(second())
    await asyncio.sleep(0)
    assert order == ["first"]
    release.set()
    await asyncio.gather(one, two)
    assert order == ["first", "second"]


async def test_scan_gate_gives_up_after_its_wait() -> None:
    """A scan that cannot get a slot within the wait is Busy, and does not hold a slot later."""
    gate = ScanGate(limit=1, wait_s=0.01)
    async with gate.hold(ALICE):
        with pytest.raises(Busy):
            async with gate.hold(ALICE):
                pass
    async with gate.hold(ALICE):
        pass


async def test_one_user_holds_at_most_their_share_of_the_slots() -> None:
    """A user holding their share is refused at once (no wait) while slots are free; another
    user still gets one; a share freed serves its user again."""
    gate = ScanGate(limit=4, wait_s=30, per_user=2)
    async with gate.hold(ALICE), gate.hold(ALICE):
        with pytest.raises(Busy) as busy:
            async with gate.hold(ALICE):
                pass
        assert busy.value.retry_after == 1
        async with gate.hold(BOB), gate.hold(BOB):
            pass
    async with gate.hold(ALICE), gate.hold(ALICE):
        pass


async def test_a_refused_or_failed_scan_gives_its_share_back() -> None:
    """Neither a scan refused for want of a slot nor one whose block raised keeps counting
    against its user."""
    gate = ScanGate(limit=1, wait_s=0, per_user=1)
    async with gate.hold(BOB):
        with pytest.raises(Busy):
            async with gate.hold(ALICE):
                pass
    with pytest.raises(RuntimeError):
        async with gate.hold(ALICE):
            raise RuntimeError("the database went away")
    async with gate.hold(ALICE):
        pass
