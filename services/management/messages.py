"""The message life cycle over REST (DESIGN 5b): edit, delete, react, thread replies, the changes
feed and read positions.

A change is decided here (``message_rules.py``) against the message as stored, then written to the
channel's log, ``chat.messages.v1`` keyed by the team, and answered only once Kafka has it: the
controller applies it in the channel's order, stores it, fans it out and commits (it drops one
that no longer applies by then). Nothing here writes a message itself. Read positions go the same
way, so the controller that owns the channel is the only writer of its read state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from chatcore import schema as s
from chatcore.errors import Unavailable
from chatcore.kafka import MESSAGES_TOPIC
from chatcore.logging import current_correlation_id, get_logger
from chatcore.message_state import StoredMessage
from chatcore.messages import CORRELATION_HEADER, KIND_CHANGE, KIND_HEADER, KIND_READ, to_datetime
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.unread import ChannelHead
from services.management import roles
from services.management.limits import ScanSlot, unbounded_scans
from services.management.message_rules import (
    check_delete,
    check_edit,
    needs_reaction_change,
    visible_message,
)
from services.management.model import Role
from services.management.store import ChangeEntry, MessageStore, TeamStore
from services.management.validation import AfterQuery

_log = get_logger("management.messages")


class Withdrawer(Protocol):
    async def withdraw(self, attachment_id: str) -> None:
        """The attachment's message is being deleted: make it undownloadable (idempotent)."""


class HeadReader(Protocol):
    async def head(self, channel_id: str) -> ChannelHead: ...


class LogSender(Protocol):
    """The part of the Kafka producer used here: send and wait for the broker's ack."""

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> Any: ...


@dataclass(frozen=True, slots=True)
class ForwardPage:
    """A forward page: ``next_cursor`` is the last seq (or the query's, when empty)."""

    items: tuple[StoredMessage, ...] | tuple[ChangeEntry, ...]
    has_more: bool
    next_cursor: int

    def meta(self) -> dict[str, object]:
        return {
            "direction": "forward",
            "has_more": self.has_more,
            "next_cursor": self.next_cursor,
            "count": len(self.items),
        }


