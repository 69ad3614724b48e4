"""A controller test hook that holds subscription changes back for as long as a test says."""

from __future__ import annotations

import asyncio


class Hold:
    """``ControllerHooks.before_subscription_change``: passes while open; ``close()`` holds every
    request until ``open()``. ``held`` counts the requests waiting right now."""

    def __init__(self) -> None:
        self._gate = asyncio.Event()
        self._gate.set()
        self.held = 0

    def close(self) -> None:
        self._gate.clear()

    def open(self) -> None:
        self._gate.set()

    async def __call__(self) -> None:
        self.held += 1
        try:
            await self._gate.wait()
        finally:
            self.held -= 1
