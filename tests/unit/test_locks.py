"""KeyedLocks: per-key mutual exclusion that cleans up after itself."""

from __future__ import annotations

import asyncio

from chatcore.locks import KeyedLocks


async def test_same_key_is_serialized_other_keys_are_not() -> None:
    """Holders of one key never overlap; another key proceeds meanwhile; nothing is left over."""
    locks = KeyedLocks()
    inside: dict[str, int] = {"a": 0, "b": 0}
    peak: dict[str, int] = {"a": 0, "b": 0}

    async def work(key: str) -> None:
        async with locks.hold(key):
            inside[key] += 1
            peak[key] = max(peak[key], inside[key])
            await asyncio.sleep(0.001)
            inside[key] -= 1

    await asyncio.gather(*(work("a") for _ in range(20)), *(work("b") for _ in range(20)))
    assert peak == {"a": 1, "b": 1}
    assert len(locks) == 0


async def test_lock_is_released_on_error() -> None:
    """An exception inside the block releases the key."""
    locks = KeyedLocks()
    try:
        async with locks.hold("a"):
            raise ValueError("boom")
    except ValueError:
        pass
    async with asyncio.timeout(1):
        async with locks.hold("a"):
            pass
    assert len(locks) == 0
