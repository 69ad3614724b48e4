"""A fixed number of slots with a short wait for one: back-pressure for costly work.

A request that finds every slot taken waits up to ``wait_s`` (in arrival order) and is then
refused with ``Busy`` (503 with ``Retry-After``). Waiting briefly smooths a burst; refusing past
that keeps a flood from queueing without end, where every request would wait longer than any
client does, and the queue's memory would grow with the flood.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from chatcore.errors import Busy


class Gate:
    """At most ``limit`` holders at once; ``refusal`` is the 503's text."""

    def __init__(self, *, limit: int, wait_s: float, refusal: str, retry_after_s: float = 1.0):
        self._slots = asyncio.Semaphore(limit)
        self._wait_s = wait_s
        self._refusal = refusal
        self._retry_after = retry_after_s

    async def acquire(self) -> None:
        """Take a slot, waiting up to ``wait_s`` for one, or raise ``Busy``; pair with
        ``release``."""
        if not self._slots.locked():
            await self._slots.acquire()
            return
        if self._wait_s <= 0:
            raise Busy(self._refusal, retry_after=self._retry_after)
        try:
            async with asyncio.timeout(self._wait_s):
                await self._slots.acquire()
        except TimeoutError:
            raise Busy(self._refusal, retry_after=self._retry_after) from None

    def release(self) -> None:
        self._slots.release()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """A slot for the duration of the block, or ``Busy``."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()