class MessageService:
    def __init__(
        self,
        *,
        teams: TeamStore,
        messages: MessageStore,
        attachments: Withdrawer,
        log: LogSender,
        edit_window_s: float,
        send_timeout_s: float,
        clock: Callable[[], float] = time.time,
        scan_slot: ScanSlot = unbounded_scans,
    ) -> None:
        self._teams = teams
        self._messages = messages
        self._attachments = attachments
        # Held around a walk over a channel's history (the API's scan slots), per caller.
        self._scan_slot = scan_slot
        self._log = log
        self._window = timedelta(seconds=edit_window_s)
        self._send_timeout_s = send_timeout_s
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    async def _visible(
        self, team_id: str, message_id: str, caller: str, *, changing: bool = False
    ) -> tuple[Role, StoredMessage]:
        team = await self._teams.get(team_id)
        role = roles.visible_role(team, caller)
        message = visible_message(
            await self._messages.message(team_id, message_id), team_id, caller
        )
        if changing:
            assert team is not None
            roles.check_writable(team)
        return role, message

    async def _append(self, team_id: str, kind: str, value: bytes) -> None:
        headers = [(KIND_HEADER, kind.encode())]
        correlation = current_correlation_id()
        if correlation:
            headers.append((CORRELATION_HEADER, correlation.encode()))
        try:
            async with asyncio.timeout(self._send_timeout_s):
                await self._log.send_and_wait(
                    MESSAGES_TOPIC, value=value, key=team_id.encode(), headers=headers
                )
        except Exception as exc:
            # The change may or may not have landed: the client retries, and a retry is
            # harmless (an edit to the same text, a reaction already there, a read position).
            _log.warning("log_append_failed", team_id=team_id, kind=kind, error=type(exc).__name__)
            raise Unavailable("the change could not be written; try again") from None

    async def _change(
        self,
        team_id: str,
        message_id: str,
        caller: str,
        kind: int,
        *,
        data: str = "",
        emoji: str = "",
    ) -> int:
        now_ms = int(self._clock() * 1000)
        change = chat_pb2.MessageChange(
            id=uuid.uuid4().hex,
            channel_id=team_id,
            message_id=message_id,
            kind=kind,  # type: ignore[arg-type]
            actor=caller,
            data=data,
            emoji=emoji,
            ts_ms=now_ms,
        )
        await self._append(team_id, KIND_CHANGE, change.SerializeToString())
        return now_ms

    async def edit(self, team_id: str, message_id: str, data: str, *, caller: str) -> StoredMessage:
        """The message as the edit makes it, once Kafka has the edit."""
        role, message = await self._visible(team_id, message_id, caller, changing=True)
        check_edit(message, caller, role, self._now(), self._window)
        at = await self._change(team_id, message_id, caller, chat_pb2.CHANGE_KIND_EDIT, data=data)
        return dataclasses.replace(message, data=data, edited_ts=to_datetime(at))

    async def delete(self, team_id: str, message_id: str, *, caller: str) -> None:
        role, message = await self._visible(team_id, message_id, caller, changing=True)
        if message.deleted:
            return  # already a tombstone: nothing to do, the same answer
        check_delete(message, caller, role, self._now(), self._window)
        if message.type != s.TEXT and not await self._messages.carried_besides(
            team_id, message.data, message.id
        ):
            # First: once the delete is in the log the message no longer names its attachment,
            # and a retry of a failed request could not find it again. Not while another
            # message (the same file sent again, to the team or in a DM) still carries it.
            await self._attachments.withdraw(message.data)
        await self._change(team_id, message_id, caller, chat_pb2.CHANGE_KIND_DELETE)

    async def react(
        self, team_id: str, message_id: str, emoji: str, *, caller: str, add: bool
    ) -> None:
        """Add or remove the caller's reaction; idempotent (a repeat changes nothing)."""
        _, message = await self._visible(team_id, message_id, caller, changing=True)
        if not needs_reaction_change(message, caller, emoji, add):
            return
        kind = chat_pb2.CHANGE_KIND_REACTION_ADD if add else chat_pb2.CHANGE_KIND_REACTION_REMOVE
        await self._change(team_id, message_id, caller, kind, emoji=emoji)

    async def thread(
        self, team_id: str, root_id: str, query: AfterQuery, *, caller: str
    ) -> ForwardPage:
        """The replies to a message the caller may see, ascending."""
        await self._visible(team_id, root_id, caller)
        found = await self._messages.thread(
            team_id, root_id, caller, after=query.after, limit=query.limit + 1
        )
        page = tuple(found[: query.limit])
        cursor = page[-1].seq if page else query.after
        return ForwardPage(page, len(found) > query.limit, cursor)

    async def changes(self, team_id: str, query: AfterQuery, *, caller: str) -> ForwardPage:
        """The channel's log after ``after`` as the caller may see it: the resume call."""
        roles.member_team(await self._teams.get(team_id), caller)
        # One more than the page and one for a pair: entries sharing a seq (a reply and its
        # root's thread change, never more) are never split. A page that would end between
        # them ends before them, or, when they are all it holds (limit=1), holds both.
        walk = await self._messages.changes(
            team_id, caller, after=query.after, limit=query.limit + 2
        )
        if walk.resume_at is not None and len(walk.found) <= query.limit:
            # Stopped by its bound within a page (a pair shares a bucket, so none is split):
            # everything up to where it stopped is here, and the next page goes on from there.
            return ForwardPage(tuple(walk.found), True, walk.resume_at)
        found = walk.found
        page = tuple(found[: query.limit])
        if len(found) > query.limit and page and found[query.limit].seq == page[-1].seq:
            cut = page[-1].seq
            page = tuple(e for e in page if e.seq != cut) or tuple(found[: query.limit + 1])
        cursor = page[-1].seq if page else query.after
        return ForwardPage(page, len(found) > len(page) or walk.resume_at is not None, cursor)

    async def mark_read(self, team_id: str, seq: int, *, caller: str) -> None:
        """Move the caller's read position to ``seq`` (normally a record they saw). Any other seq
        reads up to it, but never beyond the newest message the caller may see: a made-up seq
        past it is taken as that message, so nothing stored later counts as read, and the
        position never tells where other members' DMs are."""
        roles.member_team(await self._teams.get(team_id), caller)
        # A record the caller saw is stored (before it was fanned out), and its count with it.
        # The channel's head is saved behind the fan-out, up to a checkpoint late, and counts
        # others' DMs: neither may set the position.
        count = await self._messages.count_at(team_id, seq, caller)
        if count is None:
            async with self._scan_slot(caller):
                walk = await self._messages.page(team_id, caller, before=None, after=None, limit=1)
            if not walk.found:
                # Nothing the caller may see (or nothing within the walk's bound, which only a
                # channel of others' DMs reaches): nothing to have read.
                return
            newest = walk.found[0]
            if seq >= newest.seq:
                seq, count = newest.seq, newest.count
            else:
                # No record the caller may see: the count of the channel's last message at or
                # below (a hidden record carries that same count). Never a walk over what the
                # caller may see, whose length others' DMs would set.
                count = await self._messages.count_before(team_id, seq)
        marker = chat_pb2.ReadMarker(
            channel_id=team_id,
            user_id=caller,
            seq=seq,
            count=count,
            ts_ms=int(self._clock() * 1000),
        )
        await self._append(team_id, KIND_READ, marker.SerializeToString())


class JoinMarkers:
    """A new member's read position: the team's last message when they were added, so what was
    said before they joined does not count as unread. Written to the channel's log like any read
    position (the controller owning the channel is its one writer); sent by the outbox after the
    ``added`` event, so a failure leaves both to be sent again (a replay moves nothing back)."""

    def __init__(self, heads: HeadReader, log: LogSender, *, send_timeout_s: float) -> None:
        self._heads = heads
        self._log = log
        self._send_timeout_s = send_timeout_s

    async def joined(self, team_id: str, user_id: str) -> None:
        head = await self._heads.head(team_id)
        # The team's last message, not the channel's last record: that may be a DM between two
        # others, and the newcomer's position (shown by GET /v1/teams/{id}) must not tell where.
        if head.count_seq < 0:
            return  # no team message yet: everything said from now on is unread to them
        marker = chat_pb2.ReadMarker(
            channel_id=team_id,
            user_id=user_id,
            seq=head.count_seq,
            count=head.count,
            ts_ms=int(time.time() * 1000),
            joined=True,
        )
        async with asyncio.timeout(self._send_timeout_s):
            await self._log.send_and_wait(
                MESSAGES_TOPIC,
                value=marker.SerializeToString(),
                key=team_id.encode(),
                headers=[(KIND_HEADER, KIND_READ.encode())],
            )
