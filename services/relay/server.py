"""Wiring of the relay: ``start(settings)`` builds everything and serves WebSockets on one port.

Everything is built under one ``AsyncExitStack``: a start that fails half-way closes what it had
opened. The listening socket is bound first, so the relay's id (``<host>-<port>`` unless
``CHAT_RELAY_ID`` names it) is final before anything captures it. ``/healthz``, ``/readyz`` and
``/metrics`` are answered on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import cast

import aiohttp
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry
from websockets.asyncio.server import Server, ServerConnection, serve

from chatcore.internal_auth import required_token
from chatcore.kafka import make_producer, make_reader
from chatcore.logging import get_logger
from chatcore.messages import automatic_relay_id
from chatcore.presence_feed import PresenceFeed
from chatcore.rdkafka import RdKafkaProducer
from chatcore.settings import Settings
from chatcore.tasks import cancel_and_wait
from chatcore.tokens import HttpJwksSource, JwtVerifier
from services.relay.connection import Relay
from services.relay.discovery import ControllerDirectory, DiscoveryFeed
from services.relay.presence import PresencePublisher

_log = get_logger("relay.server")


def _library_log() -> logging.Logger:
    """The websockets library's logger for this relay: warnings and errors only. Its per-socket
    "connection open/closed" lines repeat our own ``ws_connected``/``ws_disconnected`` (which
    carry the user and request ids) and cost a formatted JSON line each in a storm."""
    log = logging.getLogger("relay.websockets")
    log.setLevel(logging.WARNING)
    return log


class RunningRelay:
    def __init__(
        self,
        relay: Relay,
        server: Server,
        port: int,
        cleanups: contextlib.AsyncExitStack,
        drain_timeout_s: float,
        presence: PresencePublisher,
        feed: PresenceFeed,
        settings: Settings,
    ) -> None:
        self.relay = relay
        self.presence_publisher = presence
        self.presence_feed = feed
        self._leaving_s = settings.presence_leaving_s
        self.port = port
        self._server = server
        self._cleanups = cleanups
        self._drain_timeout_s = drain_timeout_s

    async def stop(self) -> None:
        """Stop accepting, let in-flight produces finish, close sockets with 1012, shut down."""
        self.relay.draining = True
        self._server.close(close_connections=False)
        # Before the sockets go: readers keep this relay's users only as long as a reconnect
        # elsewhere takes, so those who come back do not flap and the others go offline soon.
        await self.presence_publisher.stop(leaving_ttl_s=self._leaving_s)
        await self.relay.drain(self._drain_timeout_s)
        sessions = self.relay.hub.sessions()
        await asyncio.gather(
            *(cast(ServerConnection, s.conn).close(1012, "relay restarting") for s in sessions),
            return_exceptions=True,
        )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), self._drain_timeout_s)
        await self._cleanups.aclose()


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _producer(settings: Settings, *, client_id: str) -> AIOKafkaProducer | RdKafkaProducer:
    if settings.relay_producer == "aiokafka":
        return make_producer(settings, client_id=client_id)
    return RdKafkaProducer(settings, client_id=client_id)


async def start(settings: Settings, *, port: int | None = None) -> RunningRelay:
    """Start a relay; ``port`` overrides settings (0 picks a free port)."""
    required_token(settings.internal_token)
    async with contextlib.AsyncExitStack() as stack:
        sock = _bind(settings.http_host, settings.relay_port if port is None else port)
        stack.callback(sock.close)
        bound = int(sock.getsockname()[1])
        relay_id = settings.relay_id or automatic_relay_id(socket.gethostname(), bound)

        registry = CollectorRegistry()
        session = aiohttp.ClientSession()
        stack.push_async_callback(session.close)
        verifier = JwtVerifier.from_settings(settings, HttpJwksSource(session, settings.jwks_url))
        producer = _producer(settings, client_id=f"relay-{relay_id}")
        await producer.start()
        stack.push_async_callback(producer.stop)

        relay = Relay(
            settings, relay_id=relay_id, verifier=verifier, producer=producer, registry=registry
        )
        relay.link.start()
        stack.push_async_callback(relay.link.stop)
        # Controllers that join later are found from their announcements, without a restart.
        discovery = DiscoveryFeed(
            make_reader(settings, client_id=f"relay-{relay_id}-discovery"),
            ControllerDirectory(settings.controller_addrs, settings.controller_group_id),
            add=relay.link.add,
            remove=relay.link.remove,
        )
        await discovery.start()
        stack.push_async_callback(discovery.stop)
        audit = asyncio.create_task(relay.audit.run(), name="relay-membership-audit")
        stack.push_async_callback(cancel_and_wait, audit)
        feed = PresenceFeed(
            make_reader(settings, client_id=f"relay-{relay_id}-presence"),
            ttl_s=settings.presence_ttl_s,
            on_transitions=relay.hub.presence,
        )
        await feed.start()
        stack.push_async_callback(feed.stop)
        presence = PresencePublisher(
            relay.presence, producer, heartbeat_s=settings.presence_heartbeat_s
        )
        presence.start()
        stack.push_async_callback(presence.cancel)
        server = await serve(
            relay.handler,
            sock=sock,
            process_request=relay.process_request,
            # websockets types the factory as a class; it only ever calls it.
            create_connection=cast("type[ServerConnection]", relay.create_connection),
            compression=None,
            max_size=settings.ws_max_frame_bytes,
            ping_interval=settings.ws_heartbeat_s,
            ping_timeout=settings.ws_heartbeat_s,
            server_header=None,
            backlog=settings.relay_listen_backlog,
            logger=_library_log(),
        )
        _log.info("relay_started", relay_id=relay_id, port=bound)
        return RunningRelay(
            relay,
            server,
            bound,
            stack.pop_all(),
            settings.drain_timeout_s,
            presence,
            feed,
            settings,
        )
    raise AssertionError("unreachable")  # the with block always returns or raises
