"""The consume loop: poll a batch, persist it (retrying while the database is down), fan it out,
commit its offsets. One batch at a time, so per-partition order is kept end to end.

After its fan-out a batch's offsets go to the checkpoint: a task that writes the read state and
channel counters held behind (``write_behind.py``), then commits every offset handed to it so far,
and repeats at most every ``flush_interval_s`` while batches keep coming. So the next batches are
stored and fanned out while a checkpoint runs, a busy read document is written once per checkpoint
instead of once per message, and still nothing is committed before its effects are stored. A batch
in which a member marked something read waits for the checkpoint before its fan-out, so their
other sockets' ``read`` frames never run ahead of the stored state.

While a batch cannot be persisted the loop consumes nothing more: it pauses every assigned partition
(the fetcher drops what it had buffered, so memory stays bounded) and keeps polling the paused
consumer so it stays in the group, then retries the same batch with capped exponential backoff and
resumes by itself when the database answers again.

After a (re)start the first poll waits for a start gate (the server passes "a relay has
subscribed, or a short grace passed"): what is consumed again after a crash is fanned out to
relays that have already reconnected rather than to nobody.

Rebalances need no coordination: a commit for a partition that was revoked in the meantime fails
or is skipped, the new owner consumes those records again, and the database write is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.errors import KafkaError

from chatcore.errors import Unavailable
from chatcore.kafka import EVENTS_TOPIC, MESSAGES_TOPIC, SIGNALS_TOPIC, make_consumer
from chatcore.logging import get_logger
from chatcore.settings import Settings
from chatcore.tasks import cancel_and_wait
from services.controller.batch import BatchProcessor, Outcome, PendingBatch
from services.controller.metrics import ControllerMetrics
from services.controller.records import Record
from services.controller.streams import StreamHub

CONSUMED_TOPICS = (MESSAGES_TOPIC, SIGNALS_TOPIC, EVENTS_TOPIC)
_LAG_INTERVAL_S = 1.0
# While paused, poll this often so the group does not consider the member stuck.
_PAUSED_POLL_S = 1.0
# How long a rebalance or a stop waits for the last checkpoint (the database may be down: then
# its records are consumed again by whoever owns them next).
_SETTLE_TIMEOUT_S = 10.0

_log = get_logger("controller.consumer")


class ConsumerPort(Protocol):
    """The part of ``AIOKafkaConsumer`` the loop uses (tests pass an in-memory fake)."""

    async def getmany(
        self, *partitions: Any, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[Any, list[Any]]: ...

    async def commit(self, offsets: dict[Any, int] | None = None) -> None: ...

    def assignment(self) -> set[Any]: ...

    def pause(self, *partitions: Any) -> None: ...

    def resume(self, *partitions: Any) -> None: ...

    def seek(self, partition: Any, offset: int) -> None: ...

    def highwater(self, partition: Any) -> int | None: ...

    async def position(self, partition: Any) -> int: ...


class HeldState(Protocol):
    """What the checkpoint writes before it commits (``write_behind.StateBuffer``)."""

    @property
    def pending(self) -> bool: ...

    async def flush(self) -> int: ...

    def discard(self) -> int: ...


def make_controller_consumer(settings: Settings, *, client_id: str) -> AIOKafkaConsumer:
    """The shared consumer factory with the controller's group, reset policy and batch cap."""
    return make_consumer(
        settings,
        group_id=settings.controller_group_id,
        client_id=client_id,
        offset_reset=settings.controller_offset_reset,
        max_poll_records=settings.controller_batch_max,
    )


