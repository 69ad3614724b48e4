"""Writing to sockets: each frame encoded once, each socket written once per delivery batch.

A server's WebSocket frames are not masked and the relay negotiates no extension, so a text
frame's bytes are the same for every socket: ``encode_text_frame`` builds them once. During a
delivery batch the hub *queues* frames; ``flush`` then joins each socket's frames (in order) into
one buffer and hands it to the socket's transport in one ``write`` — one system call per socket
per batch however many messages the batch held, as Centrifugo does. Sockets that receive the same
frames share the joined buffer.

With a write window (``CHAT_RELAY_WRITE_WINDOW_MS`` > 0) a socket that was written less than a
window ago is not written again at once: its frames wait until the window closes, and every batch
that arrives meanwhile joins the same write. A socket that was quiet is written at once, so the
window costs no latency to a conversation at human pace, only to a socket already receiving tens
of frames a second, where the system call per socket is the relay's largest cost
(docs/benchmarks.md). Order per socket is kept: a frame ``send`` writes for a socket that has
frames waiting goes after them.

A frame for a small audience (at most ``prompt_audience`` sockets of this relay: a DM, a small
team) is never held: the sockets it is queued for are written at the batch's end, with whatever
waited for them. What the window saves is one system call per socket, the same for every
audience, but people feel the latency of a conversation and not of a room of a thousand
(docs/decisions.md, "The write window spares small audiences").

``write`` never waits: the transport's buffer is the socket's send queue, and a socket whose
buffer is over the limit is closed with 1013 instead of written to, so it can never slow the
others. Frames outside a batch (``hello``, acks, errors) are written at once with ``send``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import Any, cast

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from chatcore.tasks import spawn
from services.relay.metrics import RelayMetrics


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

    def __init__(
        self,
        buffer_limit: int,
        metrics: RelayMetrics,
        *,
        window_s: float = 0.0,
        prompt_audience: int = 0,
    ) -> None:
        self._limit = buffer_limit
        self._metrics = metrics
        self._window_s = window_s
        # Without a window nothing is held, so there is nothing to spare.
        self._prompt_audience = prompt_audience if window_s > 0 else 0
        # Sockets with a small audience's frame queued: written at the batch's end regardless.
        self._prompt: set[Any] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._closing: set[ServerConnection] = set()
        # Socket -> frames queued for it since the last write, in order.
        self._queued: dict[Any, list[bytes]] = {}

    def queue(self, targets: Iterable[Any], text: str | bytes) -> None:
        """Add one frame for every target to the batch being built."""
        frame = encode_text_frame(text)
        queued = self._queued
        small = self._prompt_audience
        audience: list[Any] = []
        for session in targets:
            pending = queued.get(session)
            if pending is None:
                queued[session] = [frame]
            else:
                pending.append(frame)
            if small:
                audience.append(session)
                if len(audience) > small:
                    small = 0
        if small and audience:
            self._prompt.update(audience)

    def queue_series(
        self, texts: Sequence[str | bytes], targets: Iterable[tuple[Any, Sequence[int] | None]]
    ) -> None:
        """Add several frames for many targets: all of ``texts`` (None) or those at the indexes
        given, in order; each frame encoded once, one list operation per target."""
        frames = [encode_text_frame(t) for t in texts]
        queued = self._queued
        for session, picked in targets:
            chosen = frames if picked is None else [frames[i] for i in picked]
            if not chosen:
                continue
            pending = queued.get(session)
            if pending is None:
                queued[session] = list(chosen)
            else:
                pending.extend(chosen)

    def flush(self) -> None:
        """End of a batch: write the sockets that were quiet; the rest when the window closes."""
        queued = self._queued
        if not queued:
            return
        if self._window_s <= 0:
            self._queued = {}
            self._prompt.clear()
            self._write_all(queued, 0.0)
            return
        now = time.monotonic()
        since = now - self._window_s
        prompt = self._prompt
        ready = {s: frames for s, frames in queued.items() if s.written_at <= since or s in prompt}
        prompt.clear()
        if len(ready) < len(queued):
            for session in ready:
                del queued[session]
            if self._timer is None:
                self._timer = asyncio.get_running_loop().call_later(
                    self._window_s, self.write_queued
                )
        else:
            self._queued = {}
        self._write_all(ready, now)

    def write_queued(self) -> None:
        """Write everything queued now (the window closed, or the relay is draining)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        queued, self._queued = self._queued, {}
        self._prompt.clear()
        self._write_all(queued, time.monotonic())

    def _write_all(self, queued: dict[Any, list[bytes]], now: float) -> None:
        """One buffer per socket; the same buffer for the same frames."""
        if not queued:
            return
        joined: dict[tuple[int, ...], bytes] = {}
        written = 0
        for session, pending in queued.items():
            session.written_at = now
            if len(pending) == 1:
                data = pending[0]
            else:
                key = tuple(map(id, pending))
                data = joined.get(key) or joined.setdefault(key, b"".join(pending))
            if self._write(cast(ServerConnection, session.conn), data):
                written += len(pending)
        self._metrics.deliveries.inc(written)
        self._metrics.writes.inc(len(queued))

    def send(self, targets: Iterable[Any], text: str | bytes) -> None:
        """Write one frame to every target now (outside a delivery batch), each after whatever
        is still waiting for it in the write window."""
        frame = encode_text_frame(text)
        queued = self._queued
        written = writes = 0
        for session in targets:
            waiting = queued.get(session)
            if waiting is not None:
                waiting.append(frame)
                continue
            writes += 1
            written += self._write(cast(ServerConnection, session.conn), frame)
        self._metrics.deliveries.inc(written)
        self._metrics.writes.inc(writes)

    def _write(self, conn: ServerConnection, data: bytes) -> bool:
        if conn.protocol.state is not State.OPEN or conn.send_in_progress is not None:
            return False
        transport = conn.transport
        if transport.get_write_buffer_size() > self._limit:
            self._cut_off(conn)
            return False
        transport.write(data)
        return True

    def check_backlog(self, conn: ServerConnection) -> bool:
        """Cut ``conn`` off once what waits to be written to it is over the limit, whatever put
        it there; whether it is being cut off (now, or by a delivery before). Deliveries are
        checked as they are written; this is for what the library writes on its own: a pong to
        every ping, so a peer that sends pings and reads nothing would otherwise grow the buffer
        without end. The caller then reads nothing more from it (RelayConnection), so no more
        pongs are made while the close waits for its timeout."""
        if conn.transport.get_write_buffer_size() > self._limit:
            self._cut_off(conn)
        return conn in self._closing

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
