"""The subscription registry's routing and the relay streams' bounded queues."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from chatcore.proto.chat.v1 import chat_pb2
from services.controller.metrics import ControllerMetrics
from services.controller.registry import Routed, SubscriptionRegistry
from services.controller.streams import CloseReason, RelayStream, StreamHub
from tests.unit.controller_fakes import chat_message


def _message(channel_id: str, seq: int, text: str = "hi") -> Routed:
    persisted = chat_pb2.PersistedMessage(
        message=chat_message(channel_id, msg_id=f"m{seq}", text=text), seq=seq
    )
    return Routed.to_channel(channel_id, chat_pb2.Delivery(message=persisted))


def _event(channel_id: str) -> Routed:
    event = chat_pb2.MembershipEvent(
        channel_id=channel_id, user_id="u9", change=chat_pb2.MEMBERSHIP_CHANGE_REMOVED
    )
    return Routed.to_all(chat_pb2.Delivery(membership=event))


def _seqs(batches: list[chat_pb2.DeliveryBatch]) -> list[int]:
    return [d.message.seq for b in batches for d in b.deliveries if d.HasField("message")]


def test_routes_only_to_subscribed_streams_in_order() -> None:
    """A delivery reaches exactly the streams subscribed to its channel, in batch order."""
    registry = SubscriptionRegistry(max_batch_bytes=1 << 20)
    a = registry.register("relay-a")
    b = registry.register("relay-b")
    registry.update(a, add=["t1", "t2"])
    registry.update(b, add=["t2"])
    routed = registry.route([_message("t1", 5), _message("t2", 3), _message("t1", 6)])
    assert _seqs(routed[a]) == [5, 3, 6]
    assert _seqs(routed[b]) == [3]


def test_streams_without_deliveries_are_absent() -> None:
    """A stream with nothing in the batch gets no (empty) DeliveryBatch."""
    registry = SubscriptionRegistry(max_batch_bytes=1 << 20)
    a = registry.register("relay-a")
    registry.update(a, add=["t1"])
    assert registry.route([_message("t2", 1)]) == {}


def test_membership_events_reach_every_stream() -> None:
    """Membership events go to every stream, subscribed to the channel or not."""
    registry = SubscriptionRegistry(max_batch_bytes=1 << 20)
    a = registry.register("relay-a")
    b = registry.register("relay-b")
    registry.update(a, add=["t1"])
    routed = registry.route([_event("t1")])
    assert set(routed) == {a, b}
    assert routed[b][0].deliveries[0].membership.channel_id == "t1"


def test_remove_and_unregister_stop_routing() -> None:
    """Removing a channel or unregistering a stream stops its deliveries and cleans the index."""
    registry = SubscriptionRegistry(max_batch_bytes=1 << 20)
    a = registry.register("relay-a")
    b = registry.register("relay-b")
    registry.update(a, add=["t1", "t2"])
    registry.update(b, add=["t1"])
    registry.update(a, remove=["t1"])
    assert registry.channels(a) == {"t2"}
    assert registry.subscribers("t1") == {b}
    registry.unregister(b)
    assert registry.subscribers("t1") == frozenset()
    assert b not in registry
    assert registry.route([_message("t1", 1)]) == {}
    registry.unregister(b)  # twice is harmless


def test_channel_named_in_add_and_remove_stays_subscribed() -> None:
    """Within one request removals apply first, so add wins."""
    registry = SubscriptionRegistry(max_batch_bytes=1 << 20)
    a = registry.register("relay-a")
    registry.update(a, add=["t1"])
    registry.update(a, add=["t1"], remove=["t1"])
    assert registry.channels(a) == {"t1"}


def test_large_batches_are_cut_under_the_byte_bound() -> None:
    """A stream's share is split into DeliveryBatch messages under the byte bound, order kept."""
    registry = SubscriptionRegistry(max_batch_bytes=65536)
    a = registry.register("relay-a")
    registry.update(a, add=["t1"])
    items = [_message("t1", seq, text="x" * 4000) for seq in range(100)]
    batches = registry.route(items)[a]
    assert len(batches) > 1
    assert all(b.ByteSize() <= 65536 for b in batches)
    assert _seqs(batches) == list(range(100))


def _hub(capacity: int) -> tuple[StreamHub, ControllerMetrics, CollectorRegistry]:
    prometheus = CollectorRegistry()
    metrics = ControllerMetrics.create(prometheus)
    registry = SubscriptionRegistry(max_batch_bytes=1 << 20)
    return StreamHub(registry, capacity=capacity, metrics=metrics), metrics, prometheus


