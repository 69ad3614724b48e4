"""The relay at work: handshakes, the per-socket loop, deliveries, resyncs and grants.

Glue between the pure pieces (``handshake``, ``hub``, ``gate``, ``resync``, ``frames``) and the
I/O ones (``controller_link``, ``publisher``, ``fanout``). A socket's life:

1. ``process_request``: route, Origin, token and the per-user cap, before any upgrade; the claims
   and the user's slot live on the connection object and go with it.
2. ``handler``: the user's memberships from a controller; the socket's channels join the
   subscription set; ``hello`` goes out once every reachable controller confirmed them (or the
   wait timed out, and those controllers owe the socket a ``resync``); nothing is delivered to
   the socket before its ``hello``.
3. Frames in: parse, rate-limit, authorize, produce; every refusal is an ``error`` frame.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from chatcore.errors import ChatError, RateLimited, Unavailable
from chatcore.logging import bind_context, get_logger, reset_context
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.ratelimit import TokenBucketLimiter
from chatcore.settings import Settings
from chatcore.tasks import spawn
from chatcore.tokens import AccessClaims, JwtVerifier
from services.relay.audit import MembershipAudit
from services.relay.controller_link import ControllerLink
from services.relay.fanout import WsFanout
from services.relay.frames import (
    RESYNC_FRAME,
    ChatFrame,
    FrameError,
    TypingFrame,
    error_frame,
    frame_code,
    hello_frame,
    parse_frame,
)
from services.relay.gate import Gate, check_membership
from services.relay.handshake import (
    NOT_FOUND,
    TOO_MANY,
    Rejection,
    Route,
    UserSlots,
    authenticate,
    request_id,
    split,
    upgrade_token,
)
from services.relay.hub import Effects, Grant, Hub, Session
from services.relay.metrics import RelayMetrics
from services.relay.presence import PresenceReporter
from services.relay.publisher import ProducerPort, Publisher
from services.relay.refusals import Refusals
from services.relay.resync import ResyncLedger

_log = get_logger("relay.connection")
# Invalid frames a socket may send once past its frame budget before it is closed (1008).
INVALID_OVER_BUDGET_MAX = 10
INVALID_FRAMES_CLOSE = "too many invalid frames"
# Valid frames refused for rate, per user on this relay: this many at once, refilled at this rate.
# A client that honours `retry_after` never comes near; one that keeps sending regardless makes the
# relay parse and answer every frame (a flood of 4 KB texts cost half a core), so it is closed
# (1008), and its next socket is closed at its first refusal until the budget has refilled.
RATE_REFUSALS_BURST = 50
RATE_REFUSALS_PER_S = 1.0
RATE_REFUSALS_CLOSE = "too many frames over the rate limit"


class RelayConnection(ServerConnection):
    """A WebSocket connection carrying what its handshake established.

    ``on_data`` runs after every read the library handles (its automatic replies written):
    the relay checks the socket's write backlog there (``WsFanout.check_backlog``). Once it says
    the socket is being cut off, what the socket sends is dropped unread: pausing the transport
    is not enough, since the library resumes reading whenever its own queue of frames drains,
    and every ping read is a pong written.
    """

    def __init__(
        self,
        *args: Any,
        on_data: Callable[[ServerConnection], bool] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.claims: AccessClaims | None = None
        self.request_id = ""
        self._on_data = on_data
        self._deaf = False

    def data_received(self, data: bytes) -> None:
        if self._deaf:
            return
        super().data_received(data)
        if self._on_data is not None and self._on_data(self):
            self._deaf = True
            self.transport.pause_reading()


class Relay:
    def __init__(
        self,
        settings: Settings,
        *,
        relay_id: str,
        verifier: JwtVerifier,
        producer: ProducerPort,
        registry: CollectorRegistry,
    ) -> None:
        self._settings = settings
        self.relay_id = relay_id
        self._verifier = verifier
        self._registry = registry
        self.metrics = RelayMetrics.create(registry)
        self._fanout = WsFanout(
            settings.ws_send_buffer_bytes,
            self.metrics,
            window_s=settings.relay_write_window_ms / 1000,
            prompt_audience=settings.relay_write_window_audience,
        )
        self.hub = Hub(self._fanout)
        self.link = ControllerLink(
            settings.controller_addrs,
            relay_id,
            self._on_batch,
            lambda: self.hub.channels,
            token=settings.internal_token,
            on_stream_up=self._on_stream_up,
            on_stream_lost=self._on_stream_lost,
            on_confirmed=self._on_confirmed,
            on_removed=self._on_removed,
            on_lookup_batch=self.metrics.lookup_batch.observe,
        )
        self.publisher = Publisher(producer, relay_id=relay_id, metrics=self.metrics)
        self.presence = PresenceReporter(
            relay_id,
            self.hub.channels_of,
            grace_ms=int(settings.presence_grace_s * 1000),
            ttl_ms=int(settings.presence_ttl_s * 1000),
        )
        self.gate = Gate(self.link)
        self.ledger = ResyncLedger()
        # A stream was lost while none was UP: the next one UP resyncs every socket.
        self._loss_unpaid = False
        self.audit = MembershipAudit(
            self.hub,
            self.gate,
            self.link,
            self._apply,
            interval_s=settings.relay_audit_interval_s,
        )
        self.slots = UserSlots(settings.ws_max_connections_per_user)
        self._limits = TokenBucketLimiter(
            capacity=settings.ws_rate_burst, rate_per_s=settings.ws_rate_per_s, max_keys=1_000_000
        )
        # Message frames per user on this relay, whatever their number of sockets (kept when the
        # sockets close: reconnecting must not refill it).
        self._user_limits = TokenBucketLimiter(
            capacity=settings.ws_user_rate_burst,
            rate_per_s=settings.ws_user_rate_per_s,
            max_keys=1_000_000,
        )
        self._typing_limits = TokenBucketLimiter(
            capacity=settings.ws_typing_burst,
            rate_per_s=settings.ws_typing_per_s,
            max_keys=1_000_000,
        )
        # Per socket: invalid frames sent past its frame budget (closed at the maximum).
        self._refused_over_budget: dict[str, int] = {}
        # Per user, kept when the sockets close (reconnecting must not refill it).
        self._rate_refusals = TokenBucketLimiter(
            capacity=RATE_REFUSALS_BURST, rate_per_s=RATE_REFUSALS_PER_S, max_keys=1_000_000
        )
        # Sockets being closed for it: what they still send while the close completes (up to
        # the close timeout) is dropped unread, and closed and logged once.
        # Sockets being closed for what they sent: what else they send is dropped unread.
        self._closing: set[str] = set()
        self.refusals = Refusals()
        self.draining = False

    # --- controller deliveries -------------------------------------------------------------

    def _on_batch(self, batch: chat_pb2.DeliveryBatch) -> None:
        self._apply(self.hub.deliver(batch))

    def _on_stream_up(self, address: str, lost: bool) -> None:
        """A controller stream is UP again: pay the resyncs it owes, re-check memberships.

        A loss seen while no stream was UP is paid by whichever comes UP first: it comes before
        any controller can deliver the lost one's partitions, so the sockets' history reads
        start below whatever that one had in flight."""
        lost = lost or self._loss_unpaid
        self._loss_unpaid = False
        sessions = self.ledger.settle(
            address,
            lost=lost,
            greeted=self.hub.greeted_sessions(),
            confirmed=self.link.confirmed(address),
        )
        self._resync(sessions, address, lost=lost)
        self.audit.trigger()

    def _on_confirmed(self, address: str, request_id: int) -> None:
        """A slow controller confirmed: the sockets greeted without waiting for it resync now."""
        self._resync(self.ledger.confirmed(address, request_id), address, lost=False)

    def _on_removed(self, address: str) -> None:
        """A controller left for good: the sockets it owed a resync get it now (its partitions
        are served by a controller that streams to us; a history read covers the gap)."""
        sessions = self.ledger.settle(address, lost=False, greeted=())
        self._resync(sessions, address, lost=False)

    def _on_stream_lost(self, address: str) -> None:
        """A controller stream broke. If another is UP, resync at once as well.

        The lost controller's partitions may move to one that still streams to us, whose
        deliveries would move the clients' cursors past what was lost in flight; a history read
        now (everything lost was persisted before the break was seen) closes that gap. The resync
        when the stream is back covers a controller that merely lost touch and kept fanning out.
        """
        if self.link.up:
            self._resync(self.hub.greeted_sessions(), address, lost=True)
        else:
            self._loss_unpaid = True

    def _resync(self, sessions: list[Session], address: str, *, lost: bool) -> None:
        if sessions:
            _log.warning("resync_sockets", controller=address, sockets=len(sessions), lost=lost)
            self.metrics.resyncs.inc(len(sessions))
            self._fanout.send(sessions, RESYNC_FRAME)

    def _apply(self, effects: Effects) -> None:
        self.link.change(add=effects.subscribe, remove=effects.unsubscribe)
        self.gate.forget(effects.members_changed)
        for grant in effects.grants:
            spawn(self._complete_grant(grant))
        for user_id in effects.joined:
            self.presence.joined(user_id)
        self.refusals.heard(effects)
        if effects.disabled_users or effects.disabled_now:
            self._close_users([*effects.disabled_users, *effects.disabled_now])
        if effects.ended_sessions or effects.ended_now:
            self._close_logins([*effects.ended_sessions, *effects.ended_now])

    def _close_users(self, users: list[str]) -> None:
        for user_id in users:
            for session in self.hub.sessions_of(user_id):
                spawn(cast(ServerConnection, session.conn).close(1008, "account disabled"))

    def _close_logins(self, logins: list[tuple[str, str]]) -> None:
        for user_id, session_id in logins:
            for session in self.hub.sessions_of(user_id):
                conn = cast(RelayConnection, session.conn)
                if conn.claims is not None and conn.claims.sid == session_id:
                    spawn(conn.close(1008, "session ended"))

    async def _complete_grant(self, grant: Grant) -> None:
        """Give an added member's sockets the channel once it is subscribed everywhere."""
        ticket = self.link.ticket()
        await self.link.wait(ticket, self._settings.relay_subscribe_timeout_s)
        try:
            # The event may be a replay: the team's word now decides, and whether it is active.
            reply = await self.link.members(grant.channel_id)
            member, active = reply.found and grant.user_id in reply.user_ids, reply.active
        except ChatError:
            member, active = False, False  # fail closed: the user reconnects to get it
        self._apply(self.hub.finish_grant(grant, member=member, active=active))
        # Asked now, not when the wait ended: a confirmation that came during the members read
        # has paid already, and a debt recorded after its payment would never be paid.
        owed = self.link.unconfirmed(ticket)
        if owed and member:
            for session in self.hub.sessions_of(grant.user_id):
                if grant.channel_id in session.channels:
                    self.ledger.owe(session, owed, ticket)

    # --- handshake ---------------------------------------------------------------------------

    def create_connection(self, *args: Any, **kwargs: Any) -> RelayConnection:
        """The library's connection factory: each socket checks its write backlog as it reads."""
        return RelayConnection(*args, on_data=self._fanout.check_backlog, **kwargs)

    async def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        rid = request_id(request.headers)
        route, query = split(request.path)
        if route is Route.HEALTHZ:
            return _json(conn, 200, '{"data":{"status":"ok"},"meta":{}}', rid)
        if route is Route.READYZ:
            if self.link.up and not self.draining:
                return _json(conn, 200, '{"data":{"status":"ready"},"meta":{}}', rid)
            message = "draining" if self.draining else "no controller stream"
            return _reject(conn, Rejection(503, "unavailable", message, "not_ready"), rid)
        if route is Route.METRICS:
            response = conn.respond(200, generate_latest(self._registry).decode())
            response.headers["Content-Type"] = CONTENT_TYPE_LATEST
            return response
        if route is not Route.WEBSOCKET:
            return _reject(conn, NOT_FOUND, rid)
        token = upgrade_token(
            query, request.headers, origins=self._settings.ws_origins, draining=self.draining
        )
        if isinstance(token, Rejection):
            self.metrics.rejected.labels(token.reason).inc()
            return _reject(conn, token, rid)
        claims = await authenticate(token, self._verifier)
        if isinstance(claims, Rejection):
            self.metrics.rejected.labels(claims.reason).inc()
            return _reject(conn, claims, rid)
        if not self.slots.take(claims.sub):
            self.metrics.rejected.labels(TOO_MANY.reason).inc()
            return _reject(conn, TOO_MANY, rid)
        # The slot and the claims live exactly as long as the connection, upgraded or not.
        user = claims.sub
        conn.connection_lost_waiter.add_done_callback(lambda _f: self.slots.give_back(user))
        relay_conn = cast(RelayConnection, conn)
        relay_conn.claims = claims
        relay_conn.request_id = rid
        return None

    # --- the socket --------------------------------------------------------------------------

    async def handler(self, conn: ServerConnection) -> None:
        relay_conn = cast(RelayConnection, conn)
        claims = relay_conn.claims
        if claims is None:
            await conn.close(1008, "unauthenticated")
            return
        # websockets keeps the opening handshake's request and response for the connection's
        # lifetime (its parser's frame holds the request too, and ``request is None`` means
        # "handshake not done yet", so the objects stay); nothing reads their headers once the
        # socket is open, and those are ≈ 3.5 KiB of every idle socket (docs/benchmarks.md).
        for message in (conn.request, conn.response):
            if message is not None:
                message.headers.clear()
        context = bind_context(request_id=relay_conn.request_id, user_id=claims.sub)
        started = time.monotonic()
        # Membership events from now until the socket is attached apply to it (handshakes.py).
        self.hub.expect(claims.sub)
        try:
            reply = await self.link.memberships(claims.sub)
        except BaseException as exc:
            self.hub.abandon(claims.sub)
            if not isinstance(exc, ChatError):
                raise
            reset_context(context)
            await conn.close(1013, "membership service unavailable, retry")
            return
        refusal = self.refusals.reason(claims, reply)
        if refusal is not None:
            self.hub.abandon(claims.sub)
            reset_context(context)
            await conn.close(1008, refusal)
            return
        session = Session(
            user_id=claims.sub,
            conn=conn,
            channels={m.channel_id: m.active for m in reply.memberships},
        )
        unread = {u.channel_id: {"count": u.count, "mentions": u.mentions} for u in reply.unread}
        del reply  # the protobuf reply would otherwise live as long as the socket
        self._apply(self.hub.attach(session))
        self.metrics.connections.inc()
        loop = asyncio.get_running_loop()
        # At the end of the leeway the handshake allowed: a token accepted a second past its
        # exp (clock skew) is not closed before its hello.
        expiry = loop.call_later(
            max(0.0, claims.exp + self._settings.jwt_leeway_s - time.time()),
            lambda: spawn(conn.close(1008, "token expired")),
        )
        try:
            ticket = self.link.ticket()
            owed = await self.link.wait(ticket, self._settings.relay_subscribe_timeout_s)
            if conn.close_code is not None:
                return
            # Greeted and hello written in one step: the fan-out writes synchronously, so no
            # delivery can slip in between, and none reached the socket before.
            self.hub.greet(session)
            self.presence.opened(session.user_id)
            self.ledger.owe(session, owed, ticket)
            self._fanout.send(
                [session],
                hello_frame(
                    claims.sub,
                    sorted(session.channels),
                    self.relay_id,
                    self._settings.ws_heartbeat_s,
                    {c: u for c, u in unread.items() if c in session.channels},
                    int(self._settings.edit_window_s),
                ),
            )
            del unread
            self.metrics.hello_wait.observe(time.monotonic() - started)
            # DEBUG: two INFO lines per socket were a sixth of a connection storm's relay CPU;
            # the disconnect line below says everything this one would.
            _log.debug("ws_connected", channels=len(session.channels), owed=len(owed))
            async for raw in conn:
                await self._on_frame(session, raw)
        except ConnectionClosed:
            pass
        finally:
            expiry.cancel()
            if session.greeted:
                self.presence.closed(session.user_id, int(time.time() * 1000))
            self._apply(self.hub.detach(session))
            self.ledger.forget(session)
            key = str(id(session))
            self._limits.forget(key)
            self._typing_limits.forget(key)
            self._refused_over_budget.pop(key, None)
            self._closing.discard(key)
            self.metrics.connections.dec()
            _log.info(
                "ws_disconnected",
                code=conn.close_code,
                channels=len(session.channels),
                seconds=round(time.monotonic() - started, 1),
            )
            reset_context(context)

    def _send(self, session: Session, text: bytes) -> None:
        self._fanout.send([session], text)

    def _parse(self, session: Session, raw: str | bytes) -> ChatFrame | TypingFrame:
        try:
            return parse_frame(raw)
        except FrameError:
            # Refused frames cost a token too: otherwise a client could make the relay parse
            # and answer up to 64 KiB frames as fast as its link allows. Past its budget a few
            # more are answered; then the socket is closed (a client that keeps sending frames
            # it was told are invalid is broken or hostile).
            key = str(id(session))
            wait = self._limits.try_acquire(key)
            if wait <= 0:
                raise
            strikes = self._refused_over_budget.get(key, 0) + 1
            self._refused_over_budget[key] = strikes
            if strikes >= INVALID_OVER_BUDGET_MAX:
                self._close_for_frames(session, INVALID_FRAMES_CLOSE, "ws_closed_invalid_frames")
            raise RateLimited("slow down", retry_after=wait) from None

    async def _on_frame(self, session: Session, raw: str | bytes) -> None:
        if self._closing and str(id(session)) in self._closing:
            return
        cmid = ""
        try:
            frame = self._parse(session, raw)
            cmid = frame.client_msg_id if isinstance(frame, ChatFrame) else ""
            if self.draining:
                # The drain waits for the produces it found; one started now could be cut off
                # by the close before its ack. Refused, the client sends it again elsewhere.
                raise Unavailable("relay is restarting; reconnect and send again")
            limiter = self._typing_limits if isinstance(frame, TypingFrame) else self._limits
            wait = limiter.try_acquire(str(id(session)))
            if wait <= 0 and isinstance(frame, ChatFrame):
                wait = self._user_limits.try_acquire(session.user_id)
            if wait > 0:
                self._refused_for_rate(session)
                raise RateLimited("slow down", retry_after=wait)
            self.metrics.frames.labels(
                frame.type if isinstance(frame, ChatFrame) else "typing"
            ).inc()
            if isinstance(frame, TypingFrame):
                check_membership(session, frame)
                await self.gate.check(session, frame)
                await self.publisher.signal(session.user_id, frame)
            else:
                frame = await self.gate.check_reply(session, frame)
                await self.publisher.publish(
                    session.user_id, frame, lambda text: self._send(session, text)
                )
        except ChatError as exc:
            code = frame_code(exc)
            if isinstance(exc, FrameError):
                cmid = exc.client_msg_id
            self.metrics.errors.labels(code).inc()
            self._send(session, error_frame(code, exc.public_message, cmid))

    def _refused_for_rate(self, session: Session) -> None:
        """A frame refused for rate spends the user's refusals; with none left the socket goes."""
        if self._rate_refusals.try_acquire(session.user_id) <= 0:
            return
        self._close_for_frames(session, RATE_REFUSALS_CLOSE, "ws_closed_over_rate")

    def _close_for_frames(self, session: Session, reason: str, event: str) -> None:
        """Close the socket (1008) once, logged once; what it sends meanwhile goes unread."""
        key = str(id(session))
        if key in self._closing:
            return
        self._closing.add(key)
        _log.warning(event, user_id=session.user_id)
        spawn(cast(ServerConnection, session.conn).close(1008, reason))

    async def drain(self, timeout_s: float) -> None:
        """Wait until every produced message has its Kafka answer (and its ack or error), then
        write what is still in the write window."""
        await self.publisher.drain(timeout_s)
        self._fanout.write_queued()


def _json(conn: ServerConnection, status: int, body: str, rid: str) -> Response:
    response = conn.respond(status, body)
    del response.headers["Content-Type"]
    response.headers["Content-Type"] = "application/json"
    response.headers["X-Request-ID"] = rid
    return response


def _reject(conn: ServerConnection, rejection: Rejection, rid: str) -> Response:
    return _json(conn, rejection.status, rejection.body(rid), rid)
