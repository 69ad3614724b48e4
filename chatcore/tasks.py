"""Stopping background tasks so that they really stop.

Python 3.11's ``asyncio.wait_for`` can swallow a cancellation that arrives just as the awaitable
it wraps completes (fixed in 3.12); a loop task cancelled at that moment goes on to its next
``sleep`` marked as cancelling, and ``task.cancel(); await task`` then waits for ever (a service's
stop hung that way in the test suite). ``cancel_and_wait`` cancels again until the task has ended.
Code that bounds a single await uses ``asyncio.timeout``, which does not have the flaw.

``spawn`` starts a task nobody awaits and keeps a reference to it until it is done (the loop keeps
only a weak one, so an unreferenced task can be collected mid-run).
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Coroutine
from typing import Any

_background: set[asyncio.Task[Any]] = set()


def spawn(
    coro: Coroutine[Any, Any, Any], *, context: contextvars.Context | None = None
) -> asyncio.Task[Any]:
    """Run ``coro`` in the background (in ``context`` if given), referenced until it is done."""
    task = asyncio.get_running_loop().create_task(coro, context=context)
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


async def cancel_and_wait(task: asyncio.Task[Any] | None, *, again_every_s: float = 1.0) -> None:
    """Cancel ``task`` and return once it has ended, cancelling it again every ``again_every_s``
    while it runs on; an exception it ended with (other than the cancellation) is raised."""
    if task is None:
        return
    task.cancel()
    while True:
        done, _ = await asyncio.wait({task}, timeout=again_every_s)
        if done:
            break
        task.cancel()
    if not task.cancelled():
        task.result()
