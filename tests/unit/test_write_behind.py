"""Read state and counters held behind the fan-out: exact lookups, coalesced writes, no loss."""

from __future__ import annotations

import asyncio

import pytest

from chatcore.errors import Unavailable
from chatcore.unread import ChannelHead, ReadState
from services.controller.write_behind import StateBuffer
from tests.unit.controller_fakes import MemoryChannelHeads, MemoryReadStates


def _buffer() -> tuple[StateBuffer, MemoryReadStates, MemoryChannelHeads]:
    reads, heads = MemoryReadStates(), MemoryChannelHeads()
    return StateBuffer(reads, heads), reads, heads


async def test_lookups_see_held_values_before_the_database() -> None:
    """A held read state and head answer lookups; others come from the store."""
    buffer, reads, heads = _buffer()
    reads.states[("c1", "old")] = ReadState(seq=3)
    await buffer.save_many({"c1": {"u1": ReadState(seq=9)}})
    await buffer.save_counters_many({"c1": ChannelHead(count=5, count_seq=9, last_seq=9)})
    found = await buffer.load_many({"c1": ["u1", "old", "never"]})
    assert found == {"c1": {"u1": ReadState(seq=9), "old": ReadState(seq=3), "never": None}}
    assert reads.loaded == [("c1", "old"), ("c1", "never")]  # the held one was not looked up
    assert (await buffer.heads(["c1", "c2"]))["c1"].count == 5
    assert reads.states.get(("c1", "u1")) is None
    assert heads.counters == {}


async def test_held_heads_are_those_waiting_or_being_written_never_stored_ones() -> None:
    """``held`` answers from memory: a head saved and not yet landed, including one a flush is
    writing; one already stored (or never saved) is not held."""
    buffer, _, heads = _buffer()
    heads.counters["c0"] = ChannelHead(count=1)
    await buffer.save_counters_many({"c1": ChannelHead(count=2)})
    heads.gate = asyncio.Event()
    flushing = asyncio.create_task(buffer.flush())
    await asyncio.sleep(0)
    await buffer.save_counters_many({"c2": ChannelHead(count=3)})
    assert buffer.held(["c0", "c1", "c2", "c3"]) == {
        "c1": ChannelHead(count=2),
        "c2": ChannelHead(count=3),
    }
    heads.gate.set()
    await flushing
    assert buffer.held(["c0", "c1", "c2"]) == {"c2": ChannelHead(count=3)}


async def test_a_busy_document_is_written_once_per_flush_with_its_newest_value() -> None:
    """Three saves of one member's state cost one write, of the last value."""
    buffer, reads, _ = _buffer()
    for seq in (1, 2, 3):
        await buffer.save_many({"c1": {"u1": ReadState(seq=seq)}, "c2": {"u2": ReadState(seq=seq)}})
    assert await buffer.flush() == 2
    assert reads.saved == [("c1", "u1"), ("c2", "u2")]
    assert reads.states[("c1", "u1")] == ReadState(seq=3)
    assert not buffer.pending
    assert await buffer.flush() == 0


async def test_values_being_written_still_answer_lookups() -> None:
    """While a flush is in flight, its values (not the stale database) answer lookups."""
    buffer, reads, _ = _buffer()
    reads.states[("c1", "u1")] = ReadState(seq=1)
    await buffer.save_many({"c1": {"u1": ReadState(seq=7)}})
    reads.gate = asyncio.Event()
    flushing = asyncio.create_task(buffer.flush())
    await asyncio.sleep(0)
    assert not buffer.pending
    assert await buffer.load_many({"c1": ["u1"]}) == {"c1": {"u1": ReadState(seq=7)}}
    reads.gate.set()
    assert await flushing == 1
    assert reads.states[("c1", "u1")] == ReadState(seq=7)


async def test_a_failed_flush_keeps_its_values_under_newer_ones() -> None:
    """A flush that fails loses nothing; what was saved meanwhile wins on the next flush."""
    buffer, reads, heads = _buffer()
    await buffer.save_many({"c1": {"u1": ReadState(seq=4), "u2": ReadState(seq=4)}})
    await buffer.save_counters_many({"c1": ChannelHead(count=1, count_seq=4, last_seq=4)})
    reads.gate, reads.failures_left = asyncio.Event(), 1
    flushing = asyncio.create_task(buffer.flush())
    await asyncio.sleep(0)
    await buffer.save_many({"c1": {"u1": ReadState(seq=8)}})  # newer, saved mid-flush
    reads.gate.set()
    with pytest.raises(Unavailable):
        await flushing
    assert buffer.pending
    assert await buffer.flush() == 3
    assert reads.states[("c1", "u1")] == ReadState(seq=8)
    assert reads.states[("c1", "u2")] == ReadState(seq=4)
    assert heads.counters["c1"].count == 1


async def test_discard_forgets_what_is_held() -> None:
    """Discarding (partitions moved away unflushed) drops the values; lookups go to the store."""
    buffer, reads, _ = _buffer()
    reads.states[("c1", "u1")] = ReadState(seq=2)
    await buffer.save_many({"c1": {"u1": ReadState(seq=5)}})
    assert buffer.discard() == 1
    assert not buffer.pending
    assert await buffer.load_many({"c1": ["u1"]}) == {"c1": {"u1": ReadState(seq=2)}}


async def test_a_checkpoint_writes_one_command_at_a_time_however_large() -> None:
    """Small or large, a checkpoint keeps one write command in flight (it yields to inserts)."""
    buffer, reads, _ = _buffer()
    await buffer.save_many({"c1": {f"u{n}": ReadState(seq=1) for n in range(10)}})
    await buffer.flush()
    await buffer.save_many({"c1": {f"u{n}": ReadState(seq=2) for n in range(5000)}})
    await buffer.flush()
    assert reads.in_flight == [1, 1]
