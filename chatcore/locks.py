"""Per-key mutual exclusion inside one process.

Why it exists: ``chatcore.leases.Leases`` queues the waiters of one process for a key here first,
so only one of them at a time asks the database for the key's lease; exclusion across processes
is the lease's job (docs/decisions.md, "Leases with fencing").
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class KeyedLocks:
    """One ``asyncio.Lock`` per key, created on demand, dropped once nobody holds or awaits it."""

    def __init__(self) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._users: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the key's lock for the duration of the ``async with`` block."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if self._users[key] == 0:
                # Bounded memory: a key nobody is using costs nothing.
                del self._users[key]
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)
