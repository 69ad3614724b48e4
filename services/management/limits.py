"""Back-pressure of the management API: per-user budgets and a bound on concurrent scans.

Writes (team creation, settings, member and role changes, message edits, deletes and reactions,
attachment requests and completions) draw from one token bucket per user, read marks from
another: a burst, refilled at a steady rate; an empty bucket answers 429 ``rate_limited`` with
``Retry-After``. Reads that scan (history, changes and thread pages, the caller's team list;
FerretDB serves them by scanning) hold one of a fixed number of slots, and one user at most a few
of them; a request waits briefly for a slot and otherwise answers 503 ``unavailable`` with
``Retry-After``, so a burst of scans queues for a moment instead of piling onto the database, and
one account's burst cannot hold everyone else's history. All of it is per process.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable

from chatcore.errors import Busy, RateLimited
from chatcore.gate import Gate
from chatcore.ratelimit import TokenBucketLimiter


class UserBudget:
    """``burst`` requests at once per user, refilled at ``per_s``; ``refusal`` is the 429's text."""

    def __init__(
        self,
        *,
        burst: int,
        per_s: float,
        clock: Callable[[], float] = time.monotonic,
        refusal: str = "too many changes, slow down",
    ) -> None:
        self._buckets = TokenBucketLimiter(capacity=burst, rate_per_s=per_s, clock=clock)
        self._refusal = refusal

    def check(self, user_id: str) -> None:
        """Take one request from the user's budget, or raise ``RateLimited``."""
        wait = self._buckets.try_acquire(user_id)
        if wait > 0:
            raise RateLimited(self._refusal, retry_after=math.ceil(wait))


# A scan slot's type (``ScanGate.hold``), and the one that bounds nothing (tests, tools).
ScanSlot = Callable[[str], contextlib.AbstractAsyncContextManager[None]]


@contextlib.asynccontextmanager
async def unbounded_scans(_caller: str) -> AsyncIterator[None]:
    yield


class ScanGate:
    """At most ``limit`` scans at once, ``per_user`` of them one user's; a request waits up to
    ``wait_s`` for a slot (a user already holding their share is refused at once: waiting would
    only queue their own burst in front of everyone else's requests)."""

    def __init__(self, *, limit: int, wait_s: float, per_user: int | None = None) -> None:
        self._gate = Gate(
            limit=limit, wait_s=wait_s, refusal="too many history requests at once, retry"
        )
        self._per_user = limit if per_user is None else per_user
        self._held: dict[str, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, user_id: str) -> AsyncIterator[None]:
        """A slot for the duration of the block, or ``Busy``."""
        held = self._held.get(user_id, 0)
        if held >= self._per_user:
            raise Busy("too many of your history requests at once, retry", retry_after=1)
        self._held[user_id] = held + 1
        try:
            async with self._gate.hold():
                yield
        finally:
            left = self._held[user_id] - 1
            if left:
                self._held[user_id] = left
            else:
                del self._held[user_id]
