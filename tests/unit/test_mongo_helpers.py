"""``chatcore.mongo``'s bounds for FerretDB: queries in flight, writes per command."""

from __future__ import annotations

import asyncio

from pymongo import UpdateOne

from chatcore.mongo import bulk_write_chunked, each_bounded


async def test_never_more_than_the_limit_in_flight_and_results_in_key_order() -> None:
    """100 keys with a limit of 4: at most 4 await at once, every key answered, in order."""
    in_flight = peak = 0

    async def square(n: int) -> int:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001 * (n % 3))
        in_flight -= 1
        return n * n

    assert await each_bounded(square, range(100), limit=4) == [n * n for n in range(100)]
    assert peak == 4


async def test_no_keys_no_calls() -> None:
    """An empty key list answers an empty list."""

    async def never(_: int) -> int:
        raise AssertionError("called")

    assert await each_bounded(never, []) == []


class _Recorder:
    """Stands in for a collection: records each ``bulk_write`` command and how many overlap."""

    def __init__(self) -> None:
        self.commands: list[tuple[int, bool]] = []
        self.in_flight = self.peak = 0

    async def bulk_write(self, requests: list[object], ordered: bool = True) -> None:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(0.001)
        self.commands.append((len(requests), ordered))
        self.in_flight -= 1


async def test_writes_go_in_small_unordered_commands_a_few_at_once() -> None:
    """42 writes: unordered commands of 4 (the last of 2), never more than 4 in flight; none
    for no writes."""
    collection = _Recorder()
    ops = [UpdateOne({"_id": n}, {"$set": {"n": n}}) for n in range(42)]
    await bulk_write_chunked(collection, ops)  # type: ignore[arg-type]
    assert sorted(collection.commands) == sorted([(4, False)] * 10 + [(2, False)])
    assert collection.peak == 4
    await bulk_write_chunked(collection, [])  # type: ignore[arg-type]
    assert len(collection.commands) == 11
