"""The relay's Prometheus metrics, registered in the relay's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True, slots=True)
class RelayMetrics:
    connections: Gauge
    frames: Counter
    acks: Counter
    errors: Counter
    deliveries: Counter
    writes: Counter
    slow_closes: Counter
    rejected: Counter
    produce_latency: Histogram
    resyncs: Counter
    hello_wait: Histogram
    lookup_batch: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RelayMetrics:
        return cls(
            connections=Gauge("relay_connections", "Open WebSocket connections", registry=registry),
            frames=Counter(
                "relay_frames_total", "Client frames by type", ["type"], registry=registry
            ),
            acks=Counter(
                "relay_acks_total", "Messages acked after Kafka had them", registry=registry
            ),
            errors=Counter(
                "relay_errors_total", "Error frames sent, by code", ["code"], registry=registry
            ),
            deliveries=Counter(
                "relay_deliveries_total", "Frames written to sockets by fan-out", registry=registry
            ),
            writes=Counter(
                "relay_socket_writes_total",
                "Writes to sockets (several frames of a batch or write window share one)",
                registry=registry,
            ),
            slow_closes=Counter(
                "relay_slow_consumer_closes_total",
                "Sockets closed with 1013 because their send buffer was full",
                registry=registry,
            ),
            rejected=Counter(
                "relay_handshakes_rejected_total",
                "Handshakes refused, by reason",
                ["reason"],
                registry=registry,
            ),
            produce_latency=Histogram(
                "relay_produce_seconds",
                "Time from produce to Kafka's acknowledgement",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                registry=registry,
            ),
            resyncs=Counter(
                "relay_resyncs_total",
                "resync frames sent after a controller stream that may have lost deliveries",
                registry=registry,
            ),
            hello_wait=Histogram(
                "relay_hello_wait_seconds",
                "From the upgrade to hello: memberships, then every controller's confirmation",
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
                registry=registry,
            ),
            lookup_batch=Histogram(
                "relay_membership_lookup_batch_users",
                "Handshakes answered by one GetMembershipsBatch call (above 1: a storm batched)",
                buckets=(1, 2, 4, 8, 16, 32, 64, 128),
                registry=registry,
            ),
        )
