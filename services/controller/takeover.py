"""Finding what a previous owner of a partition stored but never committed, without inserting it
again.

A controller that dies, or loses a partition, between storing a batch and committing its offsets
leaves those records to the partition's next owner, which consumes them again. Inserting them
again is safe (the unique indexes refuse them and ``batch.classify`` sorts out the duplicates) but
on FerretDB 1.24 it is slow: an insert command with one duplicate in it inserts every one of its
documents again one at a time, each in a transaction of its own. A controller killed right after
a 100,000-message burst over 2,000 rooms left 96,000 records uncommitted, and its successor took
180-300 s to get through them (docs/benchmarks.md).

So a partition is *in doubt* from its assignment until neither a batch's first nor its last
message of it is stored, which two lookups tell (an owner stores in offset order, but in parallel
slices, so a failed slice can leave lower offsets unstored under higher ones). While in doubt,
its channels' history buckets below the ones this controller opened are read, newest first (one
equality query returns up to a bucket of messages, where looking each up is a query per
message), until every message sought is found or a bucket reaches below the lowest offset
sought; the buckets read are kept while batches need them, since the next batches seek the
messages after. Whatever this misses (a client retry whose original sits further down, a zombie
owner's late write) is still caught by the insert.

What the predecessor did not store of such a batch (the messages of a slice whose insert failed,
the change documents written after the messages) would go to the bucket this controller opened,
after buckets holding higher seqs of the same channel, and history and changes pages, which walk
buckets in order, would skip it. ``below_stored`` files each such record in the bucket of the
nearest stored message at or above it instead.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol

from chatcore.buckets import bucket_key, bucket_number
from chatcore.mongo import each_bounded
from services.controller.records import MessageItem
from services.controller.store import StoredPosition

# Buckets read at most per channel and batch (empty ones, which a controller leaves when it dies
# between reserving and inserting, make the walk longer).
WALK_MAX = 8
# Messages kept from the buckets read (≈ 250 bytes each); past this the oldest reads are dropped
# and read again if sought again.
KEPT_MAX = 150_000


def below_stored(
    records: Iterable[tuple[int, str, int]],
    found: Iterable[StoredPosition],
) -> dict[int, str]:
    """For records ``(index, channel, seq)``, the bucket each must go to so every bucket keeps
    lower seqs than the next: the bucket of the nearest ``found`` message of its channel at or
    above its seq (a found one's own); a record above every found one is absent (its new bucket
    is right)."""
    stored: dict[str, list[tuple[int, str]]] = {}
    for position in found:
        if position.bucket:
            stored.setdefault(position.channel_id, []).append((position.seq, position.bucket))
    for positions in stored.values():
        positions.sort()
    placed: dict[int, str] = {}
    for index, channel, seq in records:
        ordered = stored.get(channel)
        if not ordered:
            continue
        at = bisect.bisect_left(ordered, (seq, ""))
        if at < len(ordered):
            placed[index] = ordered[at][1]
    return placed


class StoredLookup(Protocol):
    """The part of ``store.MessageStore`` this uses."""

    async def positions(self, ids: Sequence[str]) -> dict[str, StoredPosition]: ...

    async def in_bucket(self, bucket: str) -> dict[str, StoredPosition]: ...


class Takeover:
    def __init__(self, store: StoredLookup) -> None:
        self._store = store
        self._settled: set[tuple[str, int]] = set()  # partitions out of doubt
        self._opened: dict[str, int] = {}  # channel -> lowest bucket opened since the move
        self._read: dict[str, dict[str, StoredPosition]] = {}  # bucket key -> its messages
        self._kept = 0

    def partitions_moved(self) -> None:
        """Every partition is in doubt again (this controller may have just been given it)."""
        self._settled.clear()
        self._opened.clear()
        self._forget_reads()

    async def stored_already(
        self, messages: Sequence[tuple[int, MessageItem]], buckets: Mapping[int, str]
    ) -> dict[str, StoredPosition]:
        """Where the batch's messages (``(index, item)``, ``buckets`` by index) that a previous
        owner stored are; raises ``Unavailable`` (retry the batch)."""
        # Each unsettled partition's first and last message of the batch: an owner stores in
        # offset order, but its insert runs in parallel slices, so a failed one can leave the
        # first messages unstored and later ones stored.
        ends: dict[tuple[str, int], list[str]] = {}
        for _, item in messages:
            partition = (item.record.topic, item.record.partition)
            if partition not in self._settled:
                ids = ends.setdefault(partition, [item.message.id])
                if item.message.id != ids[0]:
                    ids[1:] = [item.message.id]
        doubtful: set[tuple[str, int]] = set()
        if ends:
            probed = await self._store.positions([i for ids in ends.values() for i in ids])
            doubtful = {p for p, ids in ends.items() if any(i in probed for i in ids)}
            self._settled.update(p for p in ends if p not in doubtful)
        if not doubtful:
            self._forget_reads()  # no longer needed, however many were kept
            return {}
        sought: dict[str, dict[str, int]] = {}  # channel -> message id -> its lowest offset
        for index, item in messages:
            if (item.record.topic, item.record.partition) in doubtful:
                channel = item.message.channel_id
                sought.setdefault(channel, {}).setdefault(item.message.id, item.record.offset)
                number = bucket_number(buckets[index])
                self._opened[channel] = min(number, self._opened.get(channel, number))
        found: dict[str, StoredPosition] = {}
        for one in await each_bounded(lambda c: self._walk(c, sought[c]), list(sought)):
            found.update(one)
        return found

    async def _walk(self, channel: str, ids: Mapping[str, int]) -> dict[str, StoredPosition]:
        lowest = min(ids.values())
        found: dict[str, StoredPosition] = {}
        top = self._opened[channel] - 1
        # Not below 0: buckets under 0 hold only messages from before buckets existed.
        for number in range(top, max(top - WALK_MAX, -1), -1):
            stored = await self._bucket(bucket_key(channel, number))
            found.update((i, p) for i, p in stored.items() if i in ids)
            # Buckets hold a channel's messages in order: below one reaching the lowest offset
            # sought there is nothing newer.
            if len(found) == len(ids) or any(p.seq <= lowest for p in stored.values()):
                break
        return found

    async def _bucket(self, key: str) -> dict[str, StoredPosition]:
        stored = self._read.get(key)
        if stored is None:
            stored = await self._store.in_bucket(key)
            if self._kept + len(stored) > KEPT_MAX:
                self._forget_reads()
            self._read[key] = stored
            self._kept += len(stored)
        return stored

    def _forget_reads(self) -> None:
        self._read.clear()
        self._kept = 0
