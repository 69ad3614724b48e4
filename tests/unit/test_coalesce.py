"""Natural batching of lookups: alone when idle, together while earlier calls are out."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from chatcore.coalesce import Coalescer


class Remote:
    """A batch lookup whose calls return only when the test releases them."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release: list[asyncio.Event] = []
        self.fail: set[int] = set()

    async def fetch(self, keys: Sequence[str]) -> list[str]:
        index = len(self.calls)
        self.calls.append(list(keys))
        gate = asyncio.Event()
        self.release.append(gate)
        await gate.wait()
        if index in self.fail:
            raise ConnectionError(f"call {index} failed")
        return [k.upper() for k in keys]


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_lone_lookup_goes_out_at_once() -> None:
    """With nothing out, a lookup is sent at once, alone, and answered."""
    remote = Remote()
    lookups = Coalescer(remote.fetch, max_batch=10, in_flight=1)
    task = asyncio.create_task(lookups.get("a"))
    await _settle()
    assert remote.calls == [["a"]]
    remote.release[0].set()
    assert await task == "A"


async def test_lookups_made_while_calls_are_out_share_the_next_call_in_order() -> None:
    """While the one allowed call is out, later lookups wait and then go together, split at
    max_batch, each answered with its own value; each call's size is reported."""
    remote = Remote()
    sizes: list[int] = []
    lookups = Coalescer(remote.fetch, max_batch=3, in_flight=1, on_call=sizes.append)
    tasks = [asyncio.create_task(lookups.get(k)) for k in "abcdef"]
    await _settle()
    assert remote.calls == [["a"]]
    remote.release[0].set()
    await _settle()
    assert remote.calls == [["a"], ["b", "c", "d"]]
    remote.release[1].set()
    await _settle()
    assert remote.calls[2] == ["e", "f"]
    remote.release[2].set()
    assert await asyncio.gather(*tasks) == list("ABCDEF")
    assert sizes == [1, 3, 2]


async def test_a_failed_call_fails_only_the_lookups_it_carried() -> None:
    """The callers of a failed batch get its error; the next batch is still sent and answered."""
    remote = Remote()
    remote.fail.add(1)
    lookups = Coalescer(remote.fetch, max_batch=2, in_flight=1)
    tasks = [asyncio.create_task(lookups.get(k)) for k in "abcd"]
    for gate in range(3):
        await _settle()
        remote.release[gate].set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == "A"
    assert [type(r) for r in results[1:3]] == [ConnectionError, ConnectionError]
    assert results[3] == "D"


async def test_a_caller_that_stops_waiting_does_not_disturb_the_others() -> None:
    """A cancelled lookup still waiting is left out of the next call; the rest are answered."""
    remote = Remote()
    lookups = Coalescer(remote.fetch, max_batch=10, in_flight=1)
    first = asyncio.create_task(lookups.get("a"))
    gone = asyncio.create_task(lookups.get("b"))
    kept = asyncio.create_task(lookups.get("c"))
    await _settle()
    gone.cancel()
    await _settle()
    remote.release[0].set()
    await _settle()
    assert remote.calls == [["a"], ["c"]]
    remote.release[1].set()
    assert [await first, await kept] == ["A", "C"]
    assert gone.cancelled()


async def test_a_wrong_number_of_values_fails_the_batch() -> None:
    """A remote answering fewer values than keys is an error for those callers, not a mix-up."""

    async def short(keys: Sequence[str]) -> list[str]:
        return ["x"]

    lookups = Coalescer(short, max_batch=10, in_flight=1)
    first = asyncio.create_task(lookups.get("a"))
    both = [asyncio.create_task(lookups.get(k)) for k in "bc"]
    assert await first == "x"
    results = await asyncio.gather(*both, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)


def test_limits_must_be_positive() -> None:
    """A coalescer that could never send is a configuration error."""
    with pytest.raises(ValueError, match="at least 1"):
        Coalescer(Remote().fetch, max_batch=0, in_flight=1)
