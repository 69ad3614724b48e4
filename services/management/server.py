"""Wiring of the management service: ``start(settings)`` builds every dependency and serves HTTP.

Everything is opened under one ``contextlib.AsyncExitStack``: if any step fails, what was already
opened (database client, Kafka producer, HTTP session, background tasks) is closed again, newest
first, before the error propagates. A successful start hands the stack to ``RunningManagement``,
whose ``stop()`` closes the same things in the same order after the HTTP server has drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from chatcore.accounts import MongoAccountStatus
from chatcore.channel_heads import MongoChannelHeads
from chatcore.errors import ConfigError
from chatcore.http import Health, ReadinessCheck, make_app
from chatcore.kafka import make_producer, make_reader
from chatcore.lease_store import LEASE_INDEXES, database_leases
from chatcore.leases import SWEEP_AFTER_S, Leases, instance_owner
from chatcore.lifecycle import serve_app
from chatcore.logging import get_logger
from chatcore.migrations import run_once
from chatcore.mongo import INDEXES, Document, database, ensure_indexes, make_mongo_client, ping
from chatcore.presence_feed import PresenceFeed, now_ms
from chatcore.read_states import UnreadReader
from chatcore.s3 import make_s3_client
from chatcore.settings import Settings
from chatcore.tasks import cancel_and_wait
from chatcore.tokens import HttpJwksSource, JwtVerifier
from services.management.api import ManagementApi
from services.management.attachment_store import ATTACHMENT_INDEXES, MongoAttachmentStore
from services.management.attachments import (
    AttachmentLimits,
    AttachmentMetrics,
    AttachmentService,
)
from services.management.attachments_api import AttachmentApi
from services.management.clamd import ClamdAddress, ClamdClient
from services.management.events import EventMetrics, EventSender, OutboxPublisher
from services.management.history import HistoryService
from services.management.history_store import MongoMessageStore
from services.management.limits import ScanGate, UserBudget
from services.management.membership_index import (
    BACKFILL,
    MEMBERSHIP_INDEXES,
    MongoMembershipIndex,
)
from services.management.messages import JoinMarkers, MessageService
from services.management.objects import S3ObjectStore
from services.management.openapi import load_openapi
from services.management.presence import MemberPresence, MongoLastSeen
from services.management.store import MANAGEMENT_INDEXES, MongoTeamStore
from services.management.teams import TeamMetrics, TeamService
from services.management.users import HttpUserDirectory

_log = get_logger("management.server")

# Tests wrap the producer to make Kafka unreachable for this service alone.
SenderWrapper = Callable[[EventSender], EventSender]
# How often the instance writes down when users went offline (presence.py).
_LAST_SEEN_FLUSH_S = 5.0


class RunningManagement:
    """A started management service; ``stop()`` drains HTTP, then closes everything it opened."""

    def __init__(self, *, port: int, outbox: OutboxPublisher, stack: contextlib.AsyncExitStack):
        self._port = port
        self.outbox = outbox
        self._stack = stack

    @property
    def port(self) -> int:
        return self._port

    async def stop(self) -> None:
        await self._stack.aclose()


def _kafka_ready(producer: AIOKafkaProducer) -> ReadinessCheck:
    async def check() -> bool:
        # A metadata round trip: True only when a broker answers.
        return bool(await producer.client.force_metadata_update())

    return check


async def _sweep_forever(service: AttachmentService, leases: Leases, interval_s: float) -> None:
    """Delete never-completed uploads and old lease records periodically (no TTL indexes)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await service.sweep()
            await leases.sweep(older_than_s=SWEEP_AFTER_S)
        except Exception:
            _log.exception("attachment_sweep_failed")


def _run_in_background(
    stack: contextlib.AsyncExitStack, work: Coroutine[Any, Any, None], name: str
) -> None:
    """Start ``work`` as a task that the stack cancels (and awaits) when it closes."""
    task = asyncio.create_task(work, name=name)
    stack.push_async_callback(cancel_and_wait, task)


def _attachment_service(
    settings: Settings,
    db: AsyncDatabase[Document],
    teams: MongoTeamStore,
    messages: MongoMessageStore,
    registry: CollectorRegistry,
    leases: Leases,
    scans: ScanGate,
) -> AttachmentService:
    try:
        clamd = ClamdAddress.parse(settings.clamd_address)
    except ValueError as exc:
        raise ConfigError(f"CHAT_CLAMD_ADDRESS: {exc}") from None
    client = make_s3_client(settings)
    # Presigned URLs are signed for the host clients use, which may differ from ours.
    signer = (
        make_s3_client(dataclasses.replace(settings, s3_endpoint=settings.s3_public_endpoint))
        if settings.s3_public_endpoint
        else client
    )
    return AttachmentService(
        teams=teams,
        messages=messages,
        records=MongoAttachmentStore(db),
        objects=S3ObjectStore(client, settings.s3_bucket, signer=signer),
        scanner=ClamdClient(clamd, timeout_s=settings.clamd_timeout_s),
        limits=AttachmentLimits(
            max_bytes=settings.attachment_max_bytes,
            upload_ttl_s=settings.attachment_upload_ttl_s,
            download_ttl_s=settings.attachment_download_ttl_s,
            pending_max_age_s=settings.attachment_pending_max_age_s,
            bytes_per_user_day=settings.attachment_bytes_per_user_day,
        ),
        metrics=AttachmentMetrics.create(registry),
        leases=leases,
        scan_slot=scans.hold,
    )


