"""From an accepted frame to a Kafka record, and the sender's ``ack`` once Kafka has it.

The relay stamps ``id``, ``from`` and ``ts``, produces to ``chat.messages.v1`` keyed by the
channel, and answers the sender only after the broker acknowledged the record (``acks=all`` on an
idempotent producer): an ``ack`` with the record's offset as ``seq``, or an ``error`` frame. Never
both, never neither.

A retry of a message this relay already took (same sender, ``client_msg_id`` and content) gets the
first attempt's answer without producing again; through another relay the id is the same, so the
controller stores it once. The producer sits behind ``ProducerPort`` so all of this is testable
without Kafka.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from chatcore.errors import Unavailable
from chatcore.kafka import MESSAGES_TOPIC, SIGNALS_TOPIC
from chatcore.logging import get_logger
from chatcore.messages import CORRELATION_HEADER, TYPE_VALUES
from chatcore.proto.chat.v1 import chat_pb2
from services.relay.frames import ChatFrame, TypingFrame, ack_frame, error_frame
from services.relay.ids import content_digest, message_id
from services.relay.metrics import RelayMetrics

_log = get_logger("relay.publisher")
_std_log = logging.getLogger("relay.publisher")
ACK_CACHE = 20_000
_RETRY_TEXT = "message could not be stored, retry"

Reply = Callable[[bytes], None]


class ProducerPort(Protocol):
    """The part of ``AIOKafkaProducer`` the relay uses: enqueue, then a future of the broker's ack.

    ``send`` returns once the record is in the producer's buffer; the returned future resolves
    with the record's metadata (``.offset``) when the broker acknowledged it.
    """

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> asyncio.Future[Any]: ...


def build_record(
    user_id: str, frame: ChatFrame, *, relay_id: str, now_ms: int
) -> chat_pb2.ChatMessage:
    """The ``ChatMessage`` record for an accepted frame, its id stamped."""
    # A reply's thread is part of what it says (and adds nothing for other messages, so their
    # ids stay what they were before threads existed).
    extra = (frame.thread_id,) if frame.thread_id else ()
    content = content_digest(frame.channel_id, frame.to, frame.type, frame.data, *extra)
    return chat_pb2.ChatMessage(
        id=message_id(user_id, frame.client_msg_id, content, now_ms),
        channel_id=frame.channel_id,
        to=frame.to,
        type=TYPE_VALUES[frame.type],
        data=frame.data,
        sender=user_id,
        ts_ms=now_ms,
        client_msg_id=frame.client_msg_id,
        relay_id=relay_id,
        thread_id=frame.thread_id,
    )


class Publisher:
    def __init__(
        self,
        producer: ProducerPort,
        *,
        relay_id: str,
        metrics: RelayMetrics,
        clock: Callable[[], float] = time.time,
        ack_cache: int = ACK_CACHE,
    ) -> None:
        self._producer = producer
        self._relay_id = relay_id
        self._metrics = metrics
        self._clock = clock
        self._ack_cache = ack_cache
        # (sender, record id) -> the first attempt's answer: the ack text, or an exception.
        self._acks: OrderedDict[tuple[str, str], asyncio.Future[bytes]] = OrderedDict()
        self._inflight: set[asyncio.Future[Any]] = set()

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    async def publish(self, user_id: str, frame: ChatFrame, reply: Reply) -> None:
        """Produce the frame's record; ``reply`` later gets its ack or error frame, exactly once.

        Raises ``Unavailable`` when the record could not even be handed to the producer (the
        caller answers with an error frame at once).
        """
        now_ms = int(self._clock() * 1000)
        record = build_record(user_id, frame, relay_id=self._relay_id, now_ms=now_ms)
        cmid = frame.client_msg_id
        key = (user_id, record.id)
        if cmid:
            previous = self._acks.get(key)
            if previous is not None and not _failed(previous):
                # A retry of a message this relay already took: same answer, produced once.
                previous.add_done_callback(lambda first: reply(_answer(first, cmid)))
                return
        answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        if cmid:
            self._remember(key, answer)
        try:
            produced = await self._producer.send(
                MESSAGES_TOPIC,
                record.SerializeToString(),
                key=frame.channel_id.encode(),
                headers=[(CORRELATION_HEADER, record.id.encode())],
            )
        except Exception as exc:
            answer.set_exception(exc)
            answer.exception()  # consumed: the caller's error frame is the answer
            raise Unavailable(_RETRY_TEXT) from None
        started = time.monotonic()
        self._inflight.add(produced)

        def done(result: asyncio.Future[Any]) -> None:
            self._inflight.discard(result)
            self._metrics.produce_latency.observe(time.monotonic() - started)
            if result.cancelled() or result.exception() is not None:
                if not answer.done():
                    answer.set_exception(Unavailable(_RETRY_TEXT))
                    answer.exception()
                self._metrics.errors.labels("unavailable").inc()
                reply(error_frame("unavailable", _RETRY_TEXT, cmid))
                return
            seq = result.result().offset
            text = ack_frame(cmid, record.id, seq, now_ms)
            # Per message, so DEBUG behind the stdlib's cached level check (about 0.1 us when
            # off; a rendered line costs about 100 us): docs/operations.md, "Following a message".
            if _std_log.isEnabledFor(logging.DEBUG):
                _log.debug(
                    "message_accepted",
                    correlation_id=record.id,
                    channel_id=frame.channel_id,
                    seq=seq,
                )
            if not answer.done():
                answer.set_result(text)
            self._metrics.acks.inc()
            reply(text)

        produced.add_done_callback(done)

    async def signal(self, user_id: str, frame: TypingFrame) -> None:
        """Produce a typing signal; best effort, so a failure is swallowed (and counted)."""
        signal = chat_pb2.Signal(
            kind=chat_pb2.SIGNAL_KIND_TYPING,
            channel_id=frame.channel_id,
            to=frame.to,
            sender=user_id,
            ts_ms=int(self._clock() * 1000),
            thread_id=frame.thread_id,
        )
        try:
            await self._producer.send(
                SIGNALS_TOPIC, signal.SerializeToString(), key=frame.channel_id.encode()
            )
        except Exception:
            # A lost typing indicator is not worth an error frame.
            self._metrics.errors.labels("typing_dropped").inc()

    def _remember(self, key: tuple[str, str], answer: asyncio.Future[bytes]) -> None:
        self._acks[key] = answer
        self._acks.move_to_end(key)
        while len(self._acks) > self._ack_cache:
            self._acks.popitem(last=False)

    async def drain(self, timeout_s: float) -> None:
        """Wait until every produced message has its Kafka answer (and its ack or error)."""
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=timeout_s)


def _failed(answer: asyncio.Future[bytes]) -> bool:
    return answer.done() and (answer.cancelled() or answer.exception() is not None)


def _answer(first: asyncio.Future[bytes], cmid: str) -> bytes:
    if first.cancelled() or first.exception() is not None:
        return error_frame("unavailable", _RETRY_TEXT, cmid)
    return first.result()
