"""Writing to sockets: one rendered frame to many connections, slow ones cut off with 1013.

``broadcast`` writes synchronously to each transport, so a delivery never awaits a socket; the
transport's buffer is the socket's send queue, and a socket whose buffer is over the limit is
closed instead of written to, so it can never slow the others.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from websockets.asyncio.server import ServerConnection, broadcast

from services.relay.metrics import RelayMetrics

_background: set[asyncio.Task[Any]] = set()


def spawn(coro: Any) -> None:
    """Run a coroutine in the background, keeping a reference until it is done."""
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


class WsFanout:
    """Writes one rendered frame to many sockets; a socket too far behind is cut off with 1013."""

    def __init__(self, buffer_limit: int, metrics: RelayMetrics) -> None:
        self._limit = buffer_limit
        self._metrics = metrics
        self._closing: set[ServerConnection] = set()

    def send(self, targets: Any, text: str) -> None:
        ready: list[ServerConnection] = []
        for session in targets:
            conn = cast(ServerConnection, session.conn)
            if conn.transport.get_write_buffer_size() > self._limit:
                self._cut_off(conn)
            else:
                ready.append(conn)
        if ready:
            broadcast(ready, text)
            self._metrics.deliveries.inc(len(ready))

    def _cut_off(self, conn: ServerConnection) -> None:
        if conn in self._closing:
            return
        self._closing.add(conn)
        self._metrics.slow_closes.inc()

        async def close() -> None:
            try:
                await conn.close(1013, "too slow: reconnect and resume from history")
            finally:
                self._closing.discard(conn)

        spawn(close())
