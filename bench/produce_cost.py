"""CPU per produced message: aiokafka's producer and librdkafka's (confluent-kafka), one broker.

    make stack-up
    .venv/bin/python -m bench.produce_cost --messages 20000 --rate 1000 --runs 3

Each producer sends ``--messages`` records of the relay's size (≈ 250 B, keyed by one of 100
channels) at ``--rate`` per second, as the relay does (one ``send`` per message, every ack
awaited), into a throwaway topic; "none" is the driver alone, included in the other two. Printed
per run: this process's CPU (user + system, all threads) per message, and the ack latency p50/p99
as the caller sees it. The event loop's own share is what limits a relay; librdkafka spends most
of its share on its own threads.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiokafka.admin import NewTopic

from bench.pipeline import stack_settings
from chatcore.kafka import make_admin, make_producer
from chatcore.rdkafka import RdKafkaProducer
from chatcore.settings import Settings

Send = Callable[[str, bytes, bytes], Awaitable["asyncio.Future[Any]"]]


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _drive(send: Send, topic: str, messages: int, rate: float) -> dict[str, float]:
    value = b"x" * 250
    keys = [f"channel-{i:04d}".encode() for i in range(100)]
    latencies: list[float] = []
    pending: set[asyncio.Future[Any]] = set()
    cpu0, start = _cpu_s(), time.monotonic()
    for n in range(messages):
        due = start + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = time.monotonic()
        future = await send(topic, value, keys[n % len(keys)])
        pending.add(future)

        def done(f: asyncio.Future[Any], sent: float = sent) -> None:
            pending.discard(f)
            latencies.append(time.monotonic() - sent)

        future.add_done_callback(done)
    if pending:
        await asyncio.wait(list(pending))
    cpu = _cpu_s() - cpu0
    latencies.sort()
    return {
        "cpu_us_per_msg": cpu / messages * 1e6,
        "ack_p50_ms": latencies[len(latencies) // 2] * 1000,
        "ack_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
    }


async def _aiokafka(settings: Settings, topic: str, messages: int, rate: float) -> dict[str, float]:
    producer = make_producer(settings, client_id="bench-aiokafka")
    await producer.start()
    try:

        async def send(t: str, v: bytes, k: bytes) -> asyncio.Future[Any]:
            return cast("asyncio.Future[Any]", await producer.send(t, v, key=k))

        await (await send(topic, b"warm", b"warm"))
        return await _drive(send, topic, messages, rate)
    finally:
        await producer.stop()


async def _rdkafka(settings: Settings, topic: str, messages: int, rate: float) -> dict[str, float]:
    producer = RdKafkaProducer(settings, client_id="bench-rdkafka")
    await producer.start()
    try:

        async def send(t: str, v: bytes, k: bytes) -> asyncio.Future[Any]:
            return await producer.send(t, v, key=k)

        await (await send(topic, b"warm", b"warm"))
        return await _drive(send, topic, messages, rate)
    finally:
        await producer.stop()


async def _none(settings: Settings, topic: str, messages: int, rate: float) -> dict[str, float]:
    """The driver alone (each send a resolved future): what the other two's figures include."""

    async def send(t: str, v: bytes, k: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    return await _drive(send, topic, messages, rate)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = stack_settings()
    topic = f"bench.produce.{uuid.uuid4().hex[:8]}"
    admin = make_admin(settings, client_id="bench-produce")
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    try:
        results: dict[str, list[dict[str, float]]] = {"none": [], "aiokafka": [], "rdkafka": []}
        for _ in range(args.runs):
            for name, run in (("none", _none), ("aiokafka", _aiokafka), ("rdkafka", _rdkafka)):
                figures = await run(settings, topic, args.messages, args.rate)
                results[name].append(figures)
                print(name, {k: round(v, 2) for k, v in figures.items()}, flush=True)
        for name, runs in results.items():
            medians = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
            print(f"median {name}: {medians}")
    finally:
        await admin.delete_topics([topic])
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
