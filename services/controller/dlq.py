"""The dead-letter topic: records the controller cannot process, kept for an operator.

Each keeps its key, value and headers, plus ``error`` (why) and ``source`` (``topic/partition/
offset`` it came from). The send is awaited until Kafka acknowledges it: only then may the
original record's offset be committed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from chatcore.errors import Unavailable
from chatcore.kafka import MESSAGES_DLQ_TOPIC
from services.controller.records import DeadLetter

ERROR_HEADER = "error"
SOURCE_HEADER = "source"
_MAX_ERROR_CHARS = 300


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """The original headers plus the reason and the origin."""
    record = letter.record
    return [
        *record.headers,
        (ERROR_HEADER, letter.error[:_MAX_ERROR_CHARS].encode()),
        (SOURCE_HEADER, f"{record.topic}/{record.partition}/{record.offset}".encode()),
    ]


class KafkaDeadLetterSink:
    def __init__(self, producer: AIOKafkaProducer, *, topic: str = MESSAGES_DLQ_TOPIC) -> None:
        self._producer = producer
        self._topic = topic

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        try:
            acks = [
                await self._producer.send(
                    self._topic,
                    value=letter.record.value,
                    key=letter.record.key,
                    headers=dead_letter_headers(letter),
                )
                for letter in letters
            ]
            # Collect every outcome so no failed ack is left unobserved; any failure fails all.
            results = await asyncio.gather(*acks, return_exceptions=True)
        except KafkaError as exc:
            raise Unavailable(f"dead-letter produce failed: {type(exc).__name__}") from exc
        for result in results:
            if isinstance(result, BaseException):
                raise Unavailable(f"dead-letter produce failed: {type(result).__name__}")
