"""Token-bucket rate limiting, in memory, per key (client IP, email, connection).

Pure logic with an injected clock so rules are testable without sleeping. Limits are per process:
with several instances behind nginx each enforces its own budget (nginx's ``limit_req`` adds a
shared ceiling at the edge).

Memory is bounded by ``max_keys`` without ever forgetting a penalty. A bucket that has refilled to
capacity is indistinguishable from no bucket at all, so only those are dropped; a bucket still
short of tokens is kept until it has refilled. Evicting the least recently used bucket instead
would let anyone reset someone else's limit (for example a brute-force lockout) just by flooding
the limiter with fresh keys. When every tracked bucket still holds a penalty, a new key is refused
until one refills: the flood fails closed for whoever sends it.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    # When the bucket will be back at capacity if nothing more is taken from it.
    full_at: float


class TokenBucketLimiter:
    """``capacity`` requests at once, refilled at ``rate_per_s``; at most ``max_keys`` tracked."""

    def __init__(
        self,
        *,
        capacity: float,
        rate_per_s: float,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if capacity <= 0 or rate_per_s <= 0 or max_keys <= 0:
            raise ValueError("capacity, rate and max_keys must be positive")
        self._capacity = capacity
        self._rate = rate_per_s
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        # Min-heap of (time to look again, tie-breaker, key, bucket). Each live bucket has one
        # entry; entries whose bucket was dropped or replaced are skipped when they surface.
        self._due: list[tuple[float, int, str, _Bucket]] = []
        self._order = itertools.count()

    def __len__(self) -> int:
        """How many keys hold a penalty right now (full buckets are not kept)."""
        return len(self._buckets)

    def _refill(self, bucket: _Bucket, now: float) -> None:
        if now >= bucket.full_at:
            bucket.tokens = self._capacity
        else:
            bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
        bucket.updated = now

    def _set_tokens(self, bucket: _Bucket, tokens: float, now: float) -> None:
        bucket.tokens = tokens
        bucket.updated = now
        bucket.full_at = now + (self._capacity - tokens) / self._rate

    def _push(self, key: str, bucket: _Bucket) -> None:
        heapq.heappush(self._due, (bucket.full_at, next(self._order), key, bucket))

    def _drop_refilled(self, now: float) -> None:
        """Forget every bucket that is back at capacity; re-queue the ones taken from since."""
        while self._due and self._due[0][0] <= now:
            _, _, key, bucket = heapq.heappop(self._due)
            if self._buckets.get(key) is not bucket:
                continue  # refunded to full and dropped, or replaced by a newer bucket
            if now >= bucket.full_at:
                del self._buckets[key]
            else:
                self._push(key, bucket)
        # Entries of dropped buckets wait in the heap until their time; rebuild when they
        # outnumber the live ones so the heap stays proportional to max_keys.
        if len(self._due) > 2 * self._max_keys:
            self._due = [(b.full_at, next(self._order), k, b) for k, b in self._buckets.items()]
            heapq.heapify(self._due)

    def _next_free_slot(self, now: float) -> float:
        while self._due and self._buckets.get(self._due[0][2]) is not self._due[0][3]:
            heapq.heappop(self._due)
        soonest = self._due[0][3].full_at if self._due else now
        return max(soonest - now, 1e-3)

    def try_acquire(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens: 0.0 if allowed, else the seconds to wait before retrying."""
        now = self._clock()
        self._drop_refilled(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:
                return self._next_free_slot(now)
            if cost > self._capacity:
                return (cost - self._capacity) / self._rate
            bucket = _Bucket(self._capacity, now, now)
            self._set_tokens(bucket, self._capacity - cost, now)
            self._buckets[key] = bucket
            self._push(key, bucket)
            return 0.0
        self._refill(bucket, now)
        if bucket.tokens >= cost:
            self._set_tokens(bucket, bucket.tokens - cost, now)
            return 0.0
        return (cost - bucket.tokens) / self._rate

    def wait(self, key: str, cost: float = 1.0) -> float:
        """What ``try_acquire`` would answer, taking nothing: 0.0 or the seconds to wait."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0 if cost <= self._capacity else (cost - self._capacity) / self._rate
        self._refill(bucket, self._clock())
        return 0.0 if bucket.tokens >= cost else (cost - bucket.tokens) / self._rate

    def forget(self, key: str) -> None:
        """Drop a key's bucket at once (its owner is gone: a closed connection)."""
        # Its heap entry goes stale and is skipped, as for any dropped bucket.
        self._buckets.pop(key, None)

    def refund(self, key: str, cost: float = 1.0) -> None:
        """Give back tokens taken by ``try_acquire`` (the attempt turned out not to count)."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        now = self._clock()
        self._refill(bucket, now)
        tokens = min(self._capacity, bucket.tokens + cost)
        if tokens >= self._capacity:
            # Back at capacity: the same as never having been seen. The heap entry goes stale.
            del self._buckets[key]
        else:
            self._set_tokens(bucket, tokens, now)
            # Full sooner than its queued entry says: queue it again so the slot frees on time.
            self._push(key, bucket)
