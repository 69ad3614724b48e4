"""The consume loop's checkpoint: read state written behind the fan-out and before the commit."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import pytest
from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from chatcore.kafka import MESSAGES_TOPIC
from chatcore.unread import ReadState
from services.controller import consumer as consumer_module
from services.controller.consumer import ConsumerLoop, RebalanceListener
from services.controller.metrics import ControllerMetrics
from services.controller.registry import Routed, SubscriptionRegistry
from services.controller.streams import StreamHub
from services.controller.write_behind import StateBuffer
from tests.unit.controller_fakes import (
    FakeClock,
    FakeConsumer,
    chat_message,
    make_processor,
    message_record,
    read_record,
    run_loop_until,
)

TP0 = TopicPartition(MESSAGES_TOPIC, 0)


class _Setup:
    def __init__(self, *, flush_interval_s: float = 0.0) -> None:
        self.consumer = FakeConsumer([TP0])
        self.clock = FakeClock()
        self.prometheus = CollectorRegistry()
        metrics = ControllerMetrics.create(self.prometheus)
        self.hub = StreamHub(
            SubscriptionRegistry(max_batch_bytes=1 << 20), capacity=100, metrics=metrics
        )
        stream = self.hub.open("relay-a")
        self.hub.update(stream, add=["t1"])
        processing = make_processor(metrics, held=True)
        self.reads = processing.reads
        assert processing.held is not None
        self.held: StateBuffer = processing.held
        self.loop = ConsumerLoop(
            self.consumer,
            processing.processor,
            self.hub,
            metrics,
            batch_max=100,
            poll_timeout_ms=10,
            retry_max_s=2.0,
            held=self.held,
            flush_interval_s=flush_interval_s,
            sleep=self.clock.sleep,
            clock=self.clock,
        )
        # What the store held each time a batch was fanned out.
        self.stored_at_fan_out: list[dict[tuple[str, str], ReadState]] = []
        publish = self.hub.publish

        def spy(items: Sequence[Routed]) -> int:
            self.stored_at_fan_out.append(dict(self.reads.states))
            return publish(items)

        self.hub.publish = spy  # type: ignore[method-assign]

    async def run_until(self, condition: Callable[[], bool]) -> None:
        await run_loop_until(self.loop, condition)


async def test_read_state_is_written_after_the_fan_out_and_before_the_commit() -> None:
    """A message's read-state effect does not hold back its fan-out and is stored by its commit."""
    s = _Setup()
    s.consumer.queue([message_record(chat_message("t1", msg_id="a", sender="u1"), offset=4)])
    await s.run_until(lambda: bool(s.consumer.commits))
    assert s.stored_at_fan_out == [{}]
    assert s.consumer.commits == [{TP0: 5}]
    assert s.reads.states[("t1", "u1")].seq == 4


async def test_a_read_marker_is_stored_before_its_read_frames_go_out() -> None:
    """A member's read marker is in the store when their other sockets get ``read``."""
    s = _Setup(flush_interval_s=5.0)
    s.consumer.queue([read_record("t1", "u2", 7, 3, offset=8)])
    await s.run_until(lambda: bool(s.stored_at_fan_out))
    assert s.stored_at_fan_out == [{("t1", "u2"): ReadState(seq=7, count=3)}]


async def test_batches_within_a_flush_interval_share_one_write_and_one_commit() -> None:
    """Three batches from one sender write their read document once and commit once."""
    s = _Setup(flush_interval_s=0.3)
    for offset in (1, 2, 3):
        s.consumer.queue(
            [message_record(chat_message("t1", msg_id=f"m{offset}", sender="u1"), offset=offset)]
        )
    await s.run_until(lambda: bool(s.consumer.commits))
    assert s.consumer.commits == [{TP0: 4}]
    assert s.reads.saved == [("t1", "u1")]
    assert s.reads.states[("t1", "u1")].seq == 3
    assert s.prometheus.get_sample_value("controller_state_documents_written_total") == 2.0


async def test_no_commit_until_the_held_state_is_stored() -> None:
    """While the read documents cannot be written nothing is committed; then both happen."""
    s = _Setup()
    s.reads.failures_left = 3
    s.consumer.queue([message_record(chat_message("t1", msg_id="a", sender="u1"), offset=1)])
    await s.run_until(lambda: bool(s.consumer.commits))
    assert s.consumer.commits == [{TP0: 2}]
    assert s.reads.states[("t1", "u1")].seq == 1
    assert s.prometheus.get_sample_value("controller_store_retries_total") == 3.0


async def test_a_revocation_whose_checkpoint_cannot_land_commits_nothing_and_drops_the_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Partitions revoked while the database is down: no commit, held state dropped for the next
    owner to redo (it consumes the records again)."""
    monkeypatch.setattr(consumer_module, "_SETTLE_TIMEOUT_S", 0.05)
    s = _Setup()
    s.reads.failures_left = 1_000_000
    s.consumer.queue([message_record(chat_message("t1", msg_id="a", sender="u1"), offset=1)])
    task = asyncio.create_task(s.loop.run())
    for _ in range(2000):
        if s.held.pending and s.stored_at_fan_out:
            break
        await asyncio.sleep(0.001)
    await RebalanceListener(s.loop).on_partitions_revoked({TP0})
    assert not s.held.pending
    s.loop.request_stop()
    await asyncio.wait_for(task, 2)
    assert s.consumer.commits == []
    assert s.reads.states == {}
