"""Wiring of the auth service: ``start(settings)`` builds every dependency and serves HTTP.

Everything is built under one ``contextlib.AsyncExitStack``: if any step fails, what the earlier
steps opened (the database client, the sweeper, the listener) is closed again before the error
propagates; on success the stack moves into the returned ``RunningAuth`` and ``stop()`` unwinds
it in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry

from chatcore.accounts import MongoAccountStatus
from chatcore.http import Health, make_app
from chatcore.kafka import make_producer
from chatcore.lease_store import LEASE_INDEXES, database_leases
from chatcore.leases import SWEEP_AFTER_S, Leases, instance_owner
from chatcore.lifecycle import serve_app
from chatcore.logging import get_logger
from chatcore.memberships import memberships_of, share_a_team
from chatcore.mongo import database, ensure_indexes, make_mongo_client, ping
from chatcore.settings import Settings
from chatcore.tasks import cancel_and_wait
from chatcore.tokens import JwtVerifier, StaticJwksSource
from services.auth.accounts import AuthMetrics, AuthService, Limiters
from services.auth.api import AuthApi
from services.auth.events import EventProducer, KafkaEvents
from services.auth.keys import KeyRing, TokenIssuer
from services.auth.passwords import Passwords
from services.auth.renames import MongoRenameStore, RenamePublisher
from services.auth.sessions import MongoEndedSessionStore, SessionEventPublisher
from services.auth.store import AUTH_INDEXES, MongoRefreshStore, MongoUserStore

_log = get_logger("auth.server")

SWEEPER_TASK_NAME = "auth-refresh-sweep"
SESSION_EVENTS_TASK_NAME = "auth-session-events"
RENAME_EVENTS_TASK_NAME = "auth-rename-events"


async def _sweep_forever(service: AuthService, leases: Leases, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            deleted = await service.sweep_expired()
            _log.info("refresh_sweep", deleted=deleted)
            await leases.sweep(older_than_s=SWEEP_AFTER_S)
        except Exception:
            _log.exception("refresh_sweep_failed")


class RunningAuth:
    """A started auth service; ``stop()`` drains HTTP, then closes the rest."""

    def __init__(self, port: int, health: Health, cleanups: contextlib.AsyncExitStack) -> None:
        self._port = port
        self._health = health
        self._cleanups = cleanups

    @property
    def port(self) -> int:
        return self._port

    async def stop(self) -> None:
        self._health.draining = True
        await self._cleanups.aclose()


async def start(settings: Settings, *, port: int | None = None) -> RunningAuth:
    """Start the auth service; ``port`` overrides settings (0 picks a free port)."""
    async with contextlib.AsyncExitStack() as stack:
        keys = KeyRing.from_settings(settings)
        client = make_mongo_client(settings)
        stack.push_async_callback(client.close)
        db = database(client, settings)
        await ensure_indexes(db, (*AUTH_INDEXES, *LEASE_INDEXES))
        registry = CollectorRegistry()
        # Refresh rotation is exclusive per token across every auth instance.
        leases = database_leases(
            db,
            "refresh",
            owner=instance_owner(),
            ttl_s=settings.lease_ttl_s,
            wait_s=settings.lease_wait_s,
        )
        ended = MongoEndedSessionStore(db)

        def producer() -> EventProducer:
            made: EventProducer = make_producer(settings, client_id="auth")
            return made

        events = KafkaEvents(producer, timeout_s=settings.outbox_send_timeout_s)
        stack.push_async_callback(events.aclose)
        publisher = SessionEventPublisher(ended, events)

        users = MongoUserStore(db)

        async def name_of(user_id: str) -> str | None:
            user = await users.by_id(user_id)
            return user.name if user is not None else None

        async def teams_of(user_id: str) -> list[str]:
            return [m.team_id for m in await memberships_of(db, user_id)]

        renames = MongoRenameStore(db)
        metrics = AuthMetrics.create(registry)
        passwords = Passwords.from_settings(settings, on_busy=metrics.password_checks_busy.inc)
        stack.callback(passwords.close)
        rename_publisher = RenamePublisher(renames, events, name_of=name_of, teams_of=teams_of)
        service = AuthService(
            users=users,
            refresh_tokens=MongoRefreshStore(db),
            passwords=passwords,
            issuer=TokenIssuer(
                keys,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                ttl_s=settings.access_token_ttl_s,
            ),
            limiters=Limiters.from_settings(settings),
            metrics=metrics,
            refresh_ttl_s=settings.refresh_token_ttl_s,
            ended_sessions=ended,
            access_lifetime_s=settings.access_token_ttl_s + settings.jwt_leeway_s,
            renames=renames,
            logins_per_account=settings.logins_per_account,
            share_a_team=lambda one, other: share_a_team(db, one, other),
            on_session_ended=publisher.wake,
            on_renamed=rename_publisher.wake,
            leases=leases,
        )
        # The service verifies its own tokens from its own key ring (no HTTP round trip to
        # itself), and refuses tokens of disabled accounts and ended logins at once.
        verifier = JwtVerifier.from_settings(
            settings, StaticJwksSource(keys.jwks()), accounts=MongoAccountStatus(db)
        )
        stack.push_async_callback(verifier.aclose)

        async def database_ready() -> bool:
            return await ping(client)

        health = Health({"database": database_ready})
        app = make_app(registry=registry, health=health, max_body_bytes=settings.max_body_bytes)
        app.add_routes(AuthApi(service, keys, verifier, settings).routes())

        sweeper = asyncio.create_task(
            _sweep_forever(service, leases, settings.refresh_sweep_interval_s),
            name=SWEEPER_TASK_NAME,
        )

        async def stop_sweeper() -> None:
            await cancel_and_wait(sweeper)

        stack.push_async_callback(stop_sweeper)
        announcer = asyncio.create_task(
            publisher.run(settings.outbox_retry_interval_s), name=SESSION_EVENTS_TASK_NAME
        )

        rename_announcer = asyncio.create_task(
            rename_publisher.run(settings.outbox_retry_interval_s), name=RENAME_EVENTS_TASK_NAME
        )

        async def stop_announcer() -> None:
            await cancel_and_wait(announcer)
            await cancel_and_wait(rename_announcer)

        stack.push_async_callback(stop_announcer)
        http = await serve_app(
            app,
            host=settings.http_host,
            port=settings.auth_port if port is None else port,
            drain_timeout_s=settings.drain_timeout_s,
        )
        stack.push_async_callback(http.stop)
        _log.info("auth_started", port=http.port)
        return RunningAuth(http.port, health, stack.pop_all())
    raise AssertionError("unreachable")  # the with block always returns or raises
