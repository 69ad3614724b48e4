"""Back-pressure of the management API: per-user write budgets and a bound on concurrent scans.

Writes (team creation, settings, member and role changes, attachment requests and completions)
draw from one token bucket per user: a burst, refilled at a steady rate; an empty bucket answers
429 ``rate_limited`` with ``Retry-After``. Reads that scan (history pages, the caller's team list;
FerretDB serves both by scanning) hold one of a fixed number of slots; a request waits briefly for
a slot and otherwise answers 503 ``unavailable`` with ``Retry-After``, so a burst of scans queues
for a moment instead of piling onto the database. Both are per process.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable

from chatcore.errors import RateLimited, Unavailable
from chatcore.ratelimit import TokenBucketLimiter


class Busy(Unavailable):
    """Every scan slot is taken: retry after ``retry_after`` seconds (503 with Retry-After)."""

    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WriteLimiter:
    """``burst`` writes at once per user, refilled at ``per_s``."""

    def __init__(
        self, *, burst: int, per_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._buckets = TokenBucketLimiter(capacity=burst, rate_per_s=per_s, clock=clock)

    def check(self, user_id: str) -> None:
        """Take one write from the user's budget, or raise ``RateLimited``."""
        wait = self._buckets.try_acquire(user_id)
        if wait > 0:
            raise RateLimited("too many changes, slow down", retry_after=math.ceil(wait))


class ScanGate:
    """At most ``limit`` scans at once; a request waits up to ``wait_s`` for a slot."""

    def __init__(self, *, limit: int, wait_s: float) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._wait_s = wait_s

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """A slot for the duration of the block, or ``Busy``."""
        if self._slots.locked():
            if self._wait_s <= 0:
                raise Busy("too many history requests at once, retry", retry_after=1)
            try:
                async with asyncio.timeout(self._wait_s):
                    await self._slots.acquire()
            except TimeoutError:
                raise Busy("too many history requests at once, retry", retry_after=1) from None
        else:
            await self._slots.acquire()
        try:
            yield
        finally:
            self._slots.release()
