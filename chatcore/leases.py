"""Leases: per-key mutual exclusion across processes, with a fencing epoch.

Why it exists: management and auth run as several instances behind nginx, and FerretDB 1.24 (the
local database) runs a conditional update as a read followed by a separate write keyed by ``_id``
alone, so a precondition in an update's filter is not atomic there. The one write FerretDB does
apply atomically is an insert under a unique index (PostgreSQL enforces it). A lease is therefore a
document ``{_id: "<key>#<epoch>"}`` taken by inserting it: of two processes inserting the same
epoch one wins, the other waits. A lease expires in code (``expires_at``, no TTL index), is given
back on release, and the next holder takes the next epoch.

The next epoch is a function of the latest record alone (``next_epoch``), never of the taker's
clock: two processes that read the same free record must compute the same ``_id``, or both inserts
succeed and both hold the key. It is also at least the latest record's expiry in milliseconds, so
epochs track time: a key whose records were all swept starts again above every epoch it had
(fences written under it included). A key without records first gets a *genesis* record (epoch 0,
already given back, timestamped by whoever inserted it first); everyone then derives the first
real epoch from that one record.

A taker whose read was stale could still insert an epoch that a later holder already pruned (the
``_id`` is free again). So after its insert a taker reads the latest record once more and holds the
key only if its own epoch is still the latest; otherwise it gives the record back and reads again.

Mutual exclusion alone is not enough: a holder paused past its expiry (a GC pause, a stopped
process, a slow network) would still write when it wakes. So every protected write carries the
lease's epoch as a fence (``chatcore.fencing``): it matches only while the document's fence is not
newer than the writer's, and it sets the fence to its epoch. Once the next holder has written, the
old holder's writes match nothing. A holder also checks its own deadline before it writes
(``Lease.check``), which catches the common case without a database round trip.

Inside one process the waiters for a key queue on an ``asyncio.Lock`` first, so only one of them
at a time asks the database; across processes a waiter polls the latest record at ``poll_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from chatcore.errors import Unavailable
from chatcore.locks import KeyedLocks


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseRecord:
    """One stored lease: the key, its epoch, who took it, until when (wall clock, seconds)."""

    key: str
    epoch: int
    owner: str
    expires_at: float
    released: bool = False

    def free(self, now: float) -> bool:
        """Whether the next epoch may be taken: given back, or expired."""
        return self.released or self.expires_at <= now


class LeaseStore(Protocol):
    async def latest(self, key: str) -> LeaseRecord | None:
        """The key's record with the highest epoch (None: the key was never leased or swept)."""

    async def insert(self, record: LeaseRecord) -> bool:
        """Store the record unless its (key, epoch) exists; False if it does. Atomic."""

    async def release(self, key: str, epoch: int) -> None:
        """Mark the record given back (only its holder calls this)."""

    async def prune(self, key: str, below: int) -> None:
        """Delete the key's records with a lower epoch (history nobody needs)."""

    async def sweep(self, before: float) -> int:
        """Delete records that expired or were given back before ``before``; how many."""


class LeaseLost(Unavailable):
    """The lease expired before the protected work was done: nothing more may be written."""

    code = "unavailable"


class LeaseBusy(Unavailable):
    """The key stayed leased by someone else for longer than a caller may wait."""

    code = "unavailable"


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """A held lease. ``epoch`` is the fence every protected write carries."""

    key: str
    epoch: int
    deadline: float  # on the holder's monotonic clock, with the safety margin already taken off
    monotonic: Callable[[], float]

    def check(self) -> None:
        """Raise ``LeaseLost`` once the lease may have passed to someone else."""
        if self.monotonic() >= self.deadline:
            raise LeaseLost(f"the lease on {self.key} expired before the write")


# Records older than this (past their expiry) are deleted by the services' sweeps.
SWEEP_AFTER_S = 3600.0


