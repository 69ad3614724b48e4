"""The librdkafka producer adapter without a broker: its configuration and its delivery reports."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass

import pytest

from chatcore.errors import Unavailable
from chatcore.rdkafka import Delivered, RdKafkaProducer, producer_config
from chatcore.settings import Settings


@dataclass(frozen=True)
class _Msg:
    offset_: int

    def topic(self) -> str:
        return "chat.messages.v1"

    def partition(self) -> int:
        return 3

    def offset(self) -> int:
        return self.offset_


@dataclass(frozen=True)
class _Err:
    def name(self) -> str:
        return "_MSG_TIMED_OUT"


def test_config_places_keys_with_murmur2_and_acks_from_every_replica() -> None:
    """Keyed records use the Java client's murmur2; an ack means every in-sync replica has it."""
    config = producer_config(Settings(kafka_linger_ms=7), client_id="relay-x")
    assert config["partitioner"] == "murmur2_random"
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["linger.ms"] == 7
    assert config["message.timeout.ms"] > config["request.timeout.ms"]


async def test_reports_from_the_poll_thread_resolve_every_future_in_few_wake_ups() -> None:
    """A burst of delivery reports from another thread resolves each future, failures as errors."""
    producer = RdKafkaProducer(Settings(), client_id="relay-x")
    loop = asyncio.get_running_loop()
    producer._loop = loop
    wakes = 0
    original = loop.call_soon_threadsafe

    def counting(callback, *args):  # type: ignore[no-untyped-def]
        nonlocal wakes
        wakes += 1
        return original(callback, *args)

    loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]
    try:
        futures = [loop.create_future() for _ in range(2000)]

        def poll_thread() -> None:
            for n, future in enumerate(futures):
                failed = n % 500 == 499
                producer._report(future, _Err() if failed else None, _Msg(n))

        thread = threading.Thread(target=poll_thread)
        thread.start()
        await asyncio.to_thread(thread.join)
        results = await asyncio.gather(*futures, return_exceptions=True)
    finally:
        del loop.call_soon_threadsafe
    failures = [r for r in results if isinstance(r, Unavailable)]
    assert len(failures) == 4
    delivered = [r for r in results if isinstance(r, Delivered)]
    assert [d.offset for d in delivered] == [n for n in range(2000) if n % 500 != 499]
    assert wakes < len(futures)


async def test_send_before_start_is_unavailable() -> None:
    """A producer that was never started refuses a send with the retryable error."""
    with pytest.raises(Unavailable):
        await RdKafkaProducer(Settings(), client_id="relay-x").send("t", b"v", b"k")
