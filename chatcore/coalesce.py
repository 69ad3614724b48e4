"""Natural batching: lookups made while earlier ones are out go together in the next call.

A relay asks the controller about every socket that connects. One at a time, a connection storm
costs a remote call per socket, and on both ends the call's own machinery (gRPC, protobuf, the
handler's context) costs about as much as the database lookups behind it. ``Coalescer`` sends a
lookup at once when fewer than ``in_flight`` calls are out, so a lone socket waits for nothing;
lookups that come while the calls are out wait for one of them to return and then go together,
at most ``max_batch`` a call. The busier the other end, the longer its calls take and the bigger
the batches get, without a timer to tune.

A failed call fails exactly the lookups it carried. A caller that stops waiting (its socket
closed) does not disturb the others; its key still goes out if its batch was already sent.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from chatcore.tasks import spawn

K = TypeVar("K")
V = TypeVar("V")


class Coalescer(Generic[K, V]):
    def __init__(
        self,
        fetch: Callable[[Sequence[K]], Awaitable[Sequence[V]]],
        *,
        max_batch: int,
        in_flight: int,
        on_call: Callable[[int], None] = lambda _size: None,
    ) -> None:
        if max_batch < 1 or in_flight < 1:
            raise ValueError("max_batch and in_flight must be at least 1")
        self._fetch = fetch
        self._max_batch = max_batch
        self._in_flight = in_flight
        self._on_call = on_call  # told each call's size (a metric)
        self._out = 0
        self._waiting: list[tuple[K, asyncio.Future[V]]] = []

    async def get(self, key: K) -> V:
        """The value for ``key``, fetched alone or with the lookups waiting beside it."""
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._out < self._in_flight:
            self._send_next()
        return await future

    def _send_next(self) -> None:
        batch = [(k, f) for k, f in self._waiting[: self._max_batch] if not f.done()]
        del self._waiting[: self._max_batch]
        if not batch:
            if self._waiting:
                self._send_next()
            return
        self._out += 1
        self._on_call(len(batch))
        # A batch serves many callers: it runs in a context of its own, not in whichever
        # caller's (with that caller's correlation id) happened to start it.
        spawn(self._call(batch), context=contextvars.Context())

    async def _call(self, batch: list[tuple[K, asyncio.Future[V]]]) -> None:
        try:
            values = await self._fetch([k for k, _ in batch])
            if len(values) != len(batch):
                raise RuntimeError(f"asked for {len(batch)} values, got {len(values)}")
        except BaseException as exc:  # every caller of this batch hears why; nobody else does
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), value in zip(batch, values, strict=True):
                if not future.done():
                    future.set_result(value)
        finally:
            self._out -= 1
            if self._waiting:
                self._send_next()
