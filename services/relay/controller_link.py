"""The relay's side of the controllers: one Subscribe stream per controller, plus unary queries.

Every controller owns some partitions, so the relay subscribes to all of them with the same set of
channel_ids. Each subscription request carries an id and is confirmed by the controller in order
with its deliveries, so ``wait`` can tell when a set of channels is in force everywhere.

A stream is DOWN (connecting or backing off), OPENING (its first request, the relay's whole
channel set, is sent but not confirmed) or UP. Requests made while a stream is DOWN are not
queued: the full set it sends when it comes back includes them. An UP stream that ends without
the controller's ``goodbye`` calls ``on_stream_lost``; when a stream comes back UP after a loss
that may have cost deliveries (a session the controller served ended without ``goodbye``, or a
controller that fanned out before this stream subscribed), ``on_stream_up`` says so, and the relay
tells the sockets to resync. Tries that found no controller listening (its successor still
starting after a ``goodbye``) lose nothing: a graceful restart stays free of resyncs. (A session
that broke after the controller took it but before its first batch arrived is not counted as a
loss; if that controller also dies without a goodbye, its successor's ``fanned_out_before`` is
what still tells — unless the successor fanned out nothing yet: a double failure left open.)
Every later confirmation on an UP stream calls ``on_confirmed``: sockets that stopped waiting
for a slow one are owed a resync from then on.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc

from chatcore.coalesce import Coalescer
from chatcore.errors import Unavailable
from chatcore.internal_auth import call_metadata
from chatcore.logging import current_correlation_id, get_logger
from chatcore.messages import MAX_CHANNELS_PER_REQUEST
from chatcore.proto.chat.v1 import chat_pb2, chat_pb2_grpc

_log = get_logger("relay.controller_link")

OnBatch = Callable[[chat_pb2.DeliveryBatch], None]
OnStreamUp = Callable[[str, bool], None]
OnStreamLost = Callable[[str], None]
OnConfirmed = Callable[[str, int], None]
OnRemoved = Callable[[str], None]
CORRELATION_METADATA = "x-correlation-id"
# Ticket: for each stream that was reachable when it was taken, the request id to wait for.
Ticket = Mapping[str, int]
# Before the first reconnect of an outage; doubled after each failed try, up to max_backoff_s.
FIRST_BACKOFF_S = 0.1
# A try is one connection attempt to a handful of controllers: cheap. Kept under the successor's
# start grace (CHAT_CONTROLLER_START_GRACE_S, 2 s), so a relay is usually back before a restarted
# controller starts consuming, and a restart costs its sockets no resync.
MAX_BACKOFF_S = 1.0
# Handshake lookups: this many calls out at once, each carrying up to this many users (the
# controller accepts 256). A lone socket's lookup goes out at once; in a storm, each call
# carries the handshakes that arrived while the earlier ones were out.
LOOKUPS_IN_FLIGHT = 4
LOOKUP_BATCH = 128
# A controller that vanishes without a TCP reset (its host lost power, a partition, a frozen
# process) leaves its stream looking UP for ever unless the relay pings: an unanswered ping ends
# the stream within about these two together (3 s), which is before the controller's Kafka
# session (4.5-6 s) ends and its partitions move, so the loss is seen and the sockets are told
# before a successor's deliveries move their cursors past what was in flight.
KEEPALIVE_MS = 1500
KEEPALIVE_TIMEOUT_MS = 1500


class StreamState(enum.Enum):
    DOWN = "down"
    OPENING = "opening"
    UP = "up"


@dataclass(slots=True)
class _Stream:
    """One controller: its channel, stub, and the state of its Subscribe stream."""

    address: str
    channel: grpc.aio.Channel
    stub: chat_pb2_grpc.ControllerAsyncStub
    state: StreamState = StreamState.DOWN
    call: grpc.aio.StreamStreamCall[chat_pb2.SubscribeRequest, chat_pb2.DeliveryBatch] | None = None
    task: asyncio.Task[None] | None = None
    outbox: asyncio.Queue[chat_pb2.SubscribeRequest] | None = None
    issued: int = 0
    confirmed: int = 0
    opening_id: int = 0
    # How many requests the opening took (more than one for over MAX_CHANNELS_PER_REQUEST).
    opening_parts: int = 1
    # Whether deliveries may have been missed since this stream was last UP.
    lost: bool = False
    # The current session got its first batch: the controller serves it, deliveries may be in
    # flight. A try that never got that far (nobody listening yet) had nothing to lose.
    served: bool = False
    goodbye: bool = False
    cutting: bool = False
    # Dropped from the link (the controller left or went silent): its task ends, no loss reported.
    removed: bool = False


class ControllerLink:
    def __init__(
        self,
        addresses: Sequence[str],
        relay_id: str,
        on_batch: OnBatch,
        current_channels: Callable[[], Iterable[str]],
        *,
        token: str,
        on_stream_up: OnStreamUp = lambda _address, _lost: None,
        on_stream_lost: OnStreamLost = lambda _address: None,
        on_confirmed: OnConfirmed = lambda _address, _request_id: None,
        on_removed: OnRemoved = lambda _address: None,
        call_timeout_s: float = 3.0,
        max_backoff_s: float = MAX_BACKOFF_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_lookup_batch: Callable[[int], None] = lambda _size: None,
    ) -> None:
        if not addresses:
            raise ValueError("at least one controller address is required")
        self._streams = [_new_stream(a, max_backoff_s) for a in addresses]
        self._relay_id = relay_id
        self._on_batch = on_batch
        self._current = current_channels
        self._on_stream_up = on_stream_up
        self._on_stream_lost = on_stream_lost
        self._on_confirmed = on_confirmed
        self._on_removed = on_removed
        self._token = call_metadata(token)
        self._timeout = call_timeout_s
        self._max_backoff = max_backoff_s
        self._sleep = sleep
        self._next = 0
        self._next_request = 0
        self._stopping = False
        self._started = False
        self._changed = asyncio.Event()
        self.reconnects = 0
        # Handshakes arriving while lookups are out share the next call (a connection storm).
        self._lookups: Coalescer[str, chat_pb2.GetMembershipsReply] = Coalescer(
            self._memberships_of,
            max_batch=LOOKUP_BATCH,
            in_flight=LOOKUPS_IN_FLIGHT,
            on_call=on_lookup_batch,
        )

    # -- state --

    @property
    def up(self) -> bool:
        """True while at least one controller stream is established."""
        return any(s.state is StreamState.UP for s in self._streams)

    @property
    def all_up(self) -> bool:
        return all(s.state is StreamState.UP for s in self._streams)

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self._streams]

    def state(self, address: str) -> StreamState:
        return self._stream(address).state

    def confirmed(self, address: str) -> int:
        """The highest request id the stream to ``address`` has confirmed (0: none yet)."""
        return self._stream(address).confirmed

    def _stream(self, address: str) -> _Stream:
        for stream in self._streams:
            if stream.address == address:
                return stream
        raise KeyError(address)

    def _notify(self) -> None:
        # Wake every waiter; each re-checks its own ticket.
        self._changed.set()
        self._changed = asyncio.Event()

    # -- lifecycle --

    def start(self) -> None:
        self._started = True
        for stream in self._streams:
            self._spawn(stream)

    def _spawn(self, stream: _Stream) -> None:
        stream.task = asyncio.create_task(self._run(stream), name=f"subscribe-{stream.address}")

    async def stop(self) -> None:
        self._stopping = True
        for stream in self._streams:
            await self._close(stream)
        self._notify()

    async def _close(self, stream: _Stream) -> None:
        if stream.call is not None:
            stream.call.cancel()
        if stream.task is not None:
            stream.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stream.task
        await stream.channel.close()

    # -- controllers coming and going (services/relay/discovery.py) --

    def add(self, address: str) -> bool:
        """Open a stream to a controller heard of at run time; False if it is known already.

        Its first request is the relay's whole channel set, like any reconnect; a controller
        that fanned out before it was subscribed says so in its first confirmation
        (``fanned_out_before``) and the sockets get a resync (``on_stream_up``). Sockets greeted
        while it is not UP yet are owed a resync from it (``unconfirmed`` names it).
        """
        if self._stopping or any(s.address == address for s in self._streams):
            return False
        stream = _new_stream(address, self._max_backoff)
        self._streams.append(stream)
        if self._started:
            self._spawn(stream)
        _log.info("controller_added", controller=address)
        self._notify()
        return True

    async def remove(self, address: str) -> bool:
        """Close the stream to a controller that left or went silent; False if unknown (or it
        is the last one, which stays: its partitions have nowhere else to be served from).

        A stream it served and never said goodbye on is a loss, as if it had broken: a
        controller that went silent while still streaming (frozen, cut off) may have had
        deliveries in flight, which its partitions' next owner will not fan out again.
        """
        stream = next((s for s in self._streams if s.address == address), None)
        if stream is None or len(self._streams) == 1:
            return False
        self._streams.remove(stream)
        lost = stream.state is StreamState.UP and stream.served and not stream.goodbye
        stream.removed = True
        await self._close(stream)
        _log.info("controller_removed", controller=address, lost=lost)
        self._notify()
        if lost and not self._stopping:
            self._on_stream_lost(address)
        # Sockets still owed a resync by it are paid by the caller now: its partitions moved to
        # a controller that streams to us, so a history read covers what it did not deliver.
        self._on_removed(address)
        return True

    def cut(self, address: str) -> None:
        """End one stream as a network failure would (tests and operators' drills)."""
        stream = self._stream(address)
        if stream.call is not None:
            stream.cutting = True
            stream.call.cancel()

    # -- subscriptions --

    def change(self, *, add: Sequence[str] = (), remove: Sequence[str] = ()) -> None:
        """Ask every reachable controller to add/remove channels (DOWN streams resend all later)."""
        if not add and not remove:
            return
        for stream in self._streams:
            if stream.outbox is None:
                continue
            for request in self._requests(add, remove):
                stream.outbox.put_nowait(request)
            stream.issued = self._next_request

    def _requests(
        self, add: Sequence[str], remove: Sequence[str], *, relay_id: str = ""
    ) -> list[chat_pb2.SubscribeRequest]:
        """The change as requests of at most ``MAX_CHANNELS_PER_REQUEST`` channels each (a
        controller refuses a larger one and ends the stream), numbered in order; at least one."""
        step = MAX_CHANNELS_PER_REQUEST
        requests = []
        for start in range(0, max(len(add), len(remove), 1), step):
            self._next_request += 1
            requests.append(
                chat_pb2.SubscribeRequest(
                    relay_id=relay_id if start == 0 else "",
                    add=add[start : start + step],
                    remove=remove[start : start + step],
                    request_id=self._next_request,
                )
            )
        return requests

    def ticket(self) -> Ticket:
        """What to wait for so that every change made so far is in force where it can be."""
        return {s.address: s.issued for s in self._streams if s.outbox is not None}

    def unconfirmed(self, ticket: Ticket) -> frozenset[str]:
        """Controllers that have not confirmed the ticket (including those unreachable at it)."""
        missing = []
        for stream in self._streams:
            wanted = ticket.get(stream.address)
            if wanted is None or stream.state is StreamState.DOWN or stream.confirmed < wanted:
                missing.append(stream.address)
        return frozenset(missing)

    async def wait(self, ticket: Ticket, timeout_s: float) -> frozenset[str]:
        """Wait until every stream in the ticket confirmed it, went down, or ``timeout_s`` passed.

        Returns the controllers that did not confirm: the caller owes its sockets a resync from
        each of them once that stream is UP again.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            pending = [
                s
                for s in self._streams
                if s.address in ticket
                and s.state is not StreamState.DOWN
                and s.confirmed < ticket[s.address]
            ]
            remaining = deadline - loop.time()
            if not pending or remaining <= 0 or self._stopping:
                return self.unconfirmed(ticket)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    # -- the streams --

    async def _run(self, stream: _Stream) -> None:
        backoff = FIRST_BACKOFF_S
        while not self._stopping and not stream.removed:
            try:
                await self._session(stream)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not stream.cutting or (task is not None and task.cancelling()):
                    raise
                _log.warning("controller_stream_cut", controller=stream.address)
            except Exception as exc:
                _log.warning("controller_stream_failed", controller=stream.address, error=repr(exc))
            finally:
                was_up = stream.state is StreamState.UP
                # Without the controller's goodbye, deliveries in flight are gone for this relay.
                stream.lost = stream.lost or (stream.served and not stream.goodbye)
                stream.state = StreamState.DOWN
                stream.outbox = None
                stream.call = None
                stream.cutting = False
                self._notify()
                if was_up and not stream.goodbye and not self._stopping and not stream.removed:
                    self._on_stream_lost(stream.address)
            if self._stopping or stream.removed:
                return
            if was_up:
                # A new outage, not the next try of the last one: a relay whose controllers
                # restart now and then must not wait longer for each restart than the last.
                backoff = FIRST_BACKOFF_S
            self.reconnects += 1
            await self._sleep(backoff * (0.5 + random.random()))  # noqa: S311 - jitter only
            backoff = min(backoff * 2, self._max_backoff)

    async def _session(self, stream: _Stream) -> None:
        call = stream.stub.Subscribe(metadata=((CORRELATION_METADATA, self._relay_id), self._token))
        stream.call = call
        stream.served = stream.goodbye = False
        # The whole set and the outbox appear together, with no await in between: a change made
        # from now on is queued behind this request; one made before is part of it.
        stream.outbox = asyncio.Queue()
        # A relay with more channels than one request may name opens with several; the stream
        # is UP once the controller confirmed the last.
        opening = self._requests(list(self._current()), (), relay_id=self._relay_id)
        for request in opening:
            stream.outbox.put_nowait(request)
        stream.opening_parts = len(opening)
        stream.opening_id = stream.issued = self._next_request
        stream.state = StreamState.OPENING
        writer = asyncio.create_task(self._write(stream.outbox, call))
        try:
            while True:
                batch = await call.read()
                if batch is grpc.aio.EOF:
                    status = await call.code()
                    raise Unavailable(f"controller ended the stream: {status}")
                assert isinstance(batch, chat_pb2.DeliveryBatch)
                stream.served = True
                if batch.deliveries:
                    self._on_batch(batch)
                if batch.confirmed:
                    self._confirmed(stream, batch)
                if batch.goodbye:
                    stream.goodbye = True
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    def _confirmed(self, stream: _Stream, batch: chat_pb2.DeliveryBatch) -> None:
        stream.confirmed = max(stream.confirmed, batch.confirmed)
        if stream.state is StreamState.OPENING:
            # Only the first request's confirmation says whether the controller fanned out before
            # this stream: keep it until the last.
            stream.lost = stream.lost or batch.fanned_out_before
        if stream.state is StreamState.OPENING and stream.confirmed >= stream.opening_id:
            stream.state = StreamState.UP
            # An opening in parts: what the controller fanned out to the later parts' channels
            # before their request arrived never came here, so the sockets resync.
            lost = stream.lost or stream.opening_parts > 1
            stream.lost = False
            _log.info("controller_stream_up", controller=stream.address, lost=lost)
            self._on_stream_up(stream.address, lost)
        elif stream.state is StreamState.UP:
            self._on_confirmed(stream.address, stream.confirmed)
        self._notify()

    async def _write(
        self,
        outbox: asyncio.Queue[chat_pb2.SubscribeRequest],
        call: grpc.aio.StreamStreamCall[chat_pb2.SubscribeRequest, chat_pb2.DeliveryBatch],
    ) -> None:
        while True:
            await call.write(await outbox.get())

    # -- queries --

    def _ordered(self) -> list[_Stream]:
        # Spread queries over controllers, starting with a different one each time.
        self._next = (self._next + 1) % len(self._streams)
        return self._streams[self._next :] + self._streams[: self._next]

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        """The secret, and this context's correlation id for the controller's log lines."""
        cid = current_correlation_id()
        return ((CORRELATION_METADATA, cid), self._token) if cid else (self._token,)

    async def _ask(self, rpc: str, request: Any) -> Any:
        """One query to the first controller that answers, in ``_ordered`` order."""
        for stream in self._ordered():
            try:
                return await getattr(stream.stub, rpc)(
                    request, timeout=self._timeout, metadata=self._metadata()
                )
            except grpc.aio.AioRpcError as exc:
                _log.warning("controller_query_failed", rpc=rpc, code=str(exc.code()))
        raise Unavailable(f"no controller answered {rpc}")

    async def memberships(self, user_id: str) -> chat_pb2.GetMembershipsReply:
        """The user's teams and unread counts for ``hello`` (or that the account is disabled)."""
        return await self._lookups.get(user_id)

    async def _memberships_of(
        self, user_ids: Sequence[str]
    ) -> Sequence[chat_pb2.GetMembershipsReply]:
        request = chat_pb2.GetMembershipsBatchRequest(user_ids=user_ids)
        reply = cast(
            chat_pb2.GetMembershipsBatchReply, await self._ask("GetMembershipsBatch", request)
        )
        return list(reply.replies)

    async def members(self, channel_id: str) -> chat_pb2.GetMembersReply:
        request = chat_pb2.GetMembersRequest(channel_id=channel_id)
        return cast(chat_pb2.GetMembersReply, await self._ask("GetMembers", request))

    async def check_attachment(
        self,
        attachment_id: str,
        channel_id: str,
        kind: chat_pb2.MessageType.ValueType,
        sender: str,
    ) -> chat_pb2.CheckAttachmentReply:
        request = chat_pb2.CheckAttachmentRequest(
            attachment_id=attachment_id, channel_id=channel_id, type=kind, sender=sender
        )
        return cast(chat_pb2.CheckAttachmentReply, await self._ask("CheckAttachment", request))

    async def message(self, channel_id: str, message_id: str) -> chat_pb2.GetMessageReply:
        request = chat_pb2.GetMessageRequest(channel_id=channel_id, message_id=message_id)
        return cast(chat_pb2.GetMessageReply, await self._ask("GetMessage", request))


def _new_stream(address: str, max_backoff_s: float) -> _Stream:
    # gRPC keeps its own reconnect backoff per channel (1 s growing to 120 s) and fails calls at
    # once while it runs, so without a cap a controller back after a long outage would wait up
    # to two minutes for the relay. Capped at the link's own backoff, the link's tries decide.
    backoff_ms = max(1, int(max_backoff_s * 1000))
    options = (
        ("grpc.initial_reconnect_backoff_ms", min(backoff_ms, int(FIRST_BACKOFF_S * 1000))),
        ("grpc.max_reconnect_backoff_ms", backoff_ms),
        ("grpc.keepalive_time_ms", KEEPALIVE_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        # gRPC 1.85 ends a call on an unanswered keepalive ping only by this, not the above.
        ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        ("grpc.keepalive_permit_without_calls", 1),
        # A quiet stream (no deliveries) must keep pinging: by default gRPC stops after two
        # pings without data in between.
        ("grpc.http2.max_pings_without_data", 0),
    )
    channel = grpc.aio.insecure_channel(address, options=options)
    return _Stream(address=address, channel=channel, stub=chat_pb2_grpc.ControllerStub(channel))