async def _drain(stream: RelayStream) -> list[chat_pb2.DeliveryBatch]:
    return [batch async for batch in stream.batches()]


async def test_full_queue_drops_only_the_slow_stream() -> None:
    """A stream whose queue is full is closed with OVERFLOW; the others keep receiving."""
    hub, _metrics, prometheus = _hub(capacity=3)
    slow = hub.open("relay-slow")
    fast = hub.open("relay-fast")
    hub.update(slow, add=["t1"])
    hub.update(fast, add=["t1"])
    for seq in range(3):
        hub.publish([_message("t1", seq)])
        assert await _take(fast, 1)
    assert slow.reason is None
    assert len(slow) == 3
    hub.publish([_message("t1", 3)])
    assert slow.reason is CloseReason.OVERFLOW
    assert len(slow) == 0  # memory freed at once
    assert await _drain(slow) == []
    assert len(hub) == 1
    hub.publish([_message("t1", 4)])
    got = await _take(fast, 2)
    assert _seqs(got) == [3, 4]
    assert prometheus.get_sample_value("controller_dropped_streams_total") == 1.0
    assert prometheus.get_sample_value("controller_open_streams") == 1.0


async def _take(stream: RelayStream, n: int) -> list[chat_pb2.DeliveryBatch]:
    out: list[chat_pb2.DeliveryBatch] = []
    async for batch in stream.batches():
        out.append(batch)
        if len(out) == n:
            break
    return out


async def test_publish_never_waits_for_a_reader() -> None:
    """Publishing to a stream nobody reads returns at once; the queue holds it."""
    hub, _metrics, prometheus = _hub(capacity=10)
    stream = hub.open("relay-a")
    hub.update(stream, add=["t1"])
    assert hub.publish([_message("t1", 1), _message("t1", 2)]) == 2
    assert len(stream) == 1  # one DeliveryBatch for the two deliveries
    assert prometheus.get_sample_value("controller_deliveries_total") == 2.0


async def test_drained_close_sends_what_is_queued_first() -> None:
    """A shutdown close with drain lets queued batches out, then ends the iteration."""
    hub, _metrics, _prometheus = _hub(capacity=10)
    stream = hub.open("relay-a")
    hub.update(stream, add=["t1"])
    hub.publish([_message("t1", 1)])
    hub.publish([_message("t1", 2)])
    hub.close_all(CloseReason.SHUTDOWN, "bye", drain=True)
    assert _seqs(await _drain(stream)) == [1, 2]
    assert stream.reason is CloseReason.SHUTDOWN
    assert len(hub) == 0


async def test_reader_wakes_up_on_publish() -> None:
    """A waiting reader gets a batch published after it started waiting."""
    hub, _metrics, _prometheus = _hub(capacity=10)
    stream = hub.open("relay-a")
    hub.update(stream, add=["t1"])
    reader = asyncio.create_task(_take(stream, 1))
    await asyncio.sleep(0)
    hub.publish([_message("t1", 7)])
    assert _seqs(await asyncio.wait_for(reader, 1)) == [7]


async def test_byte_bound_drops_a_stream_before_the_count_bound() -> None:
    """Big deliveries hit the byte bound first; the stream is dropped all the same."""
    prometheus = CollectorRegistry()
    hub = StreamHub(
        SubscriptionRegistry(max_batch_bytes=1 << 20),
        capacity=1000,
        max_bytes=20_000,
        metrics=ControllerMetrics.create(prometheus),
    )
    stream = hub.open("relay-a")
    hub.update(stream, add=["t1"])
    hub.publish([_message("t1", 1, text="x" * 8000)])
    hub.publish([_message("t1", 2, text="x" * 8000)])
    assert stream.reason is None
    assert stream.queued_bytes > 16_000
    hub.publish([_message("t1", 3, text="x" * 8000)])
    assert stream.reason is CloseReason.OVERFLOW
    assert stream.queued_bytes == 0


async def test_streams_opened_after_shutdown_end_at_once() -> None:
    """Once the hub is shut down, a late Subscribe gets a stream that is already closed."""
    hub, _metrics, _prometheus = _hub(capacity=10)
    hub.close_all(CloseReason.SHUTDOWN, "bye")
    late = hub.open("relay-late")
    assert late.reason is CloseReason.SHUTDOWN
    assert await _drain(late) == []
    assert len(hub) == 0