def instance_owner() -> str:
    """Who holds a lease, for the operator reading the collection: host, pid and a nonce."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def next_epoch(latest: LeaseRecord) -> int:
    """Above the latest epoch and at least its expiry in ms: the same for every reader of it."""
    return max(latest.epoch + 1, math.ceil(latest.expires_at * 1000))


GENESIS_EPOCH = 0


class Leases:
    """Takes, holds and gives back leases on keys of one namespace (one store)."""

    def __init__(
        self,
        store: LeaseStore,
        *,
        namespace: str,
        owner: str,
        ttl_s: float,
        wait_s: float,
        poll_s: float = 0.02,
        margin_s: float | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        pause: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        if ttl_s <= 0 or wait_s <= 0:
            raise ValueError("ttl_s and wait_s must be positive")
        self._store = store
        self._namespace = namespace
        self._owner = owner
        self._ttl_s = ttl_s
        self._wait_s = wait_s
        self._poll_s = poll_s
        # The holder stops writing this long before the expiry other processes see: their clocks
        # may run a little ahead of ours.
        self._margin_s = ttl_s / 5 if margin_s is None else margin_s
        self._clock = clock
        self._monotonic = monotonic
        self._pause = pause if pause is not None else asyncio.sleep
        self._local = KeyedLocks()

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[Lease]:
        """Hold the key's lease for the block; ``LeaseBusy`` if it stays taken past ``wait_s``."""
        key = f"{self._namespace}:{key}"
        async with self._local.hold(key):
            lease = await self._acquire(key)
            try:
                yield lease
            finally:
                # Given back at once, so the next holder does not wait for the expiry; a failure
                # here only makes them wait until it.
                with contextlib.suppress(Unavailable):
                    await self._store.release(key, lease.epoch)

    async def _acquire(self, key: str) -> Lease:
        give_up = self._monotonic() + self._wait_s
        while True:
            started = self._monotonic()
            latest = await self._store.latest(key)
            now = self._clock()
            if latest is None:
                # Of several first takers one genesis record wins; all read it back next.
                await self._store.insert(
                    LeaseRecord(key, GENESIS_EPOCH, self._owner, now, released=True)
                )
                continue
            if latest.free(now):
                epoch = next_epoch(latest)
                record = LeaseRecord(key, epoch, self._owner, now + self._ttl_s)
                if not await self._store.insert(record):
                    continue  # someone took this epoch first: read again
                if not await self._still_latest(key, epoch):
                    continue
                with contextlib.suppress(Unavailable):
                    await self._store.prune(key, epoch)
                # Measured from before the read: the expiry others see is no earlier.
                deadline = started + self._ttl_s - self._margin_s
                return Lease(key, epoch, deadline, self._monotonic)
            if self._monotonic() >= give_up:
                raise LeaseBusy(f"{key} is busy")
            await self._pause(min(self._poll_s, max(0.0, latest.expires_at - now)))

    async def _still_latest(self, key: str, epoch: int) -> bool:
        """Whether our new record is the key's latest; if not, it is given back at once.

        Our insert succeeds on a stale read only where a later holder already pruned that epoch,
        and that holder's record (or a newer one) is still there to be seen: it never is pruned
        by anyone but a later holder.
        """
        latest = await self._store.latest(key)
        if latest is not None and latest.epoch == epoch:
            return True
        with contextlib.suppress(Unavailable):
            await self._store.release(key, epoch)
        return False

    async def sweep(self, *, older_than_s: float) -> int:
        """Delete records free for longer than ``older_than_s`` (expiry in code, no TTL index)."""
        return await self._store.sweep(self._clock() - older_than_s)


class MemoryLeaseStore:
    """Leases of one process: the default where a single instance is enough (tests, benches)."""

    def __init__(self) -> None:
        self._records: dict[str, dict[int, LeaseRecord]] = {}

    async def latest(self, key: str) -> LeaseRecord | None:
        records = self._records.get(key)
        return records[max(records)] if records else None

    async def insert(self, record: LeaseRecord) -> bool:
        records = self._records.setdefault(record.key, {})
        if record.epoch in records:
            return False
        records[record.epoch] = record
        return True

    async def release(self, key: str, epoch: int) -> None:
        record = self._records.get(key, {}).get(epoch)
        if record is not None:
            self._records[key][epoch] = dataclasses.replace(record, released=True)

    async def prune(self, key: str, below: int) -> None:
        records = self._records.get(key, {})
        for epoch in [e for e in records if e < below]:
            del records[epoch]

    async def sweep(self, before: float) -> int:
        gone = 0
        for key in list(self._records):
            records = self._records[key]
            for epoch in [e for e, r in records.items() if r.expires_at < before]:
                del records[epoch]
                gone += 1
            if not records:
                del self._records[key]
        return gone


def local_leases(namespace: str, *, ttl_s: float = 30.0, wait_s: float = 10.0) -> Leases:
    """Leases that exclude within this process only (one instance, tests, benches)."""
    return Leases(
        MemoryLeaseStore(), namespace=namespace, owner="local", ttl_s=ttl_s, wait_s=wait_s
    )
