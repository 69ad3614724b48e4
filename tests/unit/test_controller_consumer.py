"""The consume loop: fan out before commit, no commit while the store is down, recovery."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiokafka.errors import CommitFailedError
from aiokafka.structs import TopicPartition
from prometheus_client import CollectorRegistry

from chatcore.kafka import MESSAGES_TOPIC
from services.controller.consumer import ConsumerLoop
from services.controller.metrics import ControllerMetrics
from services.controller.registry import SubscriptionRegistry
from services.controller.streams import RelayStream, StreamHub
from tests.unit.controller_fakes import (
    FakeClock,
    FakeConsumer,
    MemoryMessageStore,
    chat_message,
    make_processor,
    message_record,
    run_loop_until,
)

TP0 = TopicPartition(MESSAGES_TOPIC, 0)
TP1 = TopicPartition(MESSAGES_TOPIC, 1)


class _Setup:
    def __init__(self) -> None:
        self.consumer = FakeConsumer([TP0, TP1])
        self.store = MemoryMessageStore()
        self.clock = FakeClock()
        self.prometheus = CollectorRegistry()
        metrics = ControllerMetrics.create(self.prometheus)
        self.hub = StreamHub(
            SubscriptionRegistry(max_batch_bytes=1 << 20), capacity=100, metrics=metrics
        )
        self.stream = self.hub.open("relay-a")
        self.hub.update(self.stream, add=["t1"])
        processor = make_processor(metrics, store=self.store).processor
        self.loop = ConsumerLoop(
            self.consumer,
            processor,
            self.hub,
            metrics,
            batch_max=100,
            poll_timeout_ms=10,
            retry_max_s=2.0,
            sleep=self.clock.sleep,
            clock=self.clock,
        )

    async def run_until(self, condition: Callable[[], bool]) -> None:
        await run_loop_until(self.loop, condition)


def _delivered(stream: RelayStream) -> list[int]:
    seqs = []
    while len(stream):
        batch, _size = stream._queue.popleft()
        seqs += [d.message.seq for d in batch.deliveries]
    return seqs


async def test_batch_is_fanned_out_then_committed_at_next_offsets() -> None:
    """Each batch is persisted, queued to streams, then committed at last offset + 1."""
    s = _Setup()
    s.consumer.queue(
        [
            message_record(chat_message("t1", msg_id="a"), offset=7),
            message_record(chat_message("t1", msg_id="b"), offset=8),
            message_record(chat_message("t2", msg_id="c"), offset=3, partition=1),
        ]
    )
    s.loop.on_assigned([TP0, TP1])
    await s.run_until(lambda: bool(s.consumer.commits))
    assert s.consumer.commits == [{TP0: 9, TP1: 4}]
    assert _delivered(s.stream) == [7, 8]
    assert s.loop.ready.is_set()


async def test_no_commit_while_store_is_down_then_recovers_by_itself() -> None:
    """A down store means no commit and no further consumption; the same batch later succeeds."""
    s = _Setup()
    s.store.failures_left = 5
    s.consumer.queue([message_record(chat_message("t1", msg_id="a"), offset=1)])
    s.consumer.queue([message_record(chat_message("t1", msg_id="b"), offset=2)])
    await s.run_until(lambda: s.consumer.commits[-1:] == [{TP0: 3}])
    # Nothing else was consumed during the outage, and no commit ran ahead of a stored batch.
    assert s.consumer.events.count("poll") == 2
    assert s.consumer.commits in ([{TP0: 2}, {TP0: 3}], [{TP0: 3}])
    assert s.consumer.polls_while_paused >= 5  # kept polling (group membership) while paused
    assert s.consumer.paused == set()  # resumed
    assert _delivered(s.stream) == [1, 2]
    # Exponential backoff, capped.
    backoffs = [x for x in s.clock.sleeps if x > 0]
    assert max(backoffs) <= 2.0
    assert s.prometheus.get_sample_value("controller_store_retries_total") == 5.0


async def test_commit_failure_after_revocation_is_logged_and_consumption_goes_on() -> None:
    """A failing commit (group rebalanced) does not stop the loop."""
    s = _Setup()
    s.consumer.commit_error = CommitFailedError("rebalanced")
    s.consumer.queue([message_record(chat_message("t1", msg_id="a"), offset=1)])
    s.consumer.queue([message_record(chat_message("t1", msg_id="b"), offset=2)])
    await s.run_until(lambda: not s.consumer.batches and len(s.stream) == 2)
    failures = s.prometheus.get_sample_value("controller_commit_failures_total")
    assert failures is not None
    assert failures >= 1.0


async def test_revoked_partitions_are_not_committed() -> None:
    """Offsets of partitions revoked while the batch was processed are left to the new owner."""
    s = _Setup()
    s.consumer.queue(
        [
            message_record(chat_message("t1", msg_id="a"), offset=1),
            message_record(chat_message("t2", msg_id="b"), offset=5, partition=1),
        ]
    )
    s.consumer.assigned = {TP0}
    await s.run_until(lambda: bool(s.consumer.commits))
    assert s.consumer.commits == [{TP0: 2}]


async def test_stop_finishes_the_batch_in_hand() -> None:
    """A stop requested mid-batch still persists, fans out and commits that batch."""
    s = _Setup()
    s.store.failures_left = 1
    s.consumer.queue([message_record(chat_message("t1", msg_id="a"), offset=1)])
    stop_after_failure = s.clock.sleep

    async def sleep_then_stop(seconds: float) -> None:
        s.loop.request_stop()  # asked while the batch is still failing
        await stop_after_failure(seconds)

    s.loop._sleep = sleep_then_stop
    task = asyncio.create_task(s.loop.run())
    await asyncio.wait_for(task, 2)
    assert s.consumer.commits == [{TP0: 2}]
    assert _delivered(s.stream) == [1]


async def test_unexpected_error_rewinds_the_batch() -> None:
    """A bug while processing seeks the partitions back so the batch is read again, not skipped."""
    s = _Setup()
    s.consumer.queue([message_record(chat_message("t1", msg_id="a"), offset=4)])

    async def broken(_docs: object) -> dict[int, int]:
        raise RuntimeError("bug")

    s.store.insert_unordered = broken  # type: ignore[method-assign,assignment]
    await s.run_until(lambda: bool(s.consumer.seeks))
    assert s.consumer.seeks[0] == (TP0, 4)
    assert s.consumer.commits == []


async def test_a_slow_commit_does_not_hold_back_the_next_fan_out_commits_stay_ordered() -> None:
    """Batch 2 is fanned out while batch 1's commit is still in flight; commits land in order."""
    s = _Setup()
    release, started = asyncio.Event(), asyncio.Event()
    commit = s.consumer.commit

    async def slow_commit(offsets: dict[TopicPartition, int] | None = None) -> None:
        started.set()
        await release.wait()
        await commit(offsets)

    s.consumer.commit = slow_commit  # type: ignore[method-assign]
    s.consumer.queue([message_record(chat_message("t1", msg_id="a"), offset=1)])
    task = asyncio.create_task(s.loop.run())
    await asyncio.wait_for(started.wait(), 2)
    s.consumer.queue([message_record(chat_message("t1", msg_id="b"), offset=2)])
    delivered: list[int] = []
    for _ in range(2000):
        delivered += _delivered(s.stream)
        if delivered == [1, 2]:
            break
        await asyncio.sleep(0.001)
    assert delivered == [1, 2]
    assert s.consumer.commits == []  # both fanned out, the first commit still held
    release.set()
    for _ in range(2000):
        if s.consumer.commits[-1:] == [{TP0: 3}]:
            break
        await asyncio.sleep(0.001)
    s.loop.request_stop()
    await asyncio.wait_for(task, 2)
    assert s.consumer.commits == [{TP0: 2}, {TP0: 3}]
