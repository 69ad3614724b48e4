"""Kafka topics and client factories shared by every service.

The partition count of ``chat.messages.v1`` is fixed at creation: ``seq`` is the record's offset in
its channel's partition, so adding partitions later would move channels and break per-channel order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.partitioner import DefaultPartitioner, murmur2

from chatcore.errors import ChatError, Unavailable
from chatcore.settings import Settings

MESSAGES_TOPIC = "chat.messages.v1"
SIGNALS_TOPIC = "chat.signals.v1"
EVENTS_TOPIC = "chat.events.v1"
MESSAGES_DLQ_TOPIC = "chat.messages.v1.dlq"
PRESENCE_TOPIC = "chat.presence.v1"
# Controllers announcing their gRPC address (services/controller/announce.py); relays read it.
CONTROLLERS_TOPIC = "chat.controllers.v1"

# Kafka's CreateTopics error code for a topic that is already there.
_TOPIC_ALREADY_EXISTS = 36


class TopicMismatch(ChatError):
    """An existing topic has another partition count than configured: an operator must decide."""

    code = "topic_mismatch"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """A topic the system needs, with the partition count it is created with."""

    name: str
    partitions: int
    replication_factor: int
    retention_ms: int | None = None
    min_insync_replicas: int = 1

    def configs(self) -> dict[str, str]:
        """The topic-level settings it is created with."""
        found = {"min.insync.replicas": str(self.min_insync_replicas)}
        if self.retention_ms:
            found["retention.ms"] = str(self.retention_ms)
        return found


def topic_specs(settings: Settings) -> tuple[TopicSpec, ...]:
    """Every topic the system uses; created at stack start-up, never resized."""
    week = 7 * 24 * 3600 * 1000
    rf = settings.kafka_replication_factor
    isr = settings.kafka_min_insync_replicas
    return (
        TopicSpec(MESSAGES_TOPIC, settings.kafka_messages_partitions, rf, week, isr),
        # Typing signals are worthless after seconds; keep them briefly.
        TopicSpec(SIGNALS_TOPIC, 3, rf, 3600 * 1000, isr),
        TopicSpec(EVENTS_TOPIC, 3, rf, week, isr),
        TopicSpec(MESSAGES_DLQ_TOPIC, 1, rf, 4 * week, isr),
        # Who is on which relay (chatcore.presence): soft state, rebuilt from snapshots.
        TopicSpec(PRESENCE_TOPIC, 3, rf, 3600 * 1000, isr),
        # Soft state too: every live controller re-announces every few seconds.
        TopicSpec(CONTROLLERS_TOPIC, 1, rf, 3600 * 1000, isr),
    )


class CachedPartitioner:
    """Kafka's default partitioner (murmur2 of the key, as the Java client and aiokafka do), with
    each key's answer remembered.

    Every producer of ``chat.messages.v1`` must place a channel on the same partition, so this is
    the default partitioner's arithmetic exactly, only not recomputed: aiokafka's murmur2 is pure
    Python (≈ 13 µs per 32-byte key, measured), paid on every message, and a relay sends to few
    channels. The partition count is fixed at creation, so a cached answer stays right; the
    cache is keyed by the count anyway.
    """

    def __init__(self, max_keys: int = 100_000) -> None:
        self._max_keys = max_keys
        self._cache: dict[tuple[bytes, int], int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return int(DefaultPartitioner()(key, all_partitions, available))
        slot = (key, len(all_partitions))
        index = self._cache.get(slot)
        if index is None:
            if len(self._cache) >= self._max_keys:
                self._cache.clear()
            index = self._cache[slot] = (murmur2(key) & 0x7FFFFFFF) % len(all_partitions)
        return all_partitions[index]


def make_producer(settings: Settings, *, client_id: str) -> AIOKafkaProducer:
    """An idempotent ``acks=all`` producer that batches with a short linger; call ``start()``."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.kafka_linger_ms,
        request_timeout_ms=settings.kafka_request_timeout_ms,
        max_batch_size=256 * 1024,
        partitioner=CachedPartitioner(),
    )


def make_consumer(
    settings: Settings,
    *topics: str,
    group_id: str,
    client_id: str,
    offset_reset: str = "earliest",
    max_poll_records: int | None = None,
) -> AIOKafkaConsumer:
    """A consumer-group member that never auto-commits: commit after the database write.

    Without topics the caller subscribes before ``start()`` (e.g. with a rebalance listener).
    """
    return AIOKafkaConsumer(
        *topics,
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset=offset_reset,
        isolation_level="read_committed",
        request_timeout_ms=settings.kafka_request_timeout_ms,
        max_poll_records=max_poll_records,
        # A member killed with -9 is noticed within the session timeout, and its partitions move.
        session_timeout_ms=settings.kafka_session_timeout_ms,
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
    )


def make_reader(settings: Settings, *, client_id: str) -> AIOKafkaConsumer:
    """A consumer outside any group that reads what is new (every instance reads everything)."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="latest",
        request_timeout_ms=settings.kafka_request_timeout_ms,
        # The broker answers a fetch as soon as a record is there; this is how long an empty one
        # waits. A reader's catch-up at start (a seek back one ttl) takes effect only once the
        # fetch already in flight returns, so at 500 ms every relay and management start took
        # about 1.6 s longer; idle, 100 ms costs the broker ~0.05 of a core more (decisions.md).
        fetch_max_wait_ms=100,
    )


def make_admin(settings: Settings, *, client_id: str) -> AIOKafkaAdminClient:
    """An admin client; call ``start()`` and ``close()``."""
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=client_id,
        request_timeout_ms=settings.kafka_request_timeout_ms,
    )


def _partition_counts(described: Iterable[Any]) -> dict[str, int]:
    return {topic["topic"]: len(topic["partitions"]) for topic in described if topic["partitions"]}


async def ensure_topics(admin: AIOKafkaAdminClient, specs: Sequence[TopicSpec]) -> list[str]:
    """Create missing topics; return the names created. Existing topics must match their spec."""
    try:
        existing = _partition_counts(await admin.describe_topics([s.name for s in specs]))
    except Exception as exc:
        raise Unavailable(f"kafka metadata request failed: {exc!r}") from exc
    for spec in specs:
        have = existing.get(spec.name)
        if have is not None and have != spec.partitions:
            raise TopicMismatch(
                f"topic {spec.name} has {have} partitions, configured {spec.partitions}; "
                "partition counts are fixed at creation (see docs/operations.md)"
            )
    missing = [s for s in specs if s.name not in existing]
    if not missing:
        return []
    new_topics = [
        NewTopic(
            name=s.name,
            num_partitions=s.partitions,
            replication_factor=s.replication_factor,
            topic_configs=s.configs(),
        )
        for s in missing
    ]
    response = await admin.create_topics(new_topics)
    for name, error_code, *_rest in response.topic_errors:
        if error_code not in (0, _TOPIC_ALREADY_EXISTS):
            raise Unavailable(f"creating topic {name} failed with Kafka error code {error_code}")
    return [s.name for s in missing]
