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


def test_next_epoch_is_above_the_last_and_at_least_its_expiry_in_ms() -> None:
    """The next epoch follows from the latest record alone and never falls behind its expiry."""
    assert next_epoch(LeaseRecord("k", 99_999, "o", 12.5)) == 100_000
    assert next_epoch(LeaseRecord("k", 5, "o", 12.5)) == 12_500
    assert next_epoch(LeaseRecord("k", 0, "o", 12.0001)) == 12_001


class ReadThenWait(MemoryLeaseStore):
    """A store whose first insert of a lease waits for ``go``: a process that read the latest
    record, chose its epoch, and then paused before its insert reached the database."""

    def __init__(self, shared: MemoryLeaseStore) -> None:
        super().__init__()
        self._records = shared._records
        self.read = asyncio.Event()
        self.go = asyncio.Event()

    async def insert(self, record: LeaseRecord) -> bool:
        if not record.released and not self.read.is_set():
            self.read.set()
            await self.go.wait()
        return await super().insert(record)


def _on(store: MemoryLeaseStore, clock: Clock) -> Leases:
    return Leases(
        store, namespace="n", owner="o", ttl_s=10.0, wait_s=5.0, poll_s=0.001, clock=clock
    )


async def _race_after_one_read(shared: MemoryLeaseStore, clock: Clock) -> list[int]:
    """Two takers read the same free record a second apart and pause before their inserts; the
    first then takes the key, and the second's insert lands while the first is inside. The
    epochs they held, in the order they held them."""
    first, second = ReadThenWait(shared), ReadThenWait(shared)
    inside: list[str] = []
    epochs: list[int] = []
    entered = asyncio.Event()

    async def work(leases: Leases, name: str) -> None:
        async with leases.hold("k") as lease:
            assert not inside, "two holders at once"
            inside.append(name)
            epochs.append(lease.epoch)
            entered.set()
            await asyncio.sleep(0.01)
            inside.remove(name)

    one = asyncio.create_task(work(_on(first, clock), "first"))
    await first.read.wait()
    clock.now += 1.0
    two = asyncio.create_task(work(_on(second, clock), "second"))
    await second.read.wait()
    first.go.set()
    await entered.wait()
    second.go.set()
    await asyncio.gather(one, two)
    return epochs


async def test_two_takers_reading_the_same_free_record_at_different_times_get_one_epoch() -> None:
    """Both read the same free record, one a second later: one insert wins, never two holders."""
    shared, clock = MemoryLeaseStore(), Clock()
    for _ in ("a key with no records", "a key with a released record"):
        epochs = await _race_after_one_read(shared, clock)
        assert len(set(epochs)) == 2
        assert epochs == sorted(epochs)


async def test_a_stale_taker_never_holds_an_epoch_a_later_holder_pruned() -> None:
    """A taker that read, paused while two others took the key, then inserted the (pruned, so
    free) next epoch gives it back and waits for the current holder."""
    shared, clock = MemoryLeaseStore(), Clock()
    async with _on(shared, clock).hold("k"):
        pass  # the key has a released record
    slow = ReadThenWait(shared)
    order: list[str] = []

    async def stale() -> int:
        async with _on(slow, clock).hold("k") as lease:
            order.append("stale in")
            return lease.epoch

    paused = asyncio.create_task(stale())
    await slow.read.wait()
    async with _on(shared, clock).hold("k"):
        pass  # takes the epoch the stale taker computed
    async with _on(shared, clock).hold("k") as current:
        slow.go.set()  # the stale insert lands now: its epoch was pruned by this holder
        await asyncio.sleep(0.05)
        order.append("current out")
    assert await paused > current.epoch
    assert order == ["current out", "stale in"]


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
        if not record.released:  # not the key's genesis record
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
