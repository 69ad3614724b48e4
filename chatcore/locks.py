"""Per-key mutual exclusion inside one process.

Why it exists: FerretDB 1.24 (the local database) runs ``update`` and ``findAndModify`` as a read
followed by a separate write keyed by ``_id`` alone, so two conditional updates racing on one
document can both see their precondition hold and both write (measured: several "winners" out of 20
concurrent compare-and-set updates). MongoDB applies a single-document update atomically. Holding a
per-team lock around each conditional write makes the filter-carried preconditions hold on FerretDB
too, for the writes of this process (management per team, auth per refresh token); several
instances need MongoDB (docs/decisions.md).
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
