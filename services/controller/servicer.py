"""The ``Controller`` gRPC service: relay Subscribe streams and the relays' authorization questions.

Subscribe is bidirectional: the first request names the relay (and may already add channels);
later requests add or remove channel_ids. Each request with a ``request_id`` is answered with a
``confirmed`` batch, queued behind everything routed before the change and ahead of everything
routed with it. The response side drains the stream's bounded queue. A stream ends with
RESOURCE_EXHAUSTED when its relay fell too far behind, INVALID_ARGUMENT on a malformed request,
UNAVAILABLE when the controller stops (after a ``goodbye`` batch when it could flush the queue
first), and OK when the relay half-closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
from grpc import aio

from chatcore.errors import ChatError, InvalidInput, Unavailable
from chatcore.logging import bind_context, get_logger, reset_context
from chatcore.messages import TYPE_NAMES
from chatcore.mongo import each_keyed
from chatcore.proto.chat.v1 import chat_pb2, chat_pb2_grpc
from services.controller.directory import Directory, attachment_problem
from services.controller.hooks import ControllerHooks
from services.controller.shutouts import tell_shut_outs
from services.controller.streams import CloseReason, RelayStream, StreamHub
from services.controller.validation import (
    checked_id,
    checked_ids,
    checked_relay_id,
    checked_user_batch,
    correlation_id,
)

Context = aio.ServicerContext[Any, Any]

_log = get_logger("controller.grpc")

_CLOSE_STATUS = {
    CloseReason.OVERFLOW: grpc.StatusCode.RESOURCE_EXHAUSTED,
    CloseReason.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    CloseReason.SHUTDOWN: grpc.StatusCode.UNAVAILABLE,
}


@contextlib.asynccontextmanager
async def _rpc(context: Context, method: str) -> AsyncIterator[None]:
    """Correlation id into the log context; project errors into gRPC status codes."""
    cid = correlation_id(context)
    tokens = bind_context(correlation_id=cid) if cid else {}
    try:
        yield
    except InvalidInput as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
    except Unavailable as exc:
        _log.warning("rpc_unavailable", method=method, error=exc.message)
        await context.abort(grpc.StatusCode.UNAVAILABLE, exc.message)
    except ChatError as exc:
        _log.error("rpc_failed", method=method, code=exc.code, error=exc.message)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")
    finally:
        if tokens:
            reset_context(tokens)


class ControllerServicer(chat_pb2_grpc.ControllerServicer):
    def __init__(
        self, hub: StreamHub, directory: Directory, hooks: ControllerHooks | None = None
    ) -> None:
        self._hub = hub
        self._directory = directory
        self._before_change = hooks.before_subscription_change if hooks else None
        self._before_write = hooks.before_stream_write if hooks else None

    async def Subscribe(
        self, request_iterator: AsyncIterator[chat_pb2.SubscribeRequest], context: Context
    ) -> AsyncIterator[chat_pb2.DeliveryBatch]:
        try:
            first = await anext(request_iterator)
        except StopAsyncIteration:
            return
        try:
            relay_id = checked_relay_id(first.relay_id)
            add = checked_ids(first.add, "add")
            remove = checked_ids(first.remove, "remove")
        except InvalidInput as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, exc.message)
        if self._before_change is not None:
            await self._before_change()
        stream = self._hub.open(relay_id)
        self._hub.update(stream, add=add, remove=remove)
        stream.confirm(first.request_id, fanned_out_before=self._hub.fanned_out)
        log = _log.bind(
            relay_id=relay_id, stream_id=stream.stream_id, correlation_id=correlation_id(context)
        )
        log.info("relay_subscribed", channels=len(add))
        reader = asyncio.create_task(self._read_updates(request_iterator, stream))
        # Events this relay may have missed while it had no stream here (shutouts.py).
        telling = asyncio.create_task(
            tell_shut_outs(self._directory, stream, now_ms=lambda: int(time.time() * 1000))
        )
        try:
            async for batch in stream.batches():
                if self._before_write is not None:
                    await self._before_write()
                yield batch
            if stream.reason == CloseReason.SHUTDOWN and stream.drained:
                # Everything routed to this stream went out: the relay's clients missed nothing.
                yield chat_pb2.DeliveryBatch(goodbye=True)
            log.info("relay_stream_ended", reason=stream.reason and stream.reason.value)
            status = _CLOSE_STATUS.get(stream.reason) if stream.reason else None
            if status is not None:
                await context.abort(status, stream.detail)
        finally:
            try:
                for task in (reader, telling):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            finally:
                self._hub.close(stream, CloseReason.ENDED)

    async def _read_updates(
        self, requests: AsyncIterator[chat_pb2.SubscribeRequest], stream: RelayStream
    ) -> None:
        """Apply the relay's add/remove requests until it half-closes or the call ends."""
        try:
            async for request in requests:
                try:
                    add = checked_ids(request.add, "add")
                    remove = checked_ids(request.remove, "remove")
                except InvalidInput as exc:
                    self._hub.close(stream, CloseReason.INVALID, exc.message)
                    return
                if self._before_change is not None:
                    await self._before_change()
                self._hub.update(stream, add=add, remove=remove)
                stream.confirm(request.request_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the call broke underneath: the response side ends it
            _log.info("relay_requests_failed", relay_id=stream.relay_id, error=type(exc).__name__)
        # The relay is done sending: let what is queued go out, then end the call.
        self._hub.close(stream, CloseReason.ENDED, drain=True)

    async def GetMemberships(
        self, request: chat_pb2.GetMembershipsRequest, context: Context
    ) -> chat_pb2.GetMembershipsReply:
        async with _rpc(context, "GetMemberships"):
            reply = await self._memberships(checked_id(request.user_id, "user_id"))
        return reply

    async def GetMembershipsBatch(
        self, request: chat_pb2.GetMembershipsBatchRequest, context: Context
    ) -> chat_pb2.GetMembershipsBatchReply:
        async with _rpc(context, "GetMembershipsBatch"):
            users = checked_user_batch(request.user_ids)
            distinct = await each_keyed(self._memberships, users)
            reply = chat_pb2.GetMembershipsBatchReply(replies=[distinct[u] for u in users])
        return reply

    async def _memberships(self, user_id: str) -> chat_pb2.GetMembershipsReply:
        """What a relay needs to greet the user's socket: teams, unread counts, or disabled."""
        # Both at once: a handshake storm waits on these two lookups.
        disabled, views = await asyncio.gather(
            self._directory.disabled(user_id), self._directory.memberships(user_id)
        )
        if disabled:
            return chat_pb2.GetMembershipsReply(disabled=True)
        # A set read whole at most once a second: almost always at hand, so no task of its own.
        ended = await self._directory.ended_sessions(user_id)
        unread = await self._directory.unread(user_id, [v.channel_id for v in views])
        return chat_pb2.GetMembershipsReply(
            ended_sessions=ended,
            memberships=[
                chat_pb2.Membership(channel_id=v.channel_id, active=v.active) for v in views
            ],
            unread=[
                chat_pb2.Unread(
                    channel_id=channel,
                    count=u.count,
                    mentions=u.mentions,
                    last_read_seq=u.last_read_seq,
                )
                for channel, u in unread.items()
            ],
        )

    async def GetMembers(
        self, request: chat_pb2.GetMembersRequest, context: Context
    ) -> chat_pb2.GetMembersReply:
        async with _rpc(context, "GetMembers"):
            team = await self._directory.members(checked_id(request.channel_id, "channel_id"))
            if team is None:
                reply = chat_pb2.GetMembersReply(found=False)
            else:
                reply = chat_pb2.GetMembersReply(
                    user_ids=team.user_ids, active=team.active, found=True
                )
        return reply

    async def CheckAttachment(
        self, request: chat_pb2.CheckAttachmentRequest, context: Context
    ) -> chat_pb2.CheckAttachmentReply:
        async with _rpc(context, "CheckAttachment"):
            attachment_id = checked_id(request.attachment_id, "attachment_id")
            channel_id = checked_id(request.channel_id, "channel_id")
            sender = checked_id(request.sender, "sender")
            kind = TYPE_NAMES.get(request.type)
            if kind is None or request.type == chat_pb2.MESSAGE_TYPE_TEXT:
                raise InvalidInput("type must be an attachment type (image, video, audio, file)")
            view = await self._directory.attachment(attachment_id)
            problem = attachment_problem(view, channel_id=channel_id, kind=kind, sender=sender)
            reply = chat_pb2.CheckAttachmentReply(ok=problem is None, reason=problem or "")
        return reply

    async def GetMessage(
        self, request: chat_pb2.GetMessageRequest, context: Context
    ) -> chat_pb2.GetMessageReply:
        async with _rpc(context, "GetMessage"):
            view = await self._directory.message(
                checked_id(request.channel_id, "channel_id"),
                checked_id(request.message_id, "message_id"),
            )
            if view is None:
                reply = chat_pb2.GetMessageReply(found=False)
            else:
                reply = chat_pb2.GetMessageReply(
                    found=True,
                    to=view.to,
                    sender=view.sender,
                    thread_id=view.thread_id or "",
                    deleted=view.deleted,
                )
        return reply
