"""Leases: expiry on the holder's own clock, epochs that never repeat, a local queue."""

from __future__ import annotations

import asyncio

import pytest

from chatcore.errors import Unavailable
from chatcore.leases import LeaseLost, LeaseRecord, Leases, MemoryLeaseStore, next_epoch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_next_epoch_is_above_the_last_and_at_least_now_in_ms() -> None:
    """A swept key restarts at the current millisecond, never below an epoch handed out."""
    assert next_epoch(None, 12.5) == 12_500
    assert next_epoch(LeaseRecord("k", 99_999, "o", 0.0), 12.5) == 100_000
    assert next_epoch(LeaseRecord("k", 5, "o", 0.0), 12.5) == 12_500


async def test_a_holder_stops_a_margin_before_the_expiry_others_see() -> None:
    """check() passes inside ttl - margin and raises after, on the holder's monotonic clock."""
    mono = Clock()
    leases = Leases(
        MemoryLeaseStore(),
        namespace="n",
        owner="o",
        ttl_s=10.0,
        wait_s=1.0,
        margin_s=2.0,
        clock=Clock(),
        monotonic=mono,
    )
    async with leases.hold("k") as lease:
        mono.now += 7.9
        lease.check()
        mono.now += 0.2
        with pytest.raises(LeaseLost):
            lease.check()


async def test_waiters_of_one_process_queue_locally() -> None:
    """Ten local waiters take the key one after the other, each with a new epoch."""
    store = MemoryLeaseStore()
    inserts: list[int] = []
    original = store.insert

    async def counting(record: LeaseRecord) -> bool:
        inserts.append(record.epoch)
        return await original(record)

    store.insert = counting  # type: ignore[method-assign]
    leases = Leases(store, namespace="n", owner="o", ttl_s=10.0, wait_s=1.0)
    order: list[int] = []

    async def one(i: int) -> None:
        async with leases.hold("k"):
            order.append(i)
            await asyncio.sleep(0)

    await asyncio.gather(*(one(i) for i in range(10)))
    assert order == list(range(10))
    assert inserts == sorted(set(inserts))
    assert len(inserts) == 10


async def test_a_failed_release_only_delays_the_next_holder() -> None:
    """A release that cannot reach the database does not fail the protected work."""
    store = MemoryLeaseStore()

    async def broken(key: str, epoch: int) -> None:
        raise Unavailable("database down")

    store.release = broken  # type: ignore[method-assign]
    leases = Leases(store, namespace="n", owner="o", ttl_s=10.0, wait_s=1.0)
    async with leases.hold("k"):
        pass
    latest = await store.latest("n:k")
    assert latest is not None
    assert not latest.released


def test_bad_durations_are_refused() -> None:
    """A lease without a positive ttl or wait is a configuration error."""
    with pytest.raises(ValueError, match="positive"):
        Leases(MemoryLeaseStore(), namespace="n", owner="o", ttl_s=0.0, wait_s=1.0)
