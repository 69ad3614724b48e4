"""Which relay stream wants which channel, and routing a batch's deliveries to those streams.

Pure: no I/O and no clock. The servicer registers a stream per ``Subscribe`` call and applies the
relay's ``add``/``remove`` requests; the consumer routes each processed batch through ``route``.
Membership events go to every stream (a relay must revoke a socket it holds for a channel it is
not subscribed to any more, and must learn of an ``added`` user before it subscribes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from chatcore.proto.chat.v1 import chat_pb2

StreamId = int

# A repeated field element costs its bytes plus a tag byte and a length varint (<= 3 bytes here).
_ELEMENT_OVERHEAD = 4


@dataclass(frozen=True, slots=True)
class Routed:
    """One delivery of a batch and who gets it: ``channel_id`` None means every stream."""

    channel_id: str | None
    delivery: chat_pb2.Delivery
    size: int

    @classmethod
    def to_channel(cls, channel_id: str, delivery: chat_pb2.Delivery) -> Routed:
        return cls(channel_id, delivery, delivery.ByteSize())

    @classmethod
    def to_all(cls, delivery: chat_pb2.Delivery) -> Routed:
        return cls(None, delivery, delivery.ByteSize())


class _Chunks:
    """One stream's share of a batch, cut into messages small enough for the relay to receive."""

    __slots__ = ("_batches", "_current", "_current_bytes", "_max_bytes")

    def __init__(self, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._batches: list[chat_pb2.DeliveryBatch] = []
        self._current: list[chat_pb2.Delivery] = []
        self._current_bytes = 0

    def add(self, item: Routed) -> None:
        cost = item.size + _ELEMENT_OVERHEAD
        if self._current and self._current_bytes + cost > self._max_bytes:
            self._flush()
        self._current.append(item.delivery)
        self._current_bytes += cost

    def _flush(self) -> None:
        self._batches.append(chat_pb2.DeliveryBatch(deliveries=self._current))
        self._current = []
        self._current_bytes = 0

    def done(self) -> list[chat_pb2.DeliveryBatch]:
        if self._current:
            self._flush()
        return self._batches


class SubscriptionRegistry:
    """Streams (one per relay connection) and the channel set of each."""

    def __init__(self, *, max_batch_bytes: int) -> None:
        self._max_batch_bytes = max_batch_bytes
        self._next_id = 1
        self._relays: dict[StreamId, str] = {}
        self._channels: dict[StreamId, set[str]] = {}
        self._subscribers: dict[str, set[StreamId]] = {}

    def register(self, relay_id: str) -> StreamId:
        """A new stream with no channels yet. One relay may hold several (a reconnect overlaps)."""
        stream_id = self._next_id
        self._next_id += 1
        self._relays[stream_id] = relay_id
        self._channels[stream_id] = set()
        return stream_id

    def unregister(self, stream_id: StreamId) -> None:
        """Forget a stream and its channels; unknown ids are ignored (a drop and an end race)."""
        channels = self._channels.pop(stream_id, None)
        self._relays.pop(stream_id, None)
        for channel_id in channels or ():
            self._unsubscribe(stream_id, channel_id)

    def update(
        self, stream_id: StreamId, *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        """Apply one request: removals first, so a channel named in both stays subscribed."""
        channels = self._channels.get(stream_id)
        if channels is None:
            return
        for channel_id in remove:
            if channel_id in channels:
                channels.discard(channel_id)
                self._unsubscribe(stream_id, channel_id)
        for channel_id in add:
            channels.add(channel_id)
            self._subscribers.setdefault(channel_id, set()).add(stream_id)

    def _unsubscribe(self, stream_id: StreamId, channel_id: str) -> None:
        streams = self._subscribers.get(channel_id)
        if streams is not None:
            streams.discard(stream_id)
            if not streams:
                del self._subscribers[channel_id]

    def __contains__(self, stream_id: object) -> bool:
        return stream_id in self._relays

    def __len__(self) -> int:
        return len(self._relays)

    def relay_id(self, stream_id: StreamId) -> str:
        return self._relays[stream_id]

    def channels(self, stream_id: StreamId) -> frozenset[str]:
        return frozenset(self._channels.get(stream_id, ()))

    def subscribers(self, channel_id: str) -> frozenset[StreamId]:
        return frozenset(self._subscribers.get(channel_id, ()))

    def route(self, items: Sequence[Routed]) -> dict[StreamId, list[chat_pb2.DeliveryBatch]]:
        """Each stream's deliveries of the batch, in batch order, cut into size-bounded messages.

        Streams with nothing to receive are absent. Order is preserved per stream, so per-channel
        (per-partition) order survives as long as batches are routed in consumption order.
        """
        shares: dict[StreamId, _Chunks] = {}
        everyone = list(self._relays)
        for item in items:
            targets: Iterable[StreamId] = (
                everyone if item.channel_id is None else self._subscribers.get(item.channel_id, ())
            )
            for stream_id in targets:
                share = shares.get(stream_id)
                if share is None:
                    share = shares[stream_id] = _Chunks(self._max_batch_bytes)
                share.add(item)
        return {stream_id: share.done() for stream_id, share in shares.items()}
