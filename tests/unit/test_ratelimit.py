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
    assert len(limiter) == 10


def test_flooding_new_keys_does_not_reset_a_penalised_bucket() -> None:
    """An exhausted bucket stays exhausted however many other keys arrive after it."""
    clock = _Clock()
    limiter = TokenBucketLimiter(capacity=5, rate_per_s=5 / 60, max_keys=10, clock=clock)
    for _ in range(5):
        assert limiter.try_acquire("victim") == 0.0
    assert limiter.try_acquire("victim") > 0
    for i in range(1000):
        limiter.try_acquire(f"flood-{i}")
    assert limiter.try_acquire("victim") > 0
    assert len(limiter) <= 10


def test_when_every_bucket_is_penalised_new_keys_are_refused() -> None:
    """A full table refuses newcomers, telling them when the first slot frees up."""
    clock = _Clock()
    limiter = TokenBucketLimiter(capacity=2, rate_per_s=0.5, max_keys=3, clock=clock)
    for key in ("a", "b", "c"):
        assert limiter.try_acquire(key) == 0.0
    wait = limiter.try_acquire("newcomer")
    assert wait == pytest.approx(2.0)
    # A penalised key already tracked keeps its own budget meanwhile.
    assert limiter.try_acquire("a") == 0.0


def test_refilled_buckets_make_room_for_new_keys() -> None:
    """Once a bucket is back at capacity it is forgotten and its slot serves a new key."""
    clock = _Clock()
    limiter = TokenBucketLimiter(capacity=2, rate_per_s=0.5, max_keys=3, clock=clock)
    for key in ("a", "b", "c"):
        limiter.try_acquire(key)
    clock.now += 1.0
    limiter.try_acquire("b")  # b is now further from full than a and c
    clock.now += 1.0
    assert limiter.try_acquire("newcomer") == 0.0
    assert len(limiter) == 2  # a and c refilled and were dropped; b and the newcomer remain
    assert limiter.try_acquire("x") == 0.0
    assert limiter.try_acquire("y") > 0


def test_refund_gives_tokens_back() -> None:
    """A refunded attempt does not count against the key."""
    clock = _Clock()
    limiter = TokenBucketLimiter(capacity=2, rate_per_s=0.01, clock=clock)
    for _ in range(10):
        assert limiter.try_acquire("k") == 0.0
        limiter.refund("k")
    assert len(limiter) == 0
    limiter.try_acquire("k")
    limiter.try_acquire("k")
    assert limiter.try_acquire("k") > 0
    limiter.refund("k")
    assert limiter.try_acquire("k") == 0.0
    limiter.refund("unknown")  # nothing to give back: no effect


def test_memory_stays_bounded_under_acquire_and_refund_churn() -> None:
    """Keys that come and go never leave the limiter's bookkeeping growing without bound."""
    clock = _Clock()
    limiter = TokenBucketLimiter(capacity=5, rate_per_s=0.01, max_keys=100, clock=clock)
    for i in range(10_000):
        limiter.try_acquire(f"k{i}")
        limiter.refund(f"k{i}")
    assert len(limiter) == 0
    assert len(limiter._due) <= 2 * 100 + 1


def test_rejects_nonsense_configuration() -> None:
    """A zero capacity or rate is a configuration error."""
    with pytest.raises(ValueError, match="positive"):
        TokenBucketLimiter(capacity=0, rate_per_s=1)
    with pytest.raises(ValueError, match="positive"):
        TokenBucketLimiter(capacity=1, rate_per_s=1, max_keys=0)
