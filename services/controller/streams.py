"""Relay streams: a bounded queue per ``Subscribe`` call, and the hub that fills them.

The consumer must never wait for a relay. ``publish`` only appends to in-memory queues; a stream
whose queue would overflow is cut off at once (its call ends with RESOURCE_EXHAUSTED, the relay
reconnects and resends its channel set, its clients resync from history) so one slow relay costs
the others nothing.

A subscription change is confirmed by queueing its ``confirmed`` batch on the same queue right
after the registry holds it: everything queued before the confirmation was routed without the
change, everything after with it. That order is what lets a relay greet a socket only once its
channels are in force (docs/decisions.md, "Gap-free live delivery").
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence

from chatcore.logging import get_logger
from chatcore.proto.chat.v1 import chat_pb2
from services.controller.metrics import ControllerMetrics
from services.controller.registry import Routed, StreamId, SubscriptionRegistry

_log = get_logger("controller.streams")


class CloseReason(enum.Enum):
    """Why a stream ended; the servicer maps it to the call's status."""

    ENDED = "ended"  # the relay finished or went away
    OVERFLOW = "overflow"  # too slow: RESOURCE_EXHAUSTED
    INVALID = "invalid"  # a malformed request: INVALID_ARGUMENT
    SHUTDOWN = "shutdown"  # the controller is stopping: UNAVAILABLE


class RelayStream:
    """One relay connection's outgoing queue: at most ``capacity`` DeliveryBatch messages and
    ``max_bytes`` encoded bytes (the count alone would let big messages pile up)."""

    def __init__(
        self, stream_id: StreamId, relay_id: str, capacity: int, max_bytes: int | None = None
    ) -> None:
        self.stream_id = stream_id
        self.relay_id = relay_id
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._queue: deque[tuple[chat_pb2.DeliveryBatch, int]] = deque()
        self._bytes = 0
        self._wakeup = asyncio.Event()
        self._reason: CloseReason | None = None
        self._drain = False
        self.detail = ""

    @property
    def reason(self) -> CloseReason | None:
        """None while open."""
        return self._reason

    def __len__(self) -> int:
        return len(self._queue)

    def confirm(self, request_id: int, *, fanned_out_before: bool = False) -> None:
        """Queue the confirmation of subscription request ``request_id`` behind what is queued.

        Not bounded by the capacity: a confirmation is a few bytes, and refusing it would leave
        the relay waiting for nothing.
        """
        if self._reason is not None or not request_id:
            return
        batch = chat_pb2.DeliveryBatch(confirmed=request_id, fanned_out_before=fanned_out_before)
        self._queue.append((batch, 0))
        self._wakeup.set()

    def offer(self, batches: Sequence[chat_pb2.DeliveryBatch]) -> bool:
        """Queue all of them, or none and return False when they would not fit."""
        if self._reason is not None:
            return True  # closing anyway; nothing to report
        if len(self._queue) + len(batches) > self._capacity:
            return False
        sized = [(batch, batch.ByteSize()) for batch in batches]
        added = sum(size for _, size in sized)
        if self._max_bytes is not None and self._bytes + added > self._max_bytes:
            return False
        self._queue.extend(sized)
        self._bytes += added
        self._wakeup.set()
        return True

    @property
    def drained(self) -> bool:
        """Closed with ``drain`` and every queued batch has been taken."""
        return self._reason is not None and self._drain and not self._queue

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def close(self, reason: CloseReason, detail: str = "", *, drain: bool = False) -> None:
        """End the stream; ``drain`` lets already queued batches go out first. First close wins."""
        if self._reason is not None:
            return
        self._reason = reason
        self._drain = drain
        self.detail = detail
        if not drain:
            # Free the memory now: a dropped relay recovers from history, not from this queue.
            self._queue.clear()
            self._bytes = 0
        self._wakeup.set()

    async def batches(self) -> AsyncIterator[chat_pb2.DeliveryBatch]:
        """Yield queued batches as they come, until the stream is closed (and drained)."""
        while True:
            if self._queue:
                batch, size = self._queue.popleft()
                self._bytes -= size
                yield batch
                continue
            if self._reason is not None:
                return
            self._wakeup.clear()
            await self._wakeup.wait()


class StreamHub:
    """Every open relay stream, their subscriptions, and non-blocking fan-out to them."""

    def __init__(
        self,
        registry: SubscriptionRegistry,
        *,
        capacity: int,
        metrics: ControllerMetrics,
        max_bytes: int | None = None,
    ) -> None:
        self._registry = registry
        self._capacity = capacity
        self._max_bytes = max_bytes
        # Set by a shutdown: streams opened afterwards end at once.
        self._closed: tuple[CloseReason, str] | None = None
        self._metrics = metrics
        self._streams: dict[StreamId, RelayStream] = {}
        self._first_opened = asyncio.Event()
        # Whether anything was fanned out since start: a stream opened later may have missed it.
        self.fanned_out = False

    def __len__(self) -> int:
        return len(self._streams)

    def open(self, relay_id: str) -> RelayStream:
        stream_id = self._registry.register(relay_id)
        stream = RelayStream(stream_id, relay_id, self._capacity, self._max_bytes)
        self._streams[stream_id] = stream
        self._metrics.open_streams.set(len(self._streams))
        self._first_opened.set()
        if self._closed is not None:
            self.close(stream, *self._closed)
        return stream

    async def wait_for_first_stream(self, timeout_s: float) -> bool:
        """Until some relay has subscribed (True) or ``timeout_s`` passed (False)."""
        try:
            await asyncio.wait_for(self._first_opened.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    def update(
        self, stream: RelayStream, *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        self._registry.update(stream.stream_id, add=add, remove=remove)

    def channels(self, stream: RelayStream) -> frozenset[str]:
        return self._registry.channels(stream.stream_id)

    def close(
        self, stream: RelayStream, reason: CloseReason, detail: str = "", *, drain: bool = False
    ) -> None:
        """Stop routing to the stream and end it; closing twice is harmless."""
        stream.close(reason, detail, drain=drain)
        if self._streams.pop(stream.stream_id, None) is not None:
            self._registry.unregister(stream.stream_id)
            self._metrics.open_streams.set(len(self._streams))

    def publish(self, items: Sequence[Routed]) -> int:
        """Queue a batch's deliveries on the streams that want them; return deliveries queued.

        Never waits. A stream without room is dropped rather than slowing everyone down.
        """
        if not items:
            return 0
        self.fanned_out = True
        if not self._streams:
            return 0
        queued = 0
        for stream_id, batches in self._registry.route(items).items():
            stream = self._streams.get(stream_id)
            if stream is None:
                continue
            if stream.offer(batches):
                queued += sum(len(b.deliveries) for b in batches)
                continue
            self._metrics.dropped_streams.inc()
            _log.warning(
                "relay_stream_dropped",
                relay_id=stream.relay_id,
                stream_id=stream_id,
                queued=len(stream),
                queued_bytes=stream.queued_bytes,
            )
            self.close(stream, CloseReason.OVERFLOW, "relay too slow: stream queue full")
        self._metrics.deliveries.inc(queued)
        return queued

    def close_all(self, reason: CloseReason, detail: str = "", *, drain: bool = True) -> None:
        """End every stream, and any opened later (shutdown)."""
        self._closed = (reason, detail)
        for stream in list(self._streams.values()):
            self.close(stream, reason, detail, drain=drain)
