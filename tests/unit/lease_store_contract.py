"""The lease store contract: the same tests over the in-memory store (tests/unit) and over
MongoDB/FerretDB (tests/integration/test_lease_store_contract.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from chatcore.leases import LeaseBusy, LeaseLost, LeaseRecord, Leases, LeaseStore


def _record(key: str, epoch: int, *, expires_at: float = 1e12) -> LeaseRecord:
    return LeaseRecord(key, epoch, "tester", expires_at)


def _leases(store: LeaseStore, *, ttl_s: float = 5.0, wait_s: float = 2.0) -> Leases:
    return Leases(store, namespace="ns", owner="t", ttl_s=ttl_s, wait_s=wait_s, poll_s=0.01)


class LeaseStoreContract:
    @pytest.fixture
    def lease_store(self) -> LeaseStore:
        raise NotImplementedError

    async def test_an_epoch_is_taken_once(self, lease_store: LeaseStore) -> None:
        """Two inserts of the same (key, epoch): the second is refused."""
        assert await lease_store.insert(_record("k", 7))
        assert not await lease_store.insert(_record("k", 7))
        assert await lease_store.insert(_record("other", 7))

    async def test_latest_is_the_highest_epoch(self, lease_store: LeaseStore) -> None:
        """The newest record decides; an unknown key has none."""
        assert await lease_store.latest("k") is None
        for epoch in (3, 9, 5):
            assert await lease_store.insert(_record("k", epoch))
        latest = await lease_store.latest("k")
        assert latest is not None
        assert (latest.epoch, latest.released) == (9, False)

    async def test_release_and_prune(self, lease_store: LeaseStore) -> None:
        """A release marks the record; a prune removes only older epochs of that key."""
        for epoch in (1, 2, 3):
            await lease_store.insert(_record("k", epoch))
        await lease_store.insert(_record("j", 1))
        await lease_store.release("k", 3)
        await lease_store.prune("k", 3)
        latest = await lease_store.latest("k")
        assert latest is not None
        assert (latest.epoch, latest.released) == (3, True)
        assert await lease_store.insert(_record("k", 2))  # pruned, so free again
        assert await lease_store.latest("j") is not None

    async def test_sweep_deletes_only_long_expired_records(self, lease_store: LeaseStore) -> None:
        """Records that expired before the cut are deleted, the rest stay."""
        await lease_store.insert(_record("old", 1, expires_at=100.0))
        await lease_store.insert(_record("new", 1, expires_at=1e12))
        assert await lease_store.sweep(200.0) == 1
        assert await lease_store.latest("old") is None
        assert await lease_store.latest("new") is not None

    async def test_two_instances_exclude_each_other(self, lease_store: LeaseStore) -> None:
        """Two Leases on one store (two processes): never both inside, epochs always grow."""
        first, second = _leases(lease_store), _leases(lease_store)
        inside: list[str] = []
        epochs: list[int] = []

        async def work(leases: Leases, name: str) -> None:
            for _ in range(5):
                async with leases.hold("team") as lease:
                    assert not inside, "two holders at once"
                    inside.append(name)
                    epochs.append(lease.epoch)
                    await asyncio.sleep(0)
                    inside.remove(name)

        await asyncio.gather(work(first, "a"), work(second, "b"))
        assert epochs == sorted(epochs)
        assert len(set(epochs)) == 10

    async def test_an_expired_lease_is_taken_over_and_fenced(self, lease_store: LeaseStore) -> None:
        """A holder that never gives back (killed, paused) loses the key after its ttl; its
        lease then reports itself lost and the next epoch is higher."""
        paused, waiting = _leases(lease_store, ttl_s=0.3), _leases(lease_store, wait_s=3.0)
        held = paused.hold("k")
        old = await held.__aenter__()
        started = time.monotonic()
        async with waiting.hold("k") as new:
            assert time.monotonic() - started < 2.0
            assert new.epoch > old.epoch
        with pytest.raises(LeaseLost):
            old.check()

    async def test_a_busy_key_gives_up_after_the_wait(self, lease_store: LeaseStore) -> None:
        """A key held by another instance for longer than wait_s answers LeaseBusy."""
        holder, waiter = _leases(lease_store, ttl_s=30.0), _leases(lease_store, wait_s=0.1)
        async with holder.hold("k"):
            with pytest.raises(LeaseBusy):
                async with waiter.hold("k"):
                    pass
