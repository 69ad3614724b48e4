"""Shared lookups: callers asking for the same key at the same moment share one call.

A handshake storm asks the database for the same few documents a thousand times within a
second (a team's head, for each member's unread count); one call per key answers everyone who
asked while it was in flight, and, with ``max_age_s``, everyone who asks shortly after. A failed
call fails every caller that shared it and is not kept.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(
        self,
        fetch: Callable[[K], Awaitable[V]],
        *,
        max_age_s: float = 0.0,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._max_age_s = max_age_s
        self._max_keys = max_keys
        self._clock = clock
        self._flying: dict[K, asyncio.Future[V]] = {}
        # Answers still young enough to reuse: key -> (when the call started, value).
        self._kept: dict[K, tuple[float, V]] = {}

    async def get(self, key: K) -> V:
        kept = self._kept.get(key)
        if kept is not None and self._clock() - kept[0] < self._max_age_s:
            return kept[1]
        flight = self._flying.get(key)
        if flight is None:
            started = self._clock()
            flight = asyncio.ensure_future(self._fetch(key))
            self._flying[key] = flight
            flight.add_done_callback(lambda done: self._landed(key, started, done))
        # One caller's cancellation must not cancel the call the others wait on.
        return await asyncio.shield(flight)

    def _landed(self, key: K, started: float, done: asyncio.Future[V]) -> None:
        if self._flying.get(key) is done:
            del self._flying[key]
        if done.cancelled() or done.exception() is not None or self._max_age_s <= 0:
            return  # the exception is retrieved here, so an unawaited failure warns nobody
        if len(self._kept) >= self._max_keys:
            self._kept.clear()
        self._kept[key] = (started, done.result())
