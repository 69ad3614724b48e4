"""Writing to sockets: each frame encoded once, each socket written once per delivery batch.

A server's WebSocket frames are not masked and the relay negotiates no extension, so a text
frame's bytes are the same for every socket: ``encode_text_frame`` builds them once. During a
delivery batch the hub *queues* frames; ``flush`` then joins each socket's frames (in order) into
one buffer and hands it to the socket's transport in one ``write`` — one system call per socket
per batch however many messages the batch held, as Centrifugo does. Sockets that receive the same
frames share the joined buffer.

``write`` never waits: the transport's buffer is the socket's send queue, and a socket whose
buffer is over the limit is closed with 1013 instead of written to, so it can never slow the
others. Frames outside a batch (``hello``, acks, errors) are written at once with ``send``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from services.relay.metrics import RelayMetrics

_background: set[asyncio.Task[Any]] = set()


def spawn(coro: Any) -> None:
    """Run a coroutine in the background, keeping a reference until it is done."""
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


def encode_text_frame(text: str | bytes) -> bytes:
    """One final, unmasked text frame (RFC 6455 section 5.2) carrying ``text`` (UTF-8)."""
    payload = text.encode() if isinstance(text, str) else text
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big") + payload
    return b"\x81\x7f" + size.to_bytes(8, "big") + payload


class WsFanout:
    """Encodes once, queues per socket during a batch, writes once per socket per flush."""

    def __init__(self, buffer_limit: int, metrics: RelayMetrics) -> None:
        self._limit = buffer_limit
        self._metrics = metrics
        self._closing: set[ServerConnection] = set()
        # Socket -> frames queued for it since the last flush, in order.
        self._queued: dict[Any, list[bytes]] = {}

    def queue(self, targets: Iterable[Any], text: str | bytes) -> None:
        """Add one frame for every target to the batch being built."""
        frame = encode_text_frame(text)
        queued = self._queued
        for session in targets:
            pending = queued.get(session)
            if pending is None:
                queued[session] = [frame]
            else:
                pending.append(frame)

    def flush(self) -> None:
        """Write everything queued: one buffer per socket; the same buffer for the same frames."""
        if not self._queued:
            return
        queued, self._queued = self._queued, {}
        joined: dict[tuple[int, ...], bytes] = {}
        written = 0
        for session, pending in queued.items():
            if len(pending) == 1:
                data = pending[0]
            else:
                key = tuple(map(id, pending))
                data = joined.get(key) or joined.setdefault(key, b"".join(pending))
            if self._write(cast(ServerConnection, session.conn), data):
                written += len(pending)
        self._metrics.deliveries.inc(written)

    def send(self, targets: Iterable[Any], text: str | bytes) -> None:
        """Write one frame to every target now (outside a delivery batch)."""
        frame = encode_text_frame(text)
        written = sum(self._write(cast(ServerConnection, s.conn), frame) for s in targets)
        self._metrics.deliveries.inc(written)

    def _write(self, conn: ServerConnection, data: bytes) -> bool:
        if conn.protocol.state is not State.OPEN or conn.send_in_progress is not None:
            return False
        transport = conn.transport
        if transport.get_write_buffer_size() > self._limit:
            self._cut_off(conn)
            return False
        transport.write(data)
        return True

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
