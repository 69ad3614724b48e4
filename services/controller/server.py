"""Wiring of the controller: ``start(settings)`` builds every dependency, consumes and serves.

Two listeners: the gRPC ``Controller`` service (plus the standard health service) for relays, and
a small HTTP app for operators (``/healthz``, ``/readyz``, ``/metrics``).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

from grpc import aio
from prometheus_client import CollectorRegistry

from chatcore.buckets import BucketAllocator
from chatcore.channel_heads import MongoChannelHeads
from chatcore.http import Health, make_app
from chatcore.internal_auth import InternalTokenInterceptor
from chatcore.kafka import make_producer
from chatcore.lifecycle import RunningHttpApp, serve_app
from chatcore.logging import get_logger
from chatcore.mongo import INDEXES, database, ensure_indexes, make_mongo_client, ping
from chatcore.proto.chat.v1 import chat_pb2_grpc
from chatcore.read_states import MongoReadStates
from chatcore.settings import Settings
from chatcore.tasks import cancel_and_wait
from services.controller.announce import Announcer, advertised_address
from services.controller.batch import BatchProcessor
from services.controller.consumer import (
    CONSUMED_TOPICS,
    ConsumerLoop,
    RebalanceListener,
    make_controller_consumer,
)
from services.controller.directory import MongoDirectory
from services.controller.dlq import KafkaDeadLetterSink
from services.controller.health import GrpcHealth
from services.controller.hooks import ControllerHooks
from services.controller.lifecycle import LifecyclePass
from services.controller.lifecycle_store import MongoMembers, MongoMessageStates
from services.controller.metrics import ControllerMetrics
from services.controller.migrate import bucket_older_messages
from services.controller.registry import SubscriptionRegistry
from services.controller.servicer import ControllerServicer
from services.controller.store import MongoMessageStore
from services.controller.streams import CloseReason, StreamHub
from services.controller.write_behind import StateBuffer

_log = get_logger("controller.server")

# Relays hold one long-lived stream each: detect dead peers, and accept the relays' own pings,
# which come every 1.5 s (services/relay/controller_link.py KEEPALIVE_MS) so a relay sees a
# vanished controller before its partitions move; a peer pinging faster than this is refused.
_GRPC_OPTIONS = (
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1_000),
)


class RunningController:
    """A started controller; ``stop()`` drains it."""

    def __init__(
        self,
        *,
        grpc_server: aio.Server,
        grpc_port: int,
        http: RunningHttpApp,
        http_health: Health,
        grpc_health: GrpcHealth,
        loop: ConsumerLoop,
        loop_task: asyncio.Task[None],
        hub: StreamHub,
        cleanups: contextlib.AsyncExitStack,
        drain_timeout_s: float,
    ) -> None:
        self._grpc_server = grpc_server
        self._grpc_port = grpc_port
        self._http = http
        self._http_health = http_health
        self._grpc_health = grpc_health
        self._loop = loop
        self._loop_task = loop_task
        self._hub = hub
        self._cleanups = cleanups
        self._drain_timeout_s = drain_timeout_s
        self._stopped = False

    @property
    def grpc_port(self) -> int:
        return self._grpc_port

    @property
    def port(self) -> int:
        """The HTTP (health and metrics) port."""
        return self._http.port

    async def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Until the consumer holds its assignment with every start position resolved."""
        await asyncio.wait_for(self._loop.ready.wait(), timeout_s)

    async def stop(self) -> None:
        """Stop consuming after the batch in hand is committed, end the streams, close all."""
        if self._stopped:
            return
        self._stopped = True
        self._http_health.draining = True
        await self._grpc_health.stop()
        self._loop.request_stop()
        try:
            await asyncio.wait_for(asyncio.shield(self._loop_task), self._drain_timeout_s)
        except TimeoutError:
            # Typically the database is down: the uncommitted batch is consumed again later.
            _log.warning("consumer_stop_timeout", timeout_s=self._drain_timeout_s)
            await cancel_and_wait(self._loop_task)
        except Exception:
            _log.exception("consumer_loop_failed")
        # Queued deliveries still go out within the grace period; then the calls end UNAVAILABLE.
        self._hub.close_all(CloseReason.SHUTDOWN, "controller shutting down", drain=True)
        await self._grpc_server.stop(self._drain_timeout_s)
        # The rest in reverse start order: HTTP, consumer (leaves the group), producer, database.
        await self._cleanups.aclose()


