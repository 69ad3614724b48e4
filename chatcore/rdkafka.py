"""A librdkafka (confluent-kafka) producer behind the asyncio ``send`` the relay already uses.

Why: aiokafka builds record batches, CRCs and requests in pure Python, paid on the relay's loop
for every message it takes in; librdkafka does all of it in C on its own threads
(docs/decisions.md, "The relay's producer", has the figures).

Placement must not change with the client: every producer of ``chat.messages.v1`` puts a channel
on the same partition, and aiokafka and the Java client use murmur2 of the key. librdkafka's
default is CRC32, so ``partitioner`` is set to ``murmur2_random`` (murmur2 for keyed records, the
Java client's arithmetic; random only for keyless ones, which we never send).

Threads: librdkafka calls ``on_delivery`` from whichever thread runs ``poll``; a daemon thread
polls, collects the reports and wakes the loop at most once per collected group, so a burst of
acks costs one loop wake-up, not one each.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from dataclasses import dataclass
from typing import Any

import confluent_kafka

from chatcore.errors import Unavailable
from chatcore.logging import get_logger
from chatcore.settings import Settings

_log = get_logger("chatcore.rdkafka")
_POLL_S = 0.2


@dataclass(frozen=True, slots=True)
class Delivered:
    """What the broker acknowledged: the record's place (``.offset`` as aiokafka's metadata)."""

    topic: str
    partition: int
    offset: int


def producer_config(settings: Settings, *, client_id: str) -> dict[str, Any]:
    """The librdkafka configuration: idempotent, acks from every in-sync replica, murmur2."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "client.id": client_id,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.kafka_linger_ms,
        "partitioner": "murmur2_random",
        "socket.nagle.disable": True,
        "request.timeout.ms": settings.kafka_request_timeout_ms,
        # A record not acknowledged in this time is reported failed (the sender gets an error
        # frame and may retry with the same client_msg_id): never a silent wait of minutes.
        "message.timeout.ms": 2 * settings.kafka_request_timeout_ms,
    }


class RdKafkaProducer:
    """``start()``, ``await send(...)`` → future of ``Delivered``, ``flush()``, ``stop()``."""

    def __init__(self, settings: Settings, *, client_id: str) -> None:
        self._config = producer_config(settings, client_id=client_id)
        self._timeout_s = settings.kafka_request_timeout_ms / 1000
        self._producer: confluent_kafka.Producer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reports: collections.deque[tuple[asyncio.Future[Delivered], Any, Any]] = (
            collections.deque()
        )
        self._wake_scheduled = False
        self._running = False
        self._poller: threading.Thread | None = None

    async def start(self) -> None:
        """Connect; ``Unavailable`` when no broker answers within the request timeout."""
        self._loop = asyncio.get_running_loop()
        self._config["error_cb"] = self._on_error
        producer = confluent_kafka.Producer(self._config)
        try:
            await asyncio.to_thread(producer.list_topics, timeout=self._timeout_s)
        except confluent_kafka.KafkaException as exc:
            reason = str(exc.args[0])
        else:
            self._producer = producer
            self._running = True
            self._poller = threading.Thread(target=self._poll, name="rdkafka-poll", daemon=True)
            self._poller.start()
            return
        # The client goes before the error is raised: the caught exception's traceback holds
        # this frame, and with it a client whose threads keep reconnecting for as long as
        # anyone keeps the error.
        del producer
        raise Unavailable(f"Kafka unreachable: {reason}")

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Delivered]:
        """Enqueue a record; the future resolves when the broker acknowledged it."""
        if self._producer is None or self._loop is None:
            raise Unavailable("producer not started")
        future: asyncio.Future[Delivered] = self._loop.create_future()

        def delivered(err: Any, msg: Any) -> None:
            self._report(future, err, msg)

        wire: list[tuple[str, str | bytes | None]] | None = list(headers) if headers else None
        try:
            self._producer.produce(topic, value, key, on_delivery=delivered, headers=wire)
        except BufferError:
            raise Unavailable("producer queue full") from None
        except confluent_kafka.KafkaException as exc:
            raise Unavailable(f"produce refused: {exc.args[0]}") from None
        return future

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait (off the loop) until every enqueued record has its report."""
        if self._producer is not None:
            wait = self._timeout_s if timeout_s is None else timeout_s
            await asyncio.to_thread(self._producer.flush, wait)
            self._deliver()

    async def stop(self) -> None:
        """Flush what is in flight, then stop polling."""
        await self.flush()
        self._running = False
        if self._poller is not None:
            await asyncio.to_thread(self._poller.join)
        self._deliver()
        self._producer = None

    # --- the poll thread's side ------------------------------------------------------------

    def _poll(self) -> None:
        while self._running:
            producer = self._producer
            if producer is None:
                return
            producer.poll(_POLL_S)

    def _report(self, future: asyncio.Future[Delivered], err: Any, msg: Any) -> None:
        self._reports.append((future, err, msg))
        if not self._wake_scheduled and self._loop is not None:
            self._wake_scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._deliver)
            except RuntimeError:  # the loop closed under a late report
                self._wake_scheduled = False

    def _on_error(self, err: Any) -> None:
        # Connection trouble is retried by librdkafka itself; the name says what, never secrets.
        _log.warning("kafka_client_error", error=str(err.name()), fatal=bool(err.fatal()))

    # --- the loop's side -------------------------------------------------------------------

    def _deliver(self) -> None:
        # Cleared before draining: a report appended after this line schedules another wake-up.
        self._wake_scheduled = False
        reports = self._reports
        while reports:
            future, err, msg = reports.popleft()
            if future.done():
                continue
            if err is not None:
                future.set_exception(Unavailable(f"record not acknowledged: {err.name()}"))
            else:
                future.set_result(Delivered(msg.topic(), msg.partition(), msg.offset()))
