"""The relay's side of the controllers: one Subscribe stream per controller, plus unary queries.

Every controller owns some partitions, so the relay subscribes to all of them with the same set of
channel_ids. After a stream breaks it reconnects with backoff and resends the whole set: the
controller keeps no state about a relay between streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable, Sequence

import grpc

from chatcore.errors import Unavailable
from chatcore.logging import current_correlation_id, get_logger
from chatcore.proto.chat.v1 import chat_pb2, chat_pb2_grpc

_log = get_logger("relay.controller_link")

OnBatch = Callable[[chat_pb2.DeliveryBatch], None]
CORRELATION_METADATA = "x-correlation-id"


def _metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying this context's correlation id to the controller's log lines."""
    cid = current_correlation_id()
    return ((CORRELATION_METADATA, cid),) if cid else ()


class _DroppedAsSlow(Exception):
    """The controller dropped our stream because we fell behind (RESOURCE_EXHAUSTED)."""


def _dropped_as_slow(exc: BaseException) -> bool:
    if isinstance(exc, _DroppedAsSlow):
        return True
    return (
        isinstance(exc, grpc.aio.AioRpcError) and exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    )


class _Stream:
    """One controller: its channel, stub and the task that keeps its Subscribe stream up."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = grpc.aio.insecure_channel(address)
        self.stub: chat_pb2_grpc.ControllerAsyncStub = chat_pb2_grpc.ControllerStub(self.channel)
        self.call: (
            grpc.aio.StreamStreamCall[chat_pb2.SubscribeRequest, chat_pb2.DeliveryBatch] | None
        ) = None
        self.up = False
        self.task: asyncio.Task[None] | None = None
        self.outbox: asyncio.Queue[chat_pb2.SubscribeRequest] = asyncio.Queue()


class ControllerLink:
    def __init__(
        self,
        addresses: Sequence[str],
        relay_id: str,
        on_batch: OnBatch,
        current_channels: Callable[[], Iterable[str]],
        *,
        on_lost_deliveries: Callable[[], None] = lambda: None,
        call_timeout_s: float = 3.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        if not addresses:
            raise ValueError("at least one controller address is required")
        self._streams = [_Stream(a) for a in addresses]
        self._relay_id = relay_id
        self._on_batch = on_batch
        self._current = current_channels
        self._on_lost = on_lost_deliveries
        self._timeout = call_timeout_s
        self._max_backoff = max_backoff_s
        self._next = 0
        self._stopping = False
        self.reconnects = 0

    @property
    def up(self) -> bool:
        """True while at least one controller stream is established."""
        return any(s.up for s in self._streams)

    @property
    def all_up(self) -> bool:
        return all(s.up for s in self._streams)

    def start(self) -> None:
        for stream in self._streams:
            stream.task = asyncio.create_task(self._run(stream), name=f"subscribe-{stream.address}")

    async def stop(self) -> None:
        self._stopping = True
        for stream in self._streams:
            if stream.call is not None:
                stream.call.cancel()
            if stream.task is not None:
                stream.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stream.task
            await stream.channel.close()

    def subscribe(self, channels: Sequence[str]) -> None:
        if channels:
            self._send(chat_pb2.SubscribeRequest(add=channels))

    def unsubscribe(self, channels: Sequence[str]) -> None:
        if channels:
            self._send(chat_pb2.SubscribeRequest(remove=channels))

    def _send(self, request: chat_pb2.SubscribeRequest) -> None:
        for stream in self._streams:
            # A stream that is down resends the whole set when it reconnects; queueing deltas
            # for it would only replay stale changes.
            if stream.up:
                stream.outbox.put_nowait(request)

    async def _run(self, stream: _Stream) -> None:
        backoff = 0.1
        while not self._stopping:
            try:
                await self._session(stream)
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.warning("controller_stream_failed", controller=stream.address, error=repr(exc))
                if _dropped_as_slow(exc):
                    # The controller went on without us: deliveries in between are gone for this
                    # relay, so its clients must resume from history.
                    self._on_lost()
            finally:
                stream.up = False
                stream.call = None
            if self._stopping:
                return
            self.reconnects += 1
            await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311 - jitter only
            backoff = min(backoff * 2, self._max_backoff)

    async def _session(self, stream: _Stream) -> None:
        call = stream.stub.Subscribe(metadata=((CORRELATION_METADATA, self._relay_id),))
        stream.call = call
        stream.outbox = asyncio.Queue()
        await call.write(
            chat_pb2.SubscribeRequest(relay_id=self._relay_id, add=list(self._current()))
        )
        stream.up = True
        _log.info("controller_stream_up", controller=stream.address)
        writer = asyncio.create_task(self._write(stream, call))
        try:
            while True:
                batch = await call.read()
                if batch is grpc.aio.EOF:
                    status = await call.code()
                    if status == grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise _DroppedAsSlow()
                    raise Unavailable(f"controller ended the stream: {status}")
                assert isinstance(batch, chat_pb2.DeliveryBatch)
                self._on_batch(batch)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer

    async def _write(
        self,
        stream: _Stream,
        call: grpc.aio.StreamStreamCall[chat_pb2.SubscribeRequest, chat_pb2.DeliveryBatch],
    ) -> None:
        while True:
            request = await stream.outbox.get()
            await call.write(request)

    def _stubs(self) -> list[chat_pb2_grpc.ControllerAsyncStub]:
        # Spread queries over controllers, starting with a different one each time.
        self._next = (self._next + 1) % len(self._streams)
        ordered = self._streams[self._next :] + self._streams[: self._next]
        return [s.stub for s in ordered]

    async def memberships(self, user_id: str) -> list[chat_pb2.Membership]:
        request = chat_pb2.GetMembershipsRequest(user_id=user_id)
        for stub in self._stubs():
            try:
                reply = await stub.GetMemberships(
                    request, timeout=self._timeout, metadata=_metadata()
                )
                return list(reply.memberships)
            except grpc.aio.AioRpcError as exc:
                _log.warning("controller_query_failed", rpc="GetMemberships", code=str(exc.code()))
        raise Unavailable("no controller answered GetMemberships")

    async def members(self, channel_id: str) -> chat_pb2.GetMembersReply:
        request = chat_pb2.GetMembersRequest(channel_id=channel_id)
        for stub in self._stubs():
            try:
                reply: chat_pb2.GetMembersReply = await stub.GetMembers(
                    request, timeout=self._timeout, metadata=_metadata()
                )
                return reply
            except grpc.aio.AioRpcError as exc:
                _log.warning("controller_query_failed", rpc="GetMembers", code=str(exc.code()))
        raise Unavailable("no controller answered GetMembers")

    async def check_attachment(
        self, attachment_id: str, channel_id: str, kind: chat_pb2.MessageType.ValueType
    ) -> chat_pb2.CheckAttachmentReply:
        request = chat_pb2.CheckAttachmentRequest(
            attachment_id=attachment_id, channel_id=channel_id, type=kind
        )
        for stub in self._stubs():
            try:
                reply: chat_pb2.CheckAttachmentReply = await stub.CheckAttachment(
                    request, timeout=self._timeout, metadata=_metadata()
                )
                return reply
            except grpc.aio.AioRpcError as exc:
                _log.warning("controller_query_failed", rpc="CheckAttachment", code=str(exc.code()))
        raise Unavailable("no controller answered CheckAttachment")