class ConsumerLoop:
    def __init__(
        self,
        consumer: ConsumerPort,
        processor: BatchProcessor,
        hub: StreamHub,
        metrics: ControllerMetrics,
        *,
        batch_max: int,
        poll_timeout_ms: int,
        retry_max_s: float,
        retry_initial_s: float = 0.1,
        held: HeldState | None = None,
        flush_interval_s: float = 0.0,
        start_gate: Callable[[], Awaitable[object]] | None = None,
        after_commit: Callable[[], None] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self._processor = processor
        self._hub = hub
        self._metrics = metrics
        self._batch_max = batch_max
        self._poll_timeout_ms = poll_timeout_ms
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._held = held
        self._flush_interval_s = flush_interval_s
        self._start_gate = start_gate
        self._after_commit = after_commit
        self._sleep = sleep
        self._clock = clock
        self._stopping = False
        self._stop_requested = asyncio.Event()
        self._running = False
        # Bumped by every assignment; the loop settles positions until it has caught up.
        self._assignment_gen = 0
        self._settled_gen = 0
        self._positions: dict[Any, int] = {}
        self._lag_updated = float("-inf")
        # Offsets of fanned-out batches not committed yet, and the task committing them.
        self._uncommitted: dict[Any, int] = {}
        self._checkpointing: asyncio.Task[None] | None = None
        self._checkpoint_due = asyncio.Event()
        self.ready = asyncio.Event()

    # -- rebalance callbacks (called by the Kafka client during a rebalance) --

    def on_assigned(self, partitions: Iterable[Any]) -> None:
        tps = sorted(partitions)
        self._assignment_gen += 1
        self._processor.partitions_moved()
        _log.info("partitions_assigned", partitions=[f"{tp.topic}/{tp.partition}" for tp in tps])

    def on_revoked(self, partitions: Iterable[Any]) -> None:
        tps = sorted(partitions)
        if self._held is not None and self._held.pending:
            # The checkpoint before this never landed: the next owner redoes these effects.
            _log.warning("held_state_discarded", documents=self._held.discard())
        self._processor.partitions_moved()
        for tp in tps:
            self._positions.pop(tp, None)
            with contextlib.suppress(KeyError):  # never reported for this partition
                self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        _log.info("partitions_revoked", partitions=[f"{tp.topic}/{tp.partition}" for tp in tps])

    # -- the loop --

    @property
    def running(self) -> bool:
        return self._running and not self._stopping

    def request_stop(self) -> None:
        """Finish the batch in hand (persist, fan out, commit), then return from ``run``."""
        self._stopping = True
        self._stop_requested.set()

    async def run(self) -> None:
        self._running = True
        delay = self._retry_initial_s
        gate = self._start_gate
        try:
            while not self._stopping:
                try:
                    if self._settled_gen != self._assignment_gen:
                        await self._settle_assignment()
                    if gate is not None:
                        # Ready (positions known) first, then hold the first poll for the gate.
                        await self._until_stopped_or(gate())
                        gate = None
                        continue
                    batch = await self._consumer.getmany(
                        timeout_ms=self._poll_timeout_ms, max_records=self._batch_max
                    )
                    if batch:
                        await self._handle(batch)
                    await self._update_lag()
                    delay = self._retry_initial_s
                except asyncio.CancelledError:
                    raise
                except Exception:
                    # Kafka client errors or a bug: _handle has rewound the batch, so nothing is
                    # skipped; back off and go on rather than leave the partitions unconsumed.
                    _log.exception("consume_iteration_failed", retry_in_s=delay)
                    await self._sleep(delay)
                    delay = min(delay * 2, self._retry_max_s)
        finally:
            await self.settle_commit()
            self._running = False

    async def _until_stopped_or(self, awaitable: Awaitable[object]) -> None:
        waiting = asyncio.ensure_future(awaitable)
        stopped = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait([waiting, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for future in (waiting, stopped):
                future.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await future

    async def _settle_assignment(self) -> None:
        """Resolve the start position of every assigned partition, then report ready.

        With ``latest`` the position is looked up after assignment; a record produced before that
        lookup finishes would be skipped, so readiness waits for it.
        """
        generation = self._assignment_gen
        for tp in sorted(self._consumer.assignment()):
            self._positions[tp] = await self._consumer.position(tp)
        self._settled_gen = generation
        self.ready.set()

    async def _handle(self, batch: dict[Any, list[Any]]) -> None:
        first = {tp: records[0].offset for tp, records in batch.items() if records}
        offsets = {tp: records[-1].offset + 1 for tp, records in batch.items() if records}
        try:
            pending = self._processor.prepare(
                [Record.from_kafka(r) for records in batch.values() for r in records]
            )
            outcome = await self._persist(pending)
            if outcome.marks_read:
                await self._checkpoint_now()
        except BaseException:
            # Not persisted: put the partitions back to the batch's start so it is read again
            # instead of being skipped by the next commit.
            self._rewind(first)
            raise
        self._hub.publish(outcome.routed)
        self._uncommitted.update(offsets)
        self._start_checkpoint()

    def _start_checkpoint(self) -> None:
        if self._checkpointing is None or self._checkpointing.done():
            self._checkpointing = asyncio.create_task(self._checkpoints(), name="checkpoint")

    async def _checkpoint_now(self) -> None:
        """Write what is held, and commit what is fanned out, before going on."""
        self._checkpoint_due.set()
        self._start_checkpoint()
        checkpointing = self._checkpointing
        if checkpointing is not None:
            await asyncio.shield(checkpointing)

    async def settle_commit(self) -> None:
        """Finish the checkpoint (before a rebalance or a stop), waiting at most a few seconds.

        Never raises: a checkpoint that fails or is given up only means its records are consumed
        again later, and the batch in hand must still be fanned out.
        """
        checkpointing = self._checkpointing
        if checkpointing is None:
            return
        self._checkpoint_due.set()
        try:
            async with asyncio.timeout(_SETTLE_TIMEOUT_S):
                await asyncio.shield(checkpointing)
        except TimeoutError:
            _log.warning("checkpoint_given_up", timeout_s=_SETTLE_TIMEOUT_S)
            await cancel_and_wait(checkpointing)
            self._uncommitted.clear()
        finally:
            if self._checkpointing is checkpointing:
                self._checkpointing = None

    async def _checkpoints(self) -> None:
        """Write the held state, then commit, until nothing is left; at most one runs."""
        delay = self._retry_initial_s
        while self._uncommitted or (self._held is not None and self._held.pending):
            if not self._checkpoint_due.is_set() and self._flush_interval_s > 0:
                # Let a few more batches' state gather: each document is written once for all.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._flush_interval_s):
                        await self._checkpoint_due.wait()
            self._checkpoint_due.clear()
            offsets, self._uncommitted = self._uncommitted, {}
            if self._held is not None:
                started = self._clock()
                try:
                    written = await self._held.flush()
                except Exception as exc:
                    # Held again by the buffer; later offsets win (they include these
                    # partitions' progress).
                    self._uncommitted = {**offsets, **self._uncommitted}
                    self._metrics.store_retries.inc()
                    if isinstance(exc, Unavailable):
                        _log.warning(
                            "checkpoint_write_failed",
                            error=exc.message,
                            retry_in_s=round(delay, 3),
                        )
                    else:
                        _log.exception("checkpoint_write_failed", retry_in_s=round(delay, 3))
                    await self._sleep(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    self._checkpoint_due.set()
                    continue
                if written:
                    self._metrics.state_flush_latency.observe(self._clock() - started)
                    self._metrics.state_written.inc(written)
                delay = self._retry_initial_s
            if offsets:
                try:
                    await self._commit_batch(offsets)
                except Exception:
                    # Caught here, not where the task is awaited: a finished checkpoint is
                    # replaced by the next batch's without anyone awaiting it. A lost commit only
                    # means these records are consumed again; later offsets supersede them.
                    self._metrics.commit_failures.inc()
                    _log.exception("checkpoint_failed_unexpectedly")

    async def _commit_batch(self, offsets: dict[Any, int]) -> None:
        await self._commit(offsets)
        if self._after_commit is not None:
            self._after_commit()
        self._positions.update(offsets)

    def _rewind(self, first: dict[Any, int]) -> None:
        assigned = self._consumer.assignment()
        for tp, offset in first.items():
            if tp in assigned:
                self._consumer.seek(tp, offset)

    async def _persist(self, pending: PendingBatch) -> Outcome:
        delay = self._retry_initial_s
        attempt = 1
        paused = False
        try:
            while True:
                try:
                    outcome = await self._processor.persist(pending)
                except Unavailable as exc:
                    self._metrics.store_retries.inc()
                    _log.warning(
                        "batch_persist_failed",
                        error=exc.message,
                        attempt=attempt,
                        retry_in_s=round(delay, 3),
                    )
                    paused = True
                    await self._wait_paused(delay)
                    delay = min(delay * 2, self._retry_max_s)
                    attempt += 1
                    continue
                if paused:
                    _log.info("batch_persist_recovered", attempts=attempt)
                return outcome
        finally:
            if paused:
                self._consumer.resume(*self._consumer.assignment())

    async def _wait_paused(self, seconds: float) -> None:
        """Sleep ``seconds`` without consuming, polling the paused consumer to stay in the group."""
        deadline = self._clock() + seconds
        while True:
            # Re-pause every time: a rebalance meanwhile hands out partitions unpaused.
            assigned = self._consumer.assignment()
            self._consumer.pause(*assigned)
            stray = await self._consumer.getmany(timeout_ms=0)
            # Anything returned anyway is put back, to be read after the batch in hand.
            self._rewind({tp: records[0].offset for tp, records in stray.items() if records})
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            await self._sleep(min(remaining, _PAUSED_POLL_S))

    async def _commit(self, offsets: dict[Any, int]) -> None:
        assigned = self._consumer.assignment()
        owned = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if len(owned) < len(offsets):
            _log.info(
                "commit_skipped_revoked",
                partitions=[f"{tp.topic}/{tp.partition}" for tp in offsets if tp not in owned],
            )
        if not owned:
            return
        try:
            await self._consumer.commit(owned)
        except KafkaError as exc:
            # Typically the group rebalanced after the batch was fetched: the new owner consumes
            # it again, the database absorbs the duplicate, relays dedupe by id.
            self._metrics.commit_failures.inc()
            _log.warning("commit_failed", error=type(exc).__name__)

    async def _update_lag(self) -> None:
        now = self._clock()
        if now - self._lag_updated < _LAG_INTERVAL_S:
            return
        self._lag_updated = now
        for tp in self._consumer.assignment():
            highwater = self._consumer.highwater(tp)
            position = self._positions.get(tp)
            if highwater is None or position is None:
                continue
            self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(
                max(highwater - position, 0)
            )


class RebalanceListener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Forwards the Kafka client's rebalance callbacks to the loop."""

    def __init__(self, loop: ConsumerLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # What was fanned out is committed while the partitions are still ours.
        await self._loop.settle_commit()
        self._loop.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._loop.on_assigned(assigned)
