"""The history bucket layout: keys, ranges, and the controller's allocator."""

from __future__ import annotations

import pytest

from chatcore.buckets import BucketAllocator, BucketRange, bucket_key, bucket_number
from chatcore.errors import Unavailable
from chatcore.unread import ChannelHead
from tests.unit.controller_fakes import MemoryChannelHeads


def test_a_key_names_its_channel_and_number_and_reads_back() -> None:
    """A bucket key reads back as its number, negative ones (migrated messages) included."""
    assert bucket_key("t1", 7) == "t1/7"
    assert bucket_number(bucket_key("t1", 7)) == 7
    assert bucket_number(bucket_key("t1", -3)) == -3
    with pytest.raises(ValueError, match="not a bucket key"):
        bucket_number("no-number-here")


def test_a_range_walks_newest_first_and_oldest_first_from_a_start() -> None:
    """Walks stay inside low..high-1, from the start given or from the end."""
    buckets = BucketRange(-2, 3)
    assert list(buckets.newest_first()) == [2, 1, 0, -1, -2]
    assert list(buckets.newest_first(0)) == [0, -1, -2]
    assert list(buckets.newest_first(9)) == [2, 1, 0, -1, -2]
    assert list(buckets.oldest_first()) == [-2, -1, 0, 1, 2]
    assert list(buckets.oldest_first(1)) == [1, 2]
    assert list(BucketRange(0, 0).newest_first()) == []


async def test_messages_fill_a_bucket_then_the_next_one_reserved_before_use() -> None:
    """Three to a bucket: a new channel reserves bucket 0, the fourth message reserves bucket 1;
    channels count separately, in the order of the batch."""
    heads = MemoryChannelHeads()
    allocator = BucketAllocator(heads, size=3)
    keys = (await allocator.assign(["a", "a", "b", "a", "a"])).keys
    assert keys == ["a/0", "a/0", "b/0", "a/0", "a/1"]
    assert heads.ranges == {"a": BucketRange(0, 2), "b": BucketRange(0, 1)}
    assert (await allocator.assign(["a", "a", "b", "a"])).keys == ["a/1", "a/1", "b/0", "a/2"]
    assert sorted(heads.reservations) == ["a", "a", "a", "b"]


async def test_a_batch_that_fits_the_open_bucket_reserves_nothing() -> None:
    """Once a bucket is open, messages that fit in it cost no database call."""
    heads = MemoryChannelHeads()
    allocator = BucketAllocator(heads, size=100)
    await allocator.assign(["a"])
    heads.failures_left = 1  # a reservation now would fail
    assert (await allocator.assign(["a"] * 99)).keys == ["a/0"] * 99


async def test_a_failed_reservation_leaves_nothing_remembered_and_a_retry_reserves_afresh() -> None:
    """The database down while reserving: Unavailable, the open bucket is not taken as
    reserved, and the retried batch reserves the next bucket."""
    heads = MemoryChannelHeads()
    allocator = BucketAllocator(heads, size=2)
    assert (await allocator.assign(["a", "a"])).keys == ["a/0", "a/0"]
    heads.failures_left = 1
    with pytest.raises(Unavailable):
        await allocator.assign(["a"])
    assert (await allocator.assign(["a", "a", "a"])).keys == ["a/1", "a/1", "a/2"]
    assert heads.ranges["a"] == BucketRange(0, 3)


async def test_after_partitions_move_a_channel_opens_a_fresh_bucket_above_the_old_ones() -> None:
    """forget(): the next message of a channel reserves a new bucket, so messages another
    controller stored meanwhile in higher buckets are never followed by ones in a lower bucket."""
    heads = MemoryChannelHeads()
    ours = BucketAllocator(heads, size=10)
    theirs = BucketAllocator(heads, size=10)
    assert (await ours.assign(["a"])).keys == ["a/0"]
    assert (await theirs.assign(["a"])).keys == ["a/1"]  # the partition moved to another controller
    ours.forget()  # ... and back
    assert (await ours.assign(["a"])).keys == ["a/2"]


async def test_a_placement_carries_the_head_each_reserving_channel_s_reservation_read() -> None:
    """The counters come back with a channel's first reservation of the batch; a channel that
    fit its open bucket reserved nothing and brings none."""
    heads = MemoryChannelHeads()
    heads.counters["a"] = ChannelHead(count=4, count_seq=9, last_seq=9)
    allocator = BucketAllocator(heads, size=2)
    first = await allocator.assign(["a", "a", "a", "b"])
    assert first.keys == ["a/0", "a/0", "a/1", "b/0"]
    assert first.heads == {"a": ChannelHead(count=4, count_seq=9, last_seq=9), "b": ChannelHead()}
    assert (await allocator.assign(["a"])).heads == {}
