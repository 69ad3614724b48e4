"""Wiring of the management service: ``start(settings)`` builds every dependency and serves HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import aiohttp
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from pymongo.asynchronous.database import AsyncDatabase

from chatcore.accounts import MongoAccountStatus
from chatcore.http import Health, ReadinessCheck, make_app
from chatcore.kafka import make_producer
from chatcore.lifecycle import Cleanup, RunningHttpApp, serve_app
from chatcore.logging import get_logger
from chatcore.mongo import INDEXES, Document, database, ensure_indexes, make_mongo_client, ping
from chatcore.s3 import make_s3_client
from chatcore.settings import Settings
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
from services.management.events import EventMetrics, KafkaMembershipPublisher
from services.management.history import HistoryService
from services.management.objects import S3ObjectStore
from services.management.openapi import load_openapi
from services.management.store import MANAGEMENT_INDEXES, MongoMessageStore, MongoTeamStore
from services.management.teams import TeamMetrics, TeamService
from services.management.users import HttpUserDirectory

_log = get_logger("management.server")


def _kafka_ready(producer: AIOKafkaProducer) -> ReadinessCheck:
    async def check() -> bool:
        # A metadata round trip: True only when a broker answers.
        return bool(await producer.client.force_metadata_update())

    return check


async def _sweep_forever(service: AttachmentService, interval_s: float) -> None:
    """Delete never-completed uploads periodically (no TTL indexes on FerretDB)."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await service.sweep()
        except Exception:
            _log.exception("attachment_sweep_failed")


def _attachment_service(
    settings: Settings,
    db: AsyncDatabase[Document],
    teams: MongoTeamStore,
    registry: CollectorRegistry,
) -> AttachmentService:
    client = make_s3_client(settings)
    # Presigned URLs are signed for the host clients use, which may differ from ours.
    signer = (
        make_s3_client(dataclasses.replace(settings, s3_endpoint=settings.s3_public_endpoint))
        if settings.s3_public_endpoint
        else client
    )
    return AttachmentService(
        teams=teams,
        records=MongoAttachmentStore(db),
        objects=S3ObjectStore(client, settings.s3_bucket, signer=signer),
        scanner=ClamdClient(
            ClamdAddress.parse(settings.clamd_address), timeout_s=settings.clamd_timeout_s
        ),
        limits=AttachmentLimits(
            max_bytes=settings.attachment_max_bytes,
            upload_ttl_s=settings.attachment_upload_ttl_s,
            download_ttl_s=settings.attachment_download_ttl_s,
            pending_max_age_s=settings.attachment_pending_max_age_s,
        ),
        metrics=AttachmentMetrics.create(registry),
    )


@contextlib.asynccontextmanager
async def _undo_on_failure(cleanups: list[Cleanup]) -> AsyncIterator[None]:
    """If start-up fails half-way, release what was already acquired (newest first)."""
    try:
        yield
    except BaseException:
        for cleanup in reversed(cleanups):
            with contextlib.suppress(Exception):
                await cleanup()
        raise


async def start(settings: Settings, *, port: int | None = None) -> RunningHttpApp:
    """Start the management service; ``port`` overrides settings (0 picks a free port)."""
    _document, openapi = load_openapi()
    cleanups: list[Cleanup] = []
    async with _undo_on_failure(cleanups):
        client = make_mongo_client(settings)
        cleanups.append(client.close)
        db = database(client, settings)
        # The messages indexes too: history pages need (channel_id, seq) even before the
        # controller has started once.
        await ensure_indexes(db, (*INDEXES, *MANAGEMENT_INDEXES, *ATTACHMENT_INDEXES))

        producer = make_producer(settings, client_id="management")
        await producer.start()
        cleanups.append(producer.stop)

        session = aiohttp.ClientSession()
        cleanups.append(session.close)

        registry = CollectorRegistry()
        teams = MongoTeamStore(db)
        service = TeamService(
            teams=teams,
            users=HttpUserDirectory(session, settings.auth_url, timeout_s=settings.auth_timeout_s),
            events=KafkaMembershipPublisher(producer, EventMetrics.create(registry)),
            metrics=TeamMetrics.create(registry),
        )
        history = HistoryService(teams=teams, messages=MongoMessageStore(db))
        verifier = JwtVerifier.from_settings(
            settings, HttpJwksSource(session, settings.jwks_url), accounts=MongoAccountStatus(db)
        )

        async def database_ready() -> bool:
            return await ping(client)

        health = Health({"database": database_ready, "kafka": _kafka_ready(producer)})
        app = make_app(registry=registry, health=health, max_body_bytes=settings.max_body_bytes)
        app.add_routes(ManagementApi(service, history, verifier, settings, openapi).routes())
        attachments = _attachment_service(settings, db, teams, registry)
        app.add_routes(AttachmentApi(attachments, verifier, settings).routes())
        sweeper = asyncio.create_task(
            _sweep_forever(attachments, settings.attachment_sweep_interval_s)
        )

        async def stop_sweeper() -> None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper

        cleanups.append(stop_sweeper)
        return await serve_app(
            app,
            host=settings.http_host,
            port=settings.management_port if port is None else port,
            drain_timeout_s=settings.drain_timeout_s,
            # Run in reverse on stop: the sweeper, the HTTP session, the producer (flushing), Mongo.
            cleanups=list(cleanups),
        )
