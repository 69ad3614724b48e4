"""``chatcore.tasks.cancel_and_wait``: a background task stops even if it swallowed a cancel."""

from __future__ import annotations

import asyncio

import pytest

from chatcore.tasks import cancel_and_wait


async def test_a_task_that_swallows_the_first_cancel_is_stopped_by_the_next() -> None:
    """A loop that swallows one cancellation (as 3.11's wait_for can) still ends, promptly."""
    swallowed = 0

    async def loop() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    task = asyncio.create_task(loop())
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(task, again_every_s=0.05), 2)
    assert task.cancelled()
    assert swallowed == 1


async def test_an_exception_the_task_ended_with_is_raised() -> None:
    """A task that failed on its own reports its error to whoever stops it."""

    async def fail() -> None:
        raise RuntimeError("boom")

    task = asyncio.create_task(fail())
    await asyncio.sleep(0.01)
    with pytest.raises(RuntimeError, match="boom"):
        await cancel_and_wait(task)


async def test_nothing_to_stop() -> None:
    """No task: nothing happens."""
    await cancel_and_wait(None)
