"""The controller's Prometheus metrics, registered in the service's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2000, 5000)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


@dataclass(frozen=True, slots=True)
class ControllerMetrics:
    consumer_lag: Gauge
    batch_size: Histogram
    persist_latency: Histogram
    messages: Counter
    deliveries: Counter
    dropped_streams: Counter
    open_streams: Gauge
    dead_letters: Counter
    store_retries: Counter
    commit_failures: Counter
    state_flush_latency: Histogram
    state_written: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> ControllerMetrics:
        return cls(
            consumer_lag=Gauge(
                "controller_consumer_lag",
                "Records not yet processed, per assigned partition (highwater - position)",
                ["topic", "partition"],
                registry=registry,
            ),
            batch_size=Histogram(
                "controller_batch_records",
                "Records per consumed batch",
                buckets=_BATCH_BUCKETS,
                registry=registry,
            ),
            persist_latency=Histogram(
                "controller_persist_seconds",
                "Time to persist one batch (bulk insert and duplicate lookup)",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            messages=Counter(
                "controller_messages_total",
                "Chat messages by outcome: inserted, redelivered (same record again, fanned out "
                "again), duplicate (client retry, not fanned out), rejected (dead-lettered)",
                ["outcome"],
                registry=registry,
            ),
            deliveries=Counter(
                "controller_deliveries_total",
                "Deliveries queued to relay streams (one per stream that receives it)",
                registry=registry,
            ),
            dropped_streams=Counter(
                "controller_dropped_streams_total",
                "Relay streams cut off because their queue was full",
                registry=registry,
            ),
            open_streams=Gauge(
                "controller_open_streams", "Relay Subscribe streams open now", registry=registry
            ),
            dead_letters=Counter(
                "controller_dlq_records_total",
                "Records sent to the dead-letter topic, by source topic",
                ["topic"],
                registry=registry,
            ),
            store_retries=Counter(
                "controller_store_retries_total",
                "Batch attempts that failed on the database or the dead-letter producer",
                registry=registry,
            ),
            commit_failures=Counter(
                "controller_commit_failures_total",
                "Offset commits that failed (typically after a rebalance revoked the partition)",
                registry=registry,
            ),
            state_flush_latency=Histogram(
                "controller_state_flush_seconds",
                "Time to write the read state and counters held behind the fan-out (a checkpoint)",
                buckets=_LATENCY_BUCKETS,
                registry=registry,
            ),
            state_written=Counter(
                "controller_state_documents_written_total",
                "Read documents and channel counters written by checkpoints (each once per "
                "checkpoint however many messages changed it)",
                registry=registry,
            ),
        )
