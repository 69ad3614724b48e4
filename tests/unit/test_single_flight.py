"""Shared lookups (chatcore.single_flight): one call per key for everyone asking meanwhile."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from chatcore.single_flight import SingleFlight


class _Source:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate = asyncio.Event()
        self.fail = False

    async def fetch(self, key: str) -> str:
        self.calls.append(key)
        await self.gate.wait()
        if self.fail:
            raise ConnectionError("database down")
        return f"{key}:{len(self.calls)}"


async def test_callers_asking_at_once_share_one_call_per_key() -> None:
    """Ten callers for one key and one for another: two calls, each caller its key's answer."""
    source = _Source()
    flight = SingleFlight(source.fetch)
    waiting = [asyncio.ensure_future(flight.get("a")) for _ in range(10)]
    other = asyncio.ensure_future(flight.get("b"))
    await asyncio.sleep(0)
    source.gate.set()
    assert await asyncio.gather(*waiting) == ["a:1"] * 10
    assert await other == "b:2"
    assert source.calls == ["a", "b"]


async def test_an_answer_is_reused_while_young_then_asked_again() -> None:
    """With max_age_s the next caller within the age gets the kept answer; after it, a new call."""
    source = _Source()
    source.gate.set()
    now = [100.0]
    flight = SingleFlight(source.fetch, max_age_s=0.5, clock=lambda: now[0])
    assert await flight.get("a") == "a:1"
    now[0] += 0.4
    assert await flight.get("a") == "a:1"
    now[0] += 0.2
    assert await flight.get("a") == "a:2"
    assert source.calls == ["a", "a"]


async def test_without_max_age_a_finished_call_is_not_reused() -> None:
    """Only callers who asked while the call was in flight share it."""
    source = _Source()
    source.gate.set()
    flight = SingleFlight(source.fetch)
    assert [await flight.get("a"), await flight.get("a")] == ["a:1", "a:2"]


async def test_a_failure_reaches_every_sharer_and_is_not_kept() -> None:
    """A failed call raises in each caller that shared it; the next caller calls again."""
    source = _Source()
    source.fail = True
    flight = SingleFlight(source.fetch, max_age_s=10.0)
    waiting = [asyncio.ensure_future(flight.get("a")) for _ in range(3)]
    await asyncio.sleep(0)
    source.gate.set()
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)
    source.fail = False
    assert await flight.get("a") == "a:2"


async def test_one_caller_cancelled_does_not_cancel_the_others() -> None:
    """A caller that gives up leaves the shared call running for those still waiting."""
    source = _Source()
    flight = SingleFlight(source.fetch)
    quitter = asyncio.ensure_future(flight.get("a"))
    stayer = asyncio.ensure_future(flight.get("a"))
    await asyncio.sleep(0)
    quitter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await quitter
    source.gate.set()
    assert await stayer == "a:1"
    with pytest.raises(asyncio.CancelledError):
        quitter.result()
