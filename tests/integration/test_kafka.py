"""Kafka round trips against the local broker started by the stack."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from chatcore.errors import Unavailable
from chatcore.kafka import (
    EVENTS_TOPIC,
    MESSAGES_DLQ_TOPIC,
    MESSAGES_TOPIC,
    SIGNALS_TOPIC,
    make_admin,
    make_consumer,
    make_producer,
    topic_specs,
)
from chatcore.rdkafka import RdKafkaProducer
from chatcore.settings import Settings


async def test_topics_exist_with_fixed_partition_counts(settings: Settings) -> None:
    """Every topic the system needs exists with the partition count of its spec."""
    admin = make_admin(settings, client_id="test-admin")
    await admin.start()
    try:
        described = await admin.describe_topics([s.name for s in topic_specs(settings)])
    finally:
        await admin.close()
    counts = {t["topic"]: len(t["partitions"]) for t in described}
    assert counts == {s.name: s.partitions for s in topic_specs(settings)}
    assert counts[MESSAGES_TOPIC] == settings.kafka_messages_partitions > 1
    assert {SIGNALS_TOPIC, EVENTS_TOPIC, MESSAGES_DLQ_TOPIC} <= counts.keys()


async def test_same_key_lands_in_one_partition_in_order(settings: Settings) -> None:
    """Records with one key land in one partition, acked with increasing offsets, read in order."""
    producer = make_producer(settings, client_id="test-producer")
    await producer.start()
    key = f"channel-{uuid.uuid4().hex}".encode()
    try:
        futures = [
            await producer.send(MESSAGES_TOPIC, value=f"m{i}".encode(), key=key) for i in range(50)
        ]
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    partitions = {m.partition for m in metas}
    assert len(partitions) == 1
    offsets = [m.offset for m in metas]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == 50

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(MESSAGES_TOPIC, partitions.pop())
        consumer.assign([tp])
        consumer.seek(tp, offsets[0])
        values: list[bytes] = []
        while len(values) < 50:
            batch = await consumer.getmany(tp, timeout_ms=5000, max_records=100)
            assert batch, "no records read back within 5s"
            values += [r.value for r in batch[tp] if r.key == key]
    finally:
        await consumer.stop()
    assert values == [f"m{i}".encode() for i in range(50)]


async def test_idempotent_producer_uses_acks_all(settings: Settings) -> None:
    """The producer factory is idempotent with acks=all, so an ack means the broker has it."""
    producer = make_producer(settings, client_id="test-producer")
    await producer.start()
    try:
        meta = await producer.send_and_wait(SIGNALS_TOPIC, b"x", key=b"k")
        # aiokafka has no public accessor: the broker-assigned producer id proves idempotence.
        txn = producer._txn_manager
        assert txn is not None
        assert txn.producer_id >= 0
        assert producer._sender._acks == -1  # aiokafka's code for acks=all
    finally:
        await producer.stop()
    assert meta.offset >= 0


async def test_consumer_group_commits_only_when_told(settings: Settings) -> None:
    """A factory consumer never auto-commits: without commit() the group has no offset."""
    group = f"test-group-{uuid.uuid4().hex}"
    topic_key = uuid.uuid4().hex.encode()
    producer = make_producer(settings, client_id="test-producer")
    await producer.start()
    try:
        meta = await producer.send_and_wait(EVENTS_TOPIC, b"event", key=topic_key)
    finally:
        await producer.stop()
    consumer = make_consumer(settings, EVENTS_TOPIC, group_id=group, client_id="test-consumer")
    await consumer.start()
    try:
        tp = TopicPartition(EVENTS_TOPIC, meta.partition)
        deadline = asyncio.get_running_loop().time() + 20
        seen = False
        while not seen and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            seen = any(r.key == topic_key for r in batch.get(tp, []))
        assert seen
        assert await consumer.committed(tp) is None
        await consumer.commit({tp: meta.offset + 1})
        assert await consumer.committed(tp) == meta.offset + 1
    finally:
        await consumer.stop()


async def test_librdkafka_producer_places_every_channel_where_aiokafka_does(
    settings: Settings,
) -> None:
    """The relay's librdkafka producer puts each channel on aiokafka's (murmur2) partition."""
    rd = RdKafkaProducer(settings, client_id="test-rdkafka")
    aio = make_producer(settings, client_id="test-aiokafka")
    await rd.start()
    await aio.start()
    keys = [f"channel-{uuid.uuid4().hex}".encode() for _ in range(60)]
    try:
        ours = await asyncio.gather(*[await rd.send(MESSAGES_TOPIC, b"p", key=k) for k in keys])
        theirs = await asyncio.gather(*[await aio.send(MESSAGES_TOPIC, b"p", key=k) for k in keys])
    finally:
        await rd.stop()
        await aio.stop()
    assert [d.partition for d in ours] == [m.partition for m in theirs]
    assert len({d.partition for d in ours}) == settings.kafka_messages_partitions


async def test_librdkafka_producer_acks_in_order_and_reports_a_dead_broker(
    settings: Settings,
) -> None:
    """One channel's records are acked with increasing offsets; no broker means Unavailable."""
    rd = RdKafkaProducer(settings, client_id="test-rdkafka")
    await rd.start()
    key = f"channel-{uuid.uuid4().hex}".encode()
    try:
        delivered = await asyncio.gather(
            *[await rd.send(MESSAGES_TOPIC, f"m{i}".encode(), key=key) for i in range(50)]
        )
    finally:
        await rd.stop()
    offsets = [d.offset for d in delivered]
    assert offsets == sorted(offsets)
    assert len(set(offsets)) == 50
    nowhere = replace(settings, kafka_bootstrap="127.0.0.1:1", kafka_request_timeout_ms=1000)
    before = len(_rdkafka_threads())
    with pytest.raises(Unavailable) as refused:
        await RdKafkaProducer(nowhere, client_id="test-rdkafka-nowhere").start()
    # Even while the error is held, the refused client's threads are gone.
    deadline = time.monotonic() + 10
    while len(_rdkafka_threads()) > before and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert refused.value is not None
    assert len(_rdkafka_threads()) <= before


def _rdkafka_threads() -> list[str]:
    """Names of this process's librdkafka threads (``rdk:main``, ``rdk:broker...``)."""
    names = []
    for task in Path("/proc/self/task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
        except OSError:
            continue
        if name.startswith("rdk:"):
            names.append(name)
    return names