async def start(
    settings: Settings,
    *,
    grpc_port: int | None = None,
    http_port: int | None = None,
    hooks: ControllerHooks | None = None,
) -> RunningController:
    """Start the controller; ports override settings (0 picks a free one); ``hooks`` are for tests.

    The gRPC server listens before consumption begins, so relays reconnecting after a restart
    are subscribed by the time the uncommitted records are fanned out again.
    """
    interceptor = InternalTokenInterceptor(settings.internal_token)
    async with contextlib.AsyncExitStack() as stack:
        client = make_mongo_client(settings)
        stack.push_async_callback(client.close)
        db = database(client, settings)
        await ensure_indexes(db, INDEXES)
        # Before consuming: a page must find every message, old ones included (migrate.py). Its
        # own client: the search for unbucketed messages may read a whole large collection.
        migration_client = make_mongo_client(settings, long_running=True)
        try:
            await bucket_older_messages(database(migration_client, settings))
        finally:
            await migration_client.close()

        registry = CollectorRegistry()
        metrics = ControllerMetrics.create(registry)
        hub = StreamHub(
            SubscriptionRegistry(max_batch_bytes=settings.controller_delivery_batch_bytes),
            capacity=settings.controller_stream_queue,
            max_bytes=settings.controller_stream_queue_bytes,
            metrics=metrics,
        )
        instance = uuid.uuid4().hex[:8]
        producer = make_producer(settings, client_id=f"chat-controller-dlq-{instance}")
        await producer.start()
        stack.push_async_callback(producer.stop)
        held = StateBuffer(MongoReadStates(db), MongoChannelHeads(db))
        processor = BatchProcessor(
            store=MongoMessageStore(db, parallel=settings.controller_insert_parallel),
            buckets=BucketAllocator(MongoChannelHeads(db)),
            heads=held,
            lifecycle=LifecyclePass(MongoMessageStates(db), held, MongoMembers(db)),
            dead_letters=KafkaDeadLetterSink(producer),
            metrics=metrics,
        )

        async def start_gate() -> None:
            if not await hub.wait_for_first_stream(settings.controller_start_grace_s):
                _log.info("no_relay_subscribed_yet", waited_s=settings.controller_start_grace_s)

        consumer = make_controller_consumer(settings, client_id=f"chat-controller-{instance}")
        loop = ConsumerLoop(
            consumer,
            processor,
            hub,
            metrics,
            batch_max=settings.controller_batch_max,
            poll_timeout_ms=settings.controller_poll_timeout_ms,
            retry_max_s=settings.controller_retry_max_s,
            held=held,
            flush_interval_s=settings.controller_state_flush_ms / 1000,
            start_gate=start_gate,
            after_commit=hooks.after_commit if hooks else None,
        )

        async def database_ready() -> bool:
            return await ping(client)

        async def consumer_ready() -> bool:
            return loop.running and loop.ready.is_set()

        async def serving() -> bool:
            return await consumer_ready() and await database_ready()

        grpc_health = GrpcHealth(serving)
        server = aio.server(options=_GRPC_OPTIONS, interceptors=[interceptor])
        chat_pb2_grpc.add_ControllerServicer_to_server(
            ControllerServicer(
                hub,
                MongoDirectory(
                    db, token_lifetime_s=settings.access_token_ttl_s + settings.jwt_leeway_s
                ),
                hooks,
            ),
            server,
        )
        grpc_health.add_to_server(server)
        port = settings.controller_grpc_port if grpc_port is None else grpc_port
        bound = server.add_insecure_port(f"{settings.http_host}:{port}")
        await server.start()
        stack.push_async_callback(server.stop, None)
        await grpc_health.start()
        stack.push_async_callback(grpc_health.stop)
        # Relays learn of this controller from its announcements, before it consumes (they
        # subscribe within the start grace); "leaving" goes out after the goodbyes, on stop.
        announcer = Announcer(
            producer,
            advertised_address(settings.controller_advertise_addr, settings.http_host, bound),
            group=settings.controller_group_id,
            interval_s=settings.controller_announce_interval_s,
            timeout_s=settings.kafka_request_timeout_ms / 1000,
        )
        announcing = asyncio.create_task(announcer.run(), name="controller-announce")

        async def stop_announcing() -> None:
            await cancel_and_wait(announcing)
            await announcer.announce(leaving=True)

        stack.push_async_callback(stop_announcing)

        consumer.subscribe(list(CONSUMED_TOPICS), listener=RebalanceListener(loop))
        stack.push_async_callback(consumer.stop)
        # Returns once the group has handed this member its first assignment.
        await consumer.start()
        loop_task = asyncio.create_task(loop.run(), name="controller-consumer")

        stack.push_async_callback(cancel_and_wait, loop_task)

        http_health = Health({"database": database_ready, "consumer": consumer_ready})
        app = make_app(
            registry=registry, health=http_health, max_body_bytes=settings.max_body_bytes
        )
        http = await serve_app(
            app,
            host=settings.http_host,
            port=settings.controller_http_port if http_port is None else http_port,
            drain_timeout_s=settings.drain_timeout_s,
        )
        stack.push_async_callback(http.stop)

        try:
            await asyncio.wait_for(loop.ready.wait(), settings.kafka_request_timeout_ms / 1000)
        except TimeoutError:
            _log.warning("consumer_not_ready_yet")
        await grpc_health.refresh()
        _log.info("controller_started", grpc_port=bound, http_port=http.port)
        return RunningController(
            grpc_server=server,
            grpc_port=bound,
            http=http,
            http_health=http_health,
            grpc_health=grpc_health,
            loop=loop,
            loop_task=loop_task,
            hub=hub,
            cleanups=stack.pop_all(),
            drain_timeout_s=settings.drain_timeout_s,
        )
    raise AssertionError("unreachable")  # the with block always returns or raises
