"""Counting a batch's team messages per channel (``chatcore.unread``): pure, no I/O.

Every message and change record gets ``n``, the channel's team-message count up to and including
it; the channel's head keeps the count and the seq of the last message counted. A team message is
counted once: a record consumed again after a crash has a seq at or below ``count_seq`` when the
head was saved after it, and otherwise gets the same number again (the head was not saved, so
counting starts from the same place and goes through the same records in the same order).
Messages that turn out not to be stored (a client's retry already stored at another seq, a
rejected slot) are left out by counting again without them (``excluded``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace

from chatcore.unread import ChannelHead


@dataclass(frozen=True, slots=True)
class Counted:
    """One record of the batch as the count sees it."""

    index: int
    channel_id: str
    seq: int
    team_message: bool  # a message to "*" (a change or a DM counts nothing)
    message: bool  # a message (changes are records too, but never counted)


def count_batch(
    records: Sequence[Counted],
    heads: Mapping[str, ChannelHead],
    excluded: Collection[int] = (),
) -> tuple[dict[int, int], dict[str, ChannelHead]]:
    """``n`` per record index and each channel's head after the batch, in consumption order."""
    after: dict[str, ChannelHead] = dict(heads)
    numbers: dict[int, int] = {}
    for record in records:
        head = after.get(record.channel_id, ChannelHead())
        if record.index in excluded:
            numbers[record.index] = head.count
            continue
        if record.team_message and record.seq > head.count_seq:
            head = replace(head, count=head.count + 1, count_seq=record.seq)
        numbers[record.index] = head.count
        after[record.channel_id] = replace(head, last_seq=max(head.last_seq, record.seq))
    return numbers, after
