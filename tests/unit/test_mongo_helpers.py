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
    """Stands in for a collection: records each ``bulk_write`` command."""

    def __init__(self) -> None:
        self.commands: list[tuple[int, bool]] = []

    async def bulk_write(self, requests: list[object], ordered: bool = True) -> None:
        self.commands.append((len(requests), ordered))


async def test_writes_go_in_commands_of_at_most_sixteen_one_after_another() -> None:
    """40 writes: three unordered commands of 16, 16 and 8; none for no writes."""
    collection = _Recorder()
    ops = [UpdateOne({"_id": n}, {"$set": {"n": n}}) for n in range(40)]
    await bulk_write_chunked(collection, ops)  # type: ignore[arg-type]
    assert collection.commands == [(16, False), (16, False), (8, False)]
    await bulk_write_chunked(collection, [])  # type: ignore[arg-type]
    assert len(collection.commands) == 3