async def start(
    settings: Settings, *, port: int | None = None, wrap_sender: SenderWrapper | None = None
) -> RunningManagement:
    """Start the management service; ``port`` overrides settings (0 picks a free port)."""
    _document, openapi = load_openapi()
    async with contextlib.AsyncExitStack() as stack:
        client = make_mongo_client(settings)
        stack.push_async_callback(client.close)
        db = database(client, settings)
        # The messages indexes too: history pages need (channel_id, seq) even before the
        # controller has started once.
        await ensure_indexes(
            db,
            (
                *INDEXES,
                *MANAGEMENT_INDEXES,
                *ATTACHMENT_INDEXES,
                *MEMBERSHIP_INDEXES,
                *LEASE_INDEXES,
            ),
        )
        index = MongoMembershipIndex(db)
        # Teams stored before the index existed; later changes reach it through the outbox.
        await run_once(db, BACKFILL, index.backfill)

        producer = make_producer(settings, client_id="management")
        await producer.start()
        stack.push_async_callback(producer.stop)  # flushes what is still in flight

        session = await stack.enter_async_context(aiohttp.ClientSession())

        registry = CollectorRegistry()
        # One lease per team shared by the store's writes and the outbox publisher, in the
        # database: a team's changes and its event publishing never interleave on any instance.
        owner = instance_owner()

        def leases(namespace: str) -> Leases:
            return database_leases(
                db,
                namespace,
                owner=owner,
                ttl_s=settings.lease_ttl_s,
                wait_s=settings.lease_wait_s,
            )

        team_leases = leases("team")
        teams = MongoTeamStore(db, team_leases)
        messages = MongoMessageStore(db, MongoChannelHeads(db))
        sender: EventSender = producer if wrap_sender is None else wrap_sender(producer)
        outbox = OutboxPublisher(
            teams,
            sender,
            team_leases,
            EventMetrics.create(registry),
            index,
            send_timeout_s=settings.outbox_send_timeout_s,
            joiner=JoinMarkers(
                MongoChannelHeads(db), producer, send_timeout_s=settings.outbox_send_timeout_s
            ),
        )
        attachment_leases = leases("attachment")
        scans = ScanGate(
            limit=settings.management_scan_concurrency,
            wait_s=settings.management_scan_wait_s,
            per_user=settings.management_scans_per_user,
        )
        attachments = _attachment_service(
            settings, db, teams, messages, registry, attachment_leases, scans
        )
        lifecycle = MessageService(
            teams=teams,
            messages=messages,
            attachments=attachments,
            log=producer,
            edit_window_s=settings.edit_window_s,
            send_timeout_s=settings.outbox_send_timeout_s,
            scan_slot=scans.hold,
        )
        feed = PresenceFeed(
            make_reader(settings, client_id=f"management-presence-{uuid.uuid4().hex[:8]}"),
            ttl_s=settings.presence_ttl_s,
            on_transitions=lambda transitions: presence.on_transitions(transitions),
        )
        presence = MemberPresence(lambda: feed.book, MongoLastSeen(db), clock=now_ms)
        await feed.start()
        stack.push_async_callback(feed.stop)
        stack.push_async_callback(presence.close)
        service = TeamService(
            teams=teams,
            users=HttpUserDirectory(session, settings.auth_url, timeout_s=settings.auth_timeout_s),
            events=outbox,
            metrics=TeamMetrics.create(registry),
            memberships=index,
            teams_per_user_max=settings.management_teams_per_user_max,
        )
        history = HistoryService(teams=teams, messages=messages)
        verifier = JwtVerifier.from_settings(
            settings, HttpJwksSource(session, settings.jwks_url), accounts=MongoAccountStatus(db)
        )
        writes = UserBudget(
            burst=settings.management_write_burst, per_s=settings.management_write_per_s
        )
        reads = UserBudget(
            burst=settings.management_read_burst,
            per_s=settings.management_read_per_s,
            refusal="too many read marks, slow down",
        )

        async def database_ready() -> bool:
            return await ping(client)

        health = Health({"database": database_ready, "kafka": _kafka_ready(producer)})
        app = make_app(registry=registry, health=health, max_body_bytes=settings.max_body_bytes)
        app.add_routes(
            ManagementApi(
                service,
                history,
                verifier,
                settings,
                openapi,
                writes=writes,
                reads=reads,
                scans=scans,
                messages=lifecycle,
                unread=UnreadReader(db),
                presence=presence,
            ).routes()
        )
        app.add_routes(AttachmentApi(attachments, verifier, settings, writes=writes).routes())

        _run_in_background(
            stack,
            _sweep_forever(attachments, attachment_leases, settings.attachment_sweep_interval_s),
            "attachment-sweep",
        )
        _run_in_background(stack, outbox.run(settings.outbox_retry_interval_s), "outbox-retry")
        _run_in_background(stack, presence.run(_LAST_SEEN_FLUSH_S), "last-seen-flush")

        http = await serve_app(
            app,
            host=settings.http_host,
            port=settings.management_port if port is None else port,
            drain_timeout_s=settings.drain_timeout_s,
        )
        # Closed first on stop: no new requests, in-flight ones drain, then the rest goes.
        stack.push_async_callback(http.stop)
        return RunningManagement(port=http.port, outbox=outbox, stack=stack.pop_all())
    raise AssertionError("unreachable")  # the with block always returns or raises
