"""History buckets: where a channel's messages are grouped so a page reads a few hundred of them.

A history page on FerretDB 1.24 costs every document the server has to look at (≈ 50 µs each in
its Go code: it pushes only top-level equality down to PostgreSQL, no range, sort or limit). So
each stored message carries a ``bucket`` key, ``"<channel_id>/<n>"``, and a page is one equality
query per bucket, walking from the cursor's bucket towards older (or newer) ones. MongoDB serves
the same queries from its ``(bucket, seq)`` index, so one layout is right on both.

``n`` is a per-channel ordinal the controller hands out; ``seq`` (the Kafka offset) cannot be
used, since one partition carries many channels and a channel's offsets are sparse. Buckets of a
channel are ordered like its messages: every message of bucket ``n`` has a lower seq than every
message of bucket ``n + 1``. That holds because one controller writes a partition at a time and
numbers its buckets in consumption order, and because a controller that (re)gains a partition
reserves a fresh bucket above every number handed out before instead of reusing one.

The channel's head document (``channels``) records the range of bucket numbers in use:
``high`` is the count of buckets reserved from 0 up, ``low`` the lowest number (below 0 only
for messages stored before buckets existed, numbered downwards by the migration). Reserving is
one ``$inc`` of ``high``; it happens before the messages are inserted, so no stored message ever
sits in a bucket the head does not cover. An empty bucket (reserved, then the controller died)
costs the walk one query, nothing else.

Pure logic here; the stores are behind ``ChannelHeads``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from chatcore.mongo import each_bounded
from chatcore.unread import ChannelHead

# Messages per bucket: a page of 50 visible messages usually reads one bucket, sometimes two.
# Measured on FerretDB (docs/benchmarks.md): 128 reads fewer documents per page than 256.
BUCKET_SIZE = 128

_SEPARATOR = "/"


def bucket_key(channel_id: str, number: int) -> str:
    """The stored ``bucket`` value of bucket ``number`` of a channel."""
    return f"{channel_id}{_SEPARATOR}{number}"


def bucket_number(key: str) -> int:
    """The ordinal of a stored ``bucket`` value; ``ValueError`` when it is not one."""
    _, sep, number = key.rpartition(_SEPARATOR)
    if not sep:
        raise ValueError(f"not a bucket key: {key!r}")
    return int(number)


@dataclass(frozen=True, slots=True)
class BucketRange:
    """The bucket numbers a channel's messages may sit in: ``low`` to ``high - 1``."""

    low: int
    high: int

    def newest_first(self, start: int | None = None) -> range:
        """Numbers from ``start`` (default the newest) down to ``low``."""
        top = self.high - 1 if start is None else min(start, self.high - 1)
        return range(top, self.low - 1, -1)

    def oldest_first(self, start: int | None = None) -> range:
        """Numbers from ``start`` (default the oldest) up to the newest."""
        bottom = self.low if start is None else max(start, self.low)
        return range(bottom, self.high)


@dataclass(frozen=True, slots=True)
class Reservation:
    """A reserved bucket number, and the channel's counters as the head document held them
    (the reservation reads the whole document anyway)."""

    number: int
    head: ChannelHead


@dataclass(frozen=True, slots=True)
class Placement:
    """The bucket key of each message of a batch, and the heads its reservations saw: the
    first one of each channel that reserved (a channel that fit its open bucket is absent)."""

    keys: list[str]
    heads: dict[str, ChannelHead]


class ChannelHeads(Protocol):
    async def reserve(self, channel_id: str) -> Reservation:
        """Reserve the channel's next bucket (number 0 for a new channel).

        Raises ``Unavailable`` when the database cannot be reached: retry the batch.
        """


@dataclass(slots=True)
class _Open:
    number: int
    used: int


class BucketAllocator:
    """Which bucket each message of a batch goes to, reserving buckets as they fill.

    Its memory is only a cache of the buckets this controller opened: ``forget`` it whenever
    partitions move, so a channel that comes back opens a fresh bucket above the other owner's.
    """

    def __init__(self, heads: ChannelHeads, *, size: int = BUCKET_SIZE) -> None:
        if size < 1:
            raise ValueError("bucket size must be positive")
        self._heads = heads
        self._size = size
        self._open: dict[str, _Open] = {}

    def forget(self) -> None:
        self._open.clear()

    async def assign(self, channel_ids: Sequence[str]) -> Placement:
        """The bucket key of each message, in order (messages given by their channel).

        Reservations happen first; if one fails nothing is remembered, so a retry of the batch
        reserves again (the buckets reserved meanwhile stay empty, which the walk tolerates).
        """
        needed = Counter(channel_ids)
        seen: dict[str, ChannelHead] = {}

        async def numbers_for(channel_id: str) -> tuple[list[int], _Open]:
            # One number per message of the channel, in order, and the bucket left open.
            current = self._open.get(channel_id)
            number, used = (current.number, current.used) if current else (0, self._size)
            out: list[int] = []
            for _ in range(needed[channel_id]):
                if used >= self._size:
                    reservation = await self._heads.reserve(channel_id)
                    seen.setdefault(channel_id, reservation.head)
                    number, used = reservation.number, 0
                out.append(number)
                used += 1
            return out, _Open(number, used)

        numbers: dict[str, list[int]] = {}
        left: dict[str, _Open] = {}
        reserving: list[str] = []
        for channel_id, count in needed.items():
            current = self._open.get(channel_id)
            if current is not None and current.used + count <= self._size:
                # The common case, without a task: the open bucket has room for all of them.
                numbers[channel_id] = [current.number] * count
                left[channel_id] = _Open(current.number, current.used + count)
            else:
                reserving.append(channel_id)
        if reserving:
            # A reservation is a write: as many channels at once as any bounded database work.
            results = await each_bounded(numbers_for, reserving)
            for channel_id, (assigned, left_open) in zip(reserving, results, strict=True):
                numbers[channel_id] = assigned
                left[channel_id] = left_open
        self._open.update(left)
        channels = list(needed)
        keys: list[str] = []
        taken = dict.fromkeys(channels, 0)
        for channel_id in channel_ids:
            keys.append(bucket_key(channel_id, numbers[channel_id][taken[channel_id]]))
            taken[channel_id] += 1
        return Placement(keys, seen)
