"""Authorization of chat frames: membership, team state, DM recipients, attachments.

The socket's own channel map answers membership at once (it is kept current by membership
events and the periodic audit); member lists for DMs and attachment checks come from the
controllers through the narrow ``Authority`` interface. Member lists are cached per channel for
at most a minute, dropped on a membership event for that channel, and fetched once however many
frames ask at the same moment (single flight). A read that a membership event overtook (the
channel's ``generation`` moved while it was on its way) may predate the event: it is not cached,
and frames asking after the event wait for a read of their own.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from chatcore.errors import Forbidden, InvalidInput
from chatcore.messages import BROADCAST, TYPE_VALUES
from chatcore.proto.chat.v1 import chat_pb2
from services.relay.frames import ChatFrame, TypingFrame
from services.relay.hub import Session

MEMBERS_TTL_S = 60.0
# A root not found is looked up again after these pauses (1.55 s in all) before the reply is
# refused: an ack means Kafka has the root, not that a controller has stored it yet, and a
# client may reply the moment it has the ack.
ROOT_RETRY_S = (0.05, 0.1, 0.2, 0.4, 0.8)
_GENERATIONS_MAX = 100_000
# CheckAttachmentReply.reason when someone else uploaded the file (the controller's word).
NOT_UPLOADER = "not_uploader"


class Authority(Protocol):
    """What the gate asks the controllers (``ControllerLink`` in production)."""

    async def members(self, channel_id: str) -> chat_pb2.GetMembersReply: ...

    async def check_attachment(
        self,
        attachment_id: str,
        channel_id: str,
        kind: chat_pb2.MessageType.ValueType,
        sender: str,
    ) -> chat_pb2.CheckAttachmentReply: ...

    async def message(self, channel_id: str, message_id: str) -> chat_pb2.GetMessageReply: ...


def check_membership(session: Session, frame: ChatFrame | TypingFrame) -> None:
    """The sender must be a member of the channel, and the team must be active."""
    active = session.channels.get(frame.channel_id)
    if active is None:
        raise Forbidden("not a member of this channel")
    if not active:
        raise Forbidden("this team is deactivated")


class Gate:
    def __init__(
        self,
        authority: Authority,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._authority = authority
        self._clock = clock
        self._sleep = sleep
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._inflight: dict[str, asyncio.Future[frozenset[str]]] = {}
        # Per channel, a number that changes with every membership event for it (taken from one
        # counter, so a channel never gets a number back; forgetting them all is safe).
        self._generations: dict[str, int] = {}
        self._ticks = itertools.count(1)

    def generation(self, channel: str) -> int:
        """Changes with every membership event for ``channel``: a read started at one generation
        and finished at another may not know the latest event."""
        return self._generations.get(channel, 0)

    def forget(self, channels: list[str]) -> None:
        """Drop cached member lists (and reads on their way) after membership events."""
        if len(self._generations) > _GENERATIONS_MAX:
            self._generations.clear()  # reads on their way then look overtaken: re-read, safe
        for channel in channels:
            self._members.pop(channel, None)
            self._inflight.pop(channel, None)
            self._generations[channel] = next(self._ticks)

    def remember(self, channel: str, members: frozenset[str], generation: int) -> None:
        """A member list read by someone else (the audit), started at ``generation``: fresh for
        another TTL unless an event overtook it."""
        if generation == self.generation(channel):
            self._members[channel] = (self._clock(), members)

    async def members_of(self, channel: str) -> frozenset[str]:
        """The channel's members, from the cache or one shared fetch; ``Unavailable`` if none."""
        cached = self._members.get(channel)
        if cached is not None and self._clock() - cached[0] < MEMBERS_TTL_S:
            return cached[1]
        inflight = self._inflight.get(channel)
        if inflight is not None:
            return await asyncio.shield(inflight)
        future: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
        self._inflight[channel] = future
        generation = self.generation(channel)
        try:
            reply = await self._authority.members(channel)
            members = frozenset(reply.user_ids) if reply.found else frozenset()
            self.remember(channel, members, generation)
            future.set_result(members)
            return members
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else needs it
            raise
        finally:
            if self._inflight.get(channel) is future:
                del self._inflight[channel]

    async def check(self, session: Session, frame: ChatFrame | TypingFrame) -> None:
        """Raise ``Forbidden`` / ``InvalidInput`` / ``Unavailable`` unless the frame may go out
        (its thread, if any, is ``check_reply``'s business)."""
        check_membership(session, frame)
        if frame.to != BROADCAST and frame.to not in await self.members_of(frame.channel_id):
            raise Forbidden("the recipient is not a member of this team")
        if isinstance(frame, ChatFrame) and frame.type != "text":
            reply = await self._authority.check_attachment(
                frame.data, frame.channel_id, TYPE_VALUES[frame.type], session.user_id
            )
            if reply.reason == NOT_UPLOADER:
                raise Forbidden("only the uploader may send this attachment")
            if not reply.ok:
                raise InvalidInput(f"attachment not usable: {reply.reason or 'rejected'}")

    async def check_reply(self, session: Session, frame: ChatFrame) -> ChatFrame:
        """``check`` for a frame that may be a thread reply; returns it with ``thread_id`` set to
        the thread's root (a reply to a reply attaches to the root). The root must be a visible,
        undeleted message of the channel, and a reply has its root's ``to``: a reply in a DM's
        thread is a DM between the same two people (DESIGN 5b)."""
        if not frame.thread_id:
            await self.check(session, frame)
            return frame
        check_membership(session, frame)
        root_id, root = frame.thread_id, await self._stored(frame.channel_id, frame.thread_id)
        if root.found and root.thread_id:
            root_id = root.thread_id
            root = await self._authority.message(frame.channel_id, root_id)
        user = session.user_id
        if not root.found or (root.to != BROADCAST and user not in (root.to, root.sender)):
            raise InvalidInput("no such message to reply to in this channel")
        if root.deleted:
            raise InvalidInput("the thread's root message was deleted")
        if root.to == BROADCAST:
            expected = BROADCAST
        else:
            expected = root.sender if user == root.to else root.to
        if frame.to != expected:
            raise Forbidden(f"a reply in this thread must have to={expected!r}")
        resolved = dataclasses.replace(frame, thread_id=root_id)
        await self.check(session, dataclasses.replace(resolved, thread_id=""))
        return resolved

    async def _stored(self, channel_id: str, message_id: str) -> chat_pb2.GetMessageReply:
        """The message, looked up again a few times over 1.5 s while it is not found (it may be
        on its way from Kafka to the database). The socket's later frames wait behind it, in
        order; only a reply to a message that does not exist waits the whole time."""
        found = await self._authority.message(channel_id, message_id)
        for pause in ROOT_RETRY_S:
            if found.found:
                break
            await self._sleep(pause)
            found = await self._authority.message(channel_id, message_id)
        return found
