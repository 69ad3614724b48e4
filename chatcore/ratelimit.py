"""Token-bucket rate limiting, in memory, per key (client IP, email, connection).

Pure logic with an injected clock so rules are testable without sleeping. Limits are per process:
with several instances behind nginx each enforces its own budget (nginx's ``limit_req`` adds a
shared ceiling at the edge).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


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
        if capacity <= 0 or rate_per_s <= 0:
            raise ValueError("capacity and rate must be positive")
        self._capacity = capacity
        self._rate = rate_per_s
        self._max_keys = max_keys
        self._clock = clock
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self._capacity, now)
            self._buckets[key] = bucket
            # Memory stays bounded under a flood of distinct keys: forget the least recently
            # used; a forgotten key only starts again with a full bucket.
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket.tokens = min(self._capacity, bucket.tokens + (now - bucket.updated) * self._rate)
            bucket.updated = now
        return bucket

    def try_acquire(self, key: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens: 0.0 if allowed, else the seconds to wait before retrying."""
        now = self._clock()
        bucket = self._bucket(key, now)
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0.0
        return (cost - bucket.tokens) / self._rate

    def forget(self, key: str) -> None:
        """Drop a key's bucket (its owner is gone: a closed connection)."""
        self._buckets.pop(key, None)

    def __len__(self) -> int:
        return len(self._buckets)
