"""Read state and channel counters written behind the fan-out, coalesced across batches.

A DM changes two read documents (the sender's position, the recipient's unread DMs) and its
channel's counters. Written inside each batch, before its fan-out, those writes were most of a
batch's time on FerretDB (each update is a read and a transaction there): at 1,000 DMs/s the
controller spent ~0.4 s per batch on about 200 documents and batches grew to fill it, so a DM
waited ~0.8 s. Nothing a batch fans out depends on them being stored, only the offset commit
does (a record whose effects are not stored must be consumed again). So they wait here, one
value per document (the newest), and the consume loop writes them before it commits offsets
(``consumer.py``): a busy document is written once per flush rather than once per message, and
the next batches are stored and fanned out while a flush is running.

Lookups see what is buffered or being written before the database, so the controller's own
reads stay exact. Other readers (unread counts in the management service, ``hello``) see a
member's state at most one flush interval late. If a flush fails, its values go back under
newer ones and the next flush writes them. ``discard`` is for partitions that moved away with
a flush that never landed: their new owner consumes the uncommitted records again and redoes
their effects from the stored state (read state only moves forward and keeps DMs and mentions
as sets; a counted record is never counted twice), so dropping them loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from chatcore.unread import ChannelHead, ReadState

ReadKey = tuple[str, str]  # (channel_id, user_id)

# A checkpoint is written one command at a time: spread out rather than a burst, it leaves the
# database to the inserts deliveries wait for. Measured (docs/decisions.md): four commands at once
# put 650-800 ms into the DM p99, and with 2,000 busy rooms (4,000 documents a checkpoint) they
# made checkpoints slower (8.4 s against 4.6 s) and inserts too (3,815 against 4,319 msg/s): the
# database is the bottleneck, and more commands in flight only contend.
CHECKPOINT_IN_FLIGHT = 1


class ReadWriter(Protocol):
    """The read documents' store (``chatcore.read_states.MongoReadStates``)."""

    async def load_many(
        self, wanted: Mapping[str, Iterable[str]]
    ) -> dict[str, dict[str, ReadState | None]]: ...

    async def save_many(
        self, states: Mapping[str, Mapping[str, ReadState]], *, in_flight: int = ...
    ) -> None: ...


class HeadWriter(Protocol):
    """The channel heads' store (``chatcore.channel_heads.MongoChannelHeads``)."""

    async def heads(self, channel_ids: Iterable[str]) -> dict[str, ChannelHead]: ...

    async def save_counters_many(
        self, heads: Mapping[str, ChannelHead], *, in_flight: int = ...
    ) -> None: ...


class StateBuffer:
    """Serves as the controller's read store and head store; ``flush`` writes what it holds."""

    def __init__(self, reads: ReadWriter, heads: HeadWriter) -> None:
        self._read_store = reads
        self._head_store = heads
        self._reads: dict[ReadKey, ReadState] = {}
        self._heads: dict[str, ChannelHead] = {}
        # What the flush in progress is writing: still the truth until it has landed.
        self._writing_reads: dict[ReadKey, ReadState] = {}
        self._writing_heads: dict[str, ChannelHead] = {}

    @property
    def pending(self) -> bool:
        """Whether anything waits to be written."""
        return bool(self._reads or self._heads)

    def __len__(self) -> int:
        return len(self._reads) + len(self._heads)

    # -- the read store --

    async def load_many(
        self, wanted: Mapping[str, Iterable[str]]
    ) -> dict[str, dict[str, ReadState | None]]:
        out: dict[str, dict[str, ReadState | None]] = {}
        missing: dict[str, list[str]] = {}
        for channel, users in wanted.items():
            found = out.setdefault(channel, {})
            for user in users:
                held = self._held_read((channel, user))
                if held is None:
                    missing.setdefault(channel, []).append(user)
                else:
                    found[user] = held
        if missing:
            for channel, loaded in (await self._read_store.load_many(missing)).items():
                out[channel].update(loaded)
        return out

    async def save_many(self, states: Mapping[str, Mapping[str, ReadState]]) -> None:
        for channel, by_user in states.items():
            for user, state in by_user.items():
                self._reads[(channel, user)] = state

    # -- the head store --

    def held(self, channel_ids: Iterable[str]) -> dict[str, ChannelHead]:
        """The heads held here (waiting or being written): newer than the stored ones. One not
        held was stored before this call, and only the channel's owner saves another."""
        out: dict[str, ChannelHead] = {}
        for channel in channel_ids:
            head = self._heads.get(channel) or self._writing_heads.get(channel)
            if head is not None:
                out[channel] = head
        return out

    async def heads(self, channel_ids: Iterable[str]) -> dict[str, ChannelHead]:
        wanted = list(dict.fromkeys(channel_ids))
        out = self.held(wanted)
        missing = [c for c in wanted if c not in out]
        if missing:
            out.update(await self._head_store.heads(missing))
        return out

    async def save_counters_many(self, heads: Mapping[str, ChannelHead]) -> None:
        self._heads.update(heads)

    # -- writing --

    async def flush(self) -> int:
        """Write everything held (read documents first, then counters); the number written.

        Read documents first: read positions carry counts taken from the heads, and a head
        stored without them would give a record consumed again its final count (counting never
        repeats a record at or below the stored head), moving a sender's position too far.
        Stored the other way round, a record consumed again is counted again from the same
        head to the same numbers.

        Raises ``Unavailable``; what was being written is then held again (under anything newer
        saved meanwhile) for the next flush. One flush at a time (the consume loop's checkpoint).
        """
        if not self.pending:
            return 0
        self._writing_reads, self._reads = self._reads, {}
        self._writing_heads, self._heads = self._heads, {}
        try:
            by_channel: dict[str, dict[str, ReadState]] = {}
            for (channel, user), state in self._writing_reads.items():
                by_channel.setdefault(channel, {})[user] = state
            await self._read_store.save_many(by_channel, in_flight=CHECKPOINT_IN_FLIGHT)
            await self._head_store.save_counters_many(
                self._writing_heads, in_flight=CHECKPOINT_IN_FLIGHT
            )
        except BaseException:
            self._reads = {**self._writing_reads, **self._reads}
            self._heads = {**self._writing_heads, **self._heads}
            raise
        finally:
            written = len(self._writing_reads) + len(self._writing_heads)
            self._writing_reads, self._writing_heads = {}, {}
        return written

    def discard(self) -> int:
        """Forget what is held (its partitions moved away unflushed); the number dropped."""
        dropped = len(self)
        self._reads.clear()
        self._heads.clear()
        return dropped

    def _held_read(self, key: ReadKey) -> ReadState | None:
        held = self._reads.get(key)
        return held if held is not None else self._writing_reads.get(key)
