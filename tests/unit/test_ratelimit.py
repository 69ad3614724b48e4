"""Token-bucket rate limiting rules, with a fake clock."""

from __future__ import annotations

import pytest

from chatcore.ratelimit import TokenBucketLimiter


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_a_burst_up_to_capacity_then_refuses() -> None:
    """Capacity requests pass at once; the next is refused with the wait until a token refills."""
    clock = _Clock()
    limiter = TokenBucketLimiter(capacity=3, rate_per_s=0.5, clock=clock)
    assert [limiter.try_acquire("ip") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_acquire("ip") == pytest.approx(2.0)


def test_refills_over_time_but_not_beyond_capacity() -> None:
    """Waiting refills tokens at the rate, capped at capacity."""
    clock = _Clock()
    limiter = TokenBucketLimiter(capacity=2, rate_per_s=1, clock=clock)
    limiter.try_acquire("k")
    limiter.try_acquire("k")
    clock.now += 1
    assert limiter.try_acquire("k") == 0.0
    assert limiter.try_acquire("k") > 0
    clock.now += 100
    assert [limiter.try_acquire("k") for _ in range(3)][:2] == [0.0, 0.0]


def test_keys_are_independent() -> None:
    """One key's exhaustion does not affect another key."""
    limiter = TokenBucketLimiter(capacity=1, rate_per_s=0.01, clock=_Clock())
    assert limiter.try_acquire("a") == 0.0
    assert limiter.try_acquire("a") > 0
    assert limiter.try_acquire("b") == 0.0


def test_tracked_keys_are_bounded() -> None:
    """A flood of distinct keys never grows memory past max_keys."""
    limiter = TokenBucketLimiter(capacity=1, rate_per_s=1, max_keys=10, clock=_Clock())
    for i in range(1000):
        limiter.try_acquire(f"k{i}")
    assert len(limiter._buckets) == 10


def test_rejects_nonsense_configuration() -> None:
    """A zero capacity or rate is a configuration error."""
    with pytest.raises(ValueError, match="positive"):
        TokenBucketLimiter(capacity=0, rate_per_s=1)
