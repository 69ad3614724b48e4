"""The loop shared by the auth service's outboxes: publish when woken, and every interval for
what is still unpublished (Kafka may have been away when the write woke it)."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod

from chatcore.logging import get_logger

_log = get_logger("auth.outbox")


class Outbox(ABC):
    """An outbox's publisher: ``publish_pending`` makes one pass; ``run`` repeats it."""

    # The log event of a pass that failed unexpectedly (Kafka failures are the pass's to log).
    failure_event = "outbox_failed"

    def __init__(self) -> None:
        self._woken = asyncio.Event()

    def wake(self) -> None:
        """Something was just written to the outbox: publish without waiting for the interval."""
        self._woken.set()

    @abstractmethod
    async def publish_pending(self) -> int:
        """One pass over what is unpublished; the number of events published. A pass stops at
        Kafka's first failure and leaves the rest to the next one."""

    async def run(self, interval_s: float) -> None:
        """Publish whenever woken, and every ``interval_s`` for what is still unpublished."""
        while True:
            try:
                async with asyncio.timeout(interval_s):
                    await self._woken.wait()
            except TimeoutError:
                pass
            self._woken.clear()
            try:
                await self.publish_pending()
            except Exception:
                _log.exception(self.failure_event)
