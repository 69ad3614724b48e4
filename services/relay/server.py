"""The relay's WebSocket server: handshake checks, the per-socket loop, acks, drain on SIGTERM.

``start(settings)`` returns a running relay (port 0 friendly). The opening handshake is where the
token, the Origin and the per-user connection cap are checked, so a bad token is an HTTP 401 before
any upgrade. Plain HTTP requests for ``/healthz``, ``/readyz`` and ``/metrics`` are answered on the
same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
import urllib.parse
from collections import OrderedDict
from typing import Any, cast

import aiohttp
from aiokafka import AIOKafkaProducer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from chatcore.errors import ChatError
from chatcore.kafka import MESSAGES_TOPIC, SIGNALS_TOPIC, make_producer
from chatcore.logging import bind_context, get_logger, new_request_id, reset_context
from chatcore.messages import CORRELATION_HEADER, TYPE_VALUES
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.ratelimit import TokenBucketLimiter
from chatcore.settings import Settings
from chatcore.tokens import AccessClaims, HttpJwksSource, JwtVerifier, bearer_token
from services.relay.controller_link import ControllerLink
from services.relay.fanout import WsFanout, spawn
from services.relay.frames import (
    ChatFrame,
    FrameError,
    TypingFrame,
    ack_frame,
    error_frame,
    hello_frame,
    parse_frame,
)
from services.relay.gate import Gate, check_membership
from services.relay.hub import ChannelChanges, Hub, Session
from services.relay.ids import message_id
from services.relay.metrics import RelayMetrics

_log = get_logger("relay.server")
_std_log = logging.getLogger("relay.server")
WS_PATH = "/v1/ws"
_ACK_CACHE = 20_000


class Relay:
    def __init__(
        self,
        settings: Settings,
        *,
        relay_id: str,
        verifier: JwtVerifier,
        producer: AIOKafkaProducer,
        registry: CollectorRegistry,
    ) -> None:
        self._settings = settings
        self.relay_id = relay_id
        self._verifier = verifier
        self._producer = producer
        self._registry = registry
        self.metrics = RelayMetrics.create(registry)
        self._fanout = WsFanout(settings.ws_send_buffer_bytes, self.metrics)
        self.hub = Hub(self._fanout)
        self.link = ControllerLink(
            settings.controller_addrs,
            relay_id,
            self._on_batch,
            lambda: self.hub.channels,
            on_lost_deliveries=self._resync_all,
        )
        self._gate = Gate(self.link)
        self._limits = TokenBucketLimiter(
            capacity=settings.ws_rate_burst, rate_per_s=settings.ws_rate_per_s, max_keys=1_000_000
        )
        self._typing_limits = TokenBucketLimiter(
            capacity=settings.ws_typing_burst,
            rate_per_s=settings.ws_typing_per_s,
            max_keys=1_000_000,
        )
        self._claims: dict[ServerConnection, AccessClaims] = {}
        self._acks: OrderedDict[tuple[str, str], asyncio.Future[str]] = OrderedDict()
        self._inflight: set[asyncio.Future[Any]] = set()
        self.draining = False

    # --- controller deliveries --------------------------------------------------------------

    def _on_batch(self, batch: chat_pb2.DeliveryBatch) -> None:
        self._apply(self.hub.deliver(batch))

    def _resync_all(self) -> None:
        """Deliveries were lost upstream: every socket reconnects and resumes from history."""
        sessions = self.hub.sessions()
        _log.warning("resync_all_sockets", sockets=len(sessions))
        for session in sessions:
            conn = cast(ServerConnection, session.conn)
            spawn(conn.close(1013, "missed deliveries: reconnect and resume from history"))

    def _apply(self, changes: ChannelChanges) -> None:
        self.link.subscribe(changes.subscribe)
        self.link.unsubscribe(changes.unsubscribe)
        self._gate.forget(changes.members_changed)

    # --- handshake ---------------------------------------------------------------------------

    async def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        parts = urllib.parse.urlsplit(request.path)
        if parts.path == "/healthz":
            return _json(conn, 200, {"data": {"status": "ok"}, "meta": {}})
        if parts.path == "/readyz":
            if self.link.up and not self.draining:
                return _json(conn, 200, {"data": {"status": "ready"}, "meta": {}})
            return _error(
                conn,
                503,
                "unavailable",
                "no controller stream" if not self.draining else "draining",
            )
        if parts.path == "/metrics":
            response = conn.respond(200, generate_latest(self._registry).decode())
            response.headers["Content-Type"] = CONTENT_TYPE_LATEST
            return response
        if parts.path != WS_PATH:
            return _error(conn, 404, "not_found", "no such route")
        if self.draining:
            return _error(conn, 503, "unavailable", "relay is restarting; reconnect")
        origin = request.headers.get("Origin")
        if origin is not None and origin not in self._settings.ws_origins:
            self.metrics.rejected.labels("origin").inc()
            return _error(conn, 403, "forbidden", "origin not allowed")
        query = urllib.parse.parse_qs(parts.query)
        try:
            query_token = (query.get("token") or [""])[0] or None
            token = bearer_token(request.headers.get("Authorization"), query_token)
            claims = await self._verifier.verify(token)
        except ChatError as exc:
            self.metrics.rejected.labels("token").inc()
            return _error(conn, exc.http_status, exc.code, exc.message)
        if self.hub.count_for(claims.sub) >= self._settings.ws_max_connections_per_user:
            self.metrics.rejected.labels("connection_cap").inc()
            return _error(conn, 429, "rate_limited", "too many connections for this user")
        self._claims[conn] = claims
        return None

    # --- the socket --------------------------------------------------------------------------

    async def handler(self, conn: ServerConnection) -> None:
        claims = self._claims.pop(conn, None)
        if claims is None:
            await conn.close(1008, "unauthenticated")
            return
        context = bind_context(request_id=new_request_id(), user_id=claims.sub)
        started = time.monotonic()
        try:
            memberships = await self.link.memberships(claims.sub)
        except ChatError:
            reset_context(context)
            await conn.close(1013, "membership service unavailable, retry")
            return
        session = Session(
            user_id=claims.sub, conn=conn, channels={m.channel_id: m.active for m in memberships}
        )
        self._apply(self.hub.attach(session))
        self.metrics.connections.inc()
        loop = asyncio.get_running_loop()
        expiry = loop.call_later(
            max(0.0, claims.exp - time.time()),
            lambda: spawn(conn.close(1008, "token expired")),
        )
        _log.info("ws_connected", channels=len(session.channels))
        try:
            await conn.send(
                hello_frame(
                    claims.sub,
                    sorted(session.channels),
                    self.relay_id,
                    self._settings.ws_heartbeat_s,
                )
            )
            async for raw in conn:
                await self._on_frame(session, raw)
        except ConnectionClosed:
            pass
        finally:
            expiry.cancel()
            self._apply(self.hub.detach(session))
            self.metrics.connections.dec()
            _log.info(
                "ws_disconnected",
                code=conn.close_code,
                seconds=round(time.monotonic() - started, 1),
            )
            reset_context(context)

    def _send(self, session: Session, text: str) -> None:
        self._fanout.send([session], text)

    async def _on_frame(self, session: Session, raw: str | bytes) -> None:
        try:
            frame = parse_frame(raw)
            limiter = self._typing_limits if isinstance(frame, TypingFrame) else self._limits
            if limiter.try_acquire(str(id(session))) > 0:
                cmid = frame.client_msg_id if isinstance(frame, ChatFrame) else ""
                raise FrameError("slow down", code="rate_limited", client_msg_id=cmid)
            self.metrics.frames.labels(
                frame.type if isinstance(frame, ChatFrame) else "typing"
            ).inc()
            if isinstance(frame, TypingFrame):
                await self._on_typing(session, frame)
            else:
                await self._on_chat(session, frame)
        except FrameError as exc:
            self.metrics.errors.labels(exc.frame_code).inc()
            self._send(session, error_frame(exc.frame_code, exc.message, exc.client_msg_id))

    async def _on_typing(self, session: Session, frame: TypingFrame) -> None:
        check_membership(session, frame)
        await self._gate.check(session, frame)
        signal = chat_pb2.Signal(
            kind=chat_pb2.SIGNAL_KIND_TYPING,
            channel_id=frame.channel_id,
            to=frame.to,
            sender=session.user_id,
            ts_ms=int(time.time() * 1000),
        )
        with contextlib.suppress(Exception):
            # Typing is best effort: a lost signal is not worth an error frame.
            await self._producer.send(
                SIGNALS_TOPIC, signal.SerializeToString(), key=frame.channel_id.encode()
            )

    async def _on_chat(self, session: Session, frame: ChatFrame) -> None:
        await self._gate.check(session, frame)
        key = (session.user_id, frame.client_msg_id)
        if frame.client_msg_id:
            previous = self._acks.get(key)
            if previous is not None and not (previous.done() and previous.exception()):
                # A retry of a message this relay already took: same ack, nothing produced twice.
                cmid = frame.client_msg_id

                def answer(first: asyncio.Future[str]) -> None:
                    if first.cancelled() or first.exception() is not None:
                        text = error_frame(
                            "unavailable", "message could not be stored, retry", cmid
                        )
                    else:
                        text = first.result()
                    self._send(session, text)

                previous.add_done_callback(answer)
                return
        now_ms = int(time.time() * 1000)
        mid = message_id(session.user_id, frame.client_msg_id, now_ms)
        record = chat_pb2.ChatMessage(
            id=mid,
            channel_id=frame.channel_id,
            to=frame.to,
            type=TYPE_VALUES[frame.type],
            data=frame.data,
            sender=session.user_id,
            ts_ms=now_ms,
            client_msg_id=frame.client_msg_id,
            relay_id=self.relay_id,
        )
        ack: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if frame.client_msg_id:
            self._remember(key, ack)
        try:
            produced = await self._producer.send(
                MESSAGES_TOPIC,
                record.SerializeToString(),
                key=frame.channel_id.encode(),
                headers=[(CORRELATION_HEADER, mid.encode())],
            )
        except Exception as exc:
            ack.set_exception(exc)
            ack.exception()  # consumed: the error frame below is the answer
            raise FrameError(
                "message could not be stored, retry",
                code="unavailable",
                client_msg_id=frame.client_msg_id,
            ) from None
        started = time.monotonic()
        self._inflight.add(produced)

        def done(result: asyncio.Future[Any]) -> None:
            self._inflight.discard(result)
            self.metrics.produce_latency.observe(time.monotonic() - started)
            if result.cancelled() or result.exception() is not None:
                if not ack.done():
                    ack.set_exception(RuntimeError("produce failed"))
                    ack.exception()
                self.metrics.errors.labels("unavailable").inc()
                self._send(
                    session,
                    error_frame(
                        "unavailable", "message could not be stored, retry", frame.client_msg_id
                    ),
                )
                return
            seq = result.result().offset
            text = ack_frame(frame.client_msg_id, mid, seq, now_ms)
            # Per message, so DEBUG behind the stdlib's cached level check (about 0.1 us when
            # off; a rendered line costs about 100 us): docs/operations.md, "Following a message".
            if _std_log.isEnabledFor(logging.DEBUG):
                _log.debug(
                    "message_accepted", correlation_id=mid, channel_id=frame.channel_id, seq=seq
                )
            if not ack.done():
                ack.set_result(text)
            self.metrics.acks.inc()
            self._send(session, text)

        produced.add_done_callback(done)

    def _remember(self, key: tuple[str, str], ack: asyncio.Future[str]) -> None:
        self._acks[key] = ack
        self._acks.move_to_end(key)
        while len(self._acks) > _ACK_CACHE:
            self._acks.popitem(last=False)

    async def drain(self, timeout_s: float) -> None:
        """Wait until every produced message has its Kafka answer (and its ack or error)."""
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=timeout_s)


def _json(conn: ServerConnection, status: int, body: dict[str, Any]) -> Response:
    response = conn.respond(status, json.dumps(body))
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    return response


def _error(conn: ServerConnection, status: int, code: str, message: str) -> Response:
    return _json(
        conn,
        status,
        {"error": {"code": code, "message": message, "request_id": new_request_id()}},
    )


class RunningRelay:
    def __init__(
        self,
        relay: Relay,
        server: Server,
        producer: AIOKafkaProducer,
        session: aiohttp.ClientSession,
        drain_timeout_s: float,
    ) -> None:
        self.relay = relay
        self._server = server
        self._producer = producer
        self._session = session
        self._drain_timeout_s = drain_timeout_s
        self.port = int(server.sockets[0].getsockname()[1]) if server.sockets else 0

    async def stop(self) -> None:
        """Stop accepting, let in-flight produces finish, close sockets with 1012, shut down."""
        self.relay.draining = True
        self._server.close(close_connections=False)
        await self.relay.drain(self._drain_timeout_s)
        sessions = self.relay.hub.sessions()
        await asyncio.gather(
            *(cast(ServerConnection, s.conn).close(1012, "relay restarting") for s in sessions),
            return_exceptions=True,
        )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), self._drain_timeout_s)
        await self._producer.stop()
        await self.relay.link.stop()
        await self._session.close()


async def start(settings: Settings, *, port: int | None = None) -> RunningRelay:
    """Start a relay; ``port`` overrides settings (0 picks a free port)."""
    bind_port = settings.relay_port if port is None else port
    registry = CollectorRegistry()
    session = aiohttp.ClientSession()
    verifier = JwtVerifier.from_settings(settings, HttpJwksSource(session, settings.jwks_url))
    relay_id = settings.relay_id or f"{socket.gethostname()}-{bind_port or 'auto'}"
    producer = make_producer(settings, client_id=f"relay-{relay_id}")
    await producer.start()
    relay = Relay(
        settings, relay_id=relay_id, verifier=verifier, producer=producer, registry=registry
    )
    relay.link.start()
    server = await serve(
        relay.handler,
        settings.http_host,
        bind_port,
        process_request=relay.process_request,
        compression=None,
        max_size=settings.ws_max_frame_bytes,
        ping_interval=settings.ws_heartbeat_s,
        ping_timeout=settings.ws_heartbeat_s,
        server_header=None,
    )
    running = RunningRelay(relay, server, producer, session, settings.drain_timeout_s)
    if not settings.relay_id and bind_port == 0:
        relay.relay_id = f"{socket.gethostname()}-{running.port}"
    return running
