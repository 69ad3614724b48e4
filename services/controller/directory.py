"""What relays ask before they accept a frame: memberships, team members, attachment checks.

Read-only views of collections the management and auth services own (``memberships``, ``teams``,
``attachments``, ``users``), behind a narrow interface with a MongoDB implementation. Every id
reaching a filter has passed ``validation.checked_id``, so no caller value can become a query
operator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.memberships import memberships_of
from chatcore.mongo import Document, database_unavailable
from chatcore.read_states import UnreadReader
from chatcore.single_flight import SingleFlight
from chatcore.unread import Unread

NOT_FOUND = "not_found"
WRONG_TEAM = "wrong_team"
NOT_READY = "not_ready"
WRONG_TYPE = "wrong_type"
NOT_UPLOADER = "not_uploader"


@dataclass(frozen=True, slots=True)
class MembershipView:
    """One team a user belongs to, and whether it is active (its members may send)."""

    channel_id: str
    active: bool


@dataclass(frozen=True, slots=True)
class TeamMembers:
    user_ids: tuple[str, ...]
    active: bool


@dataclass(frozen=True, slots=True)
class AttachmentView:
    attachment_id: str
    team_id: str
    kind: str
    status: str
    uploader: str


@dataclass(frozen=True, slots=True)
class ShutOut:
    """Who may hold no socket now: disabled accounts, and each user's ended logins."""

    disabled: frozenset[str]
    ended: dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class MessageView:
    """Enough of a stored message to check a thread reply against it."""

    to: str
    sender: str
    thread_id: str | None
    deleted: bool


class Directory(Protocol):
    async def memberships(self, user_id: str) -> list[MembershipView]: ...

    async def unread(self, user_id: str, channel_ids: Sequence[str]) -> dict[str, Unread]:
        """What the user has not read in each of these channels."""

    async def message(self, channel_id: str, message_id: str) -> MessageView | None:
        """A message of the channel by id; None when the channel has no such message."""

    async def disabled(self, user_id: str) -> bool:
        """True when the account exists and is disabled (as of at most a second ago)."""

    async def ended_sessions(self, user_id: str) -> tuple[str, ...]:
        """The user's logins ended while their tokens live (as of at most a second ago)."""

    async def shut_out(self) -> ShutOut:
        """The accounts disabled while an access token issued before could still live, and every
        ended login whose tokens live, both read now (after the stream they are for opened, so
        whatever event it may have missed is in them: the documents precede their events)."""

    async def members(self, channel_id: str) -> TeamMembers | None:
        """None when there is no such team."""

    async def attachment(self, attachment_id: str) -> AttachmentView | None: ...


def attachment_problem(
    view: AttachmentView | None, *, channel_id: str, kind: str, sender: str
) -> str | None:
    """Why ``sender`` may not send an attachment as ``kind`` in ``channel_id``; None if they may."""
    if view is None:
        return NOT_FOUND
    if view.team_id != channel_id:
        return WRONG_TEAM
    # Only the uploader may post it: an attachment id seen in a DM must not be re-posted to the
    # team (or to anyone) by someone else, which would make a private file readable.
    if view.uploader != sender:
        return NOT_UPLOADER
    if view.status != s.READY:
        return NOT_READY
    if view.kind != kind:
        return WRONG_TYPE
    return None


def _active(doc: Document) -> bool:
    # Teams are active unless explicitly deactivated.
    return doc.get(s.TEAM_ACTIVE, True) is not False


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


class DisabledAccounts:
    """The set of disabled accounts, read whole at most every ``max_age_s``.

    A handshake asks whether its user is disabled; one lookup per handshake was a third of a
    connection storm's database work. The set is small and one indexed query reads it. It may be
    up to ``max_age_s`` old: a socket opened in that window after a disable is closed by the
    relays, which also refuse the user for a while after the ``user_disabled`` event (see
    services/relay/connection.py), so no new socket outlives the disable by more than that.
    """

    def __init__(
        self,
        users: AsyncCollection[Document],
        *,
        max_age_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._users = users
        # One read for every handshake waiting meanwhile, reused for max_age_s.
        self._ids = SingleFlight(self._read, max_age_s=max_age_s, clock=clock)

    async def contains(self, user_id: str) -> bool:
        return user_id in await self._ids.get(None)

    async def since(self, moment: datetime) -> frozenset[str]:
        """Disabled since ``moment``, read now (not the cached set: an account enabled again a
        moment ago must not be told disabled)."""
        # Equality first (FerretDB pushes it down); the time is filtered from that small set.
        return await self._ids_where({s.USER_DISABLED: True, s.USER_DISABLED_AT: {"$gt": moment}})

    async def _read(self, _: None) -> frozenset[str]:
        return await self._ids_where({s.USER_DISABLED: True})

    async def _ids_where(self, query: Document) -> frozenset[str]:
        try:
            cursor = self._users.find(query, {s.ID: 1})
            return frozenset([str(doc[s.ID]) async for doc in cursor])
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc


class EndedSessions:
    """The logins ended while their access tokens live, by user, read whole at most every
    ``max_age_s`` (services/auth/sessions.py writes them).

    For the same reason as ``DisabledAccounts``: a handshake must not cost a lookup of its own.
    The collection holds the logouts of the last hour or so (the auth service's sweep forgets a
    login once its tokens expired). A socket opened in the window before a read sees a logout is
    closed by the relays on the ``session_ended`` event, and they refuse that login for a while
    after it (services/relay/connection.py).
    """

    def __init__(
        self,
        ended: AsyncCollection[Document],
        *,
        max_age_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._ended = ended
        self._wall_clock = wall_clock
        self._by_user = SingleFlight(self._read, max_age_s=max_age_s, clock=clock)

    async def of(self, user_id: str) -> tuple[str, ...]:
        return (await self._by_user.get(None)).get(user_id, ())

    async def read_now(self) -> dict[str, tuple[str, ...]]:
        """By user, read now: a stream opening must see every logout whose event it may have
        missed, and the cached read may predate the last second's."""
        return await self._read(None)

    async def _read(self, _: None) -> dict[str, tuple[str, ...]]:
        now = self._wall_clock()
        by_user: dict[str, list[str]] = {}
        try:
            # An ended login's expired tokens are refused anyway (MongoDB answers the range from
            # the index; FerretDB reads the whole collection, which the sweep bounds).
            cursor = self._ended.find({s.ENDED_UNTIL: {"$gt": now}}, {s.ENDED_USER_ID: 1})
            async for doc in cursor:
                by_user.setdefault(str(doc.get(s.ENDED_USER_ID)), []).append(str(doc[s.ID]))
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return {user: tuple(sids) for user, sids in by_user.items()}


# A hello's unread counts may use a channel head read this long ago: the stored heads already
# trail the fan-out by a checkpoint (CHAT_CONTROLLER_STATE_FLUSH_MS), and a reconnect storm of a
# team's members then reads its head a few times instead of once per member.
HEAD_MAX_AGE_S = 0.5


class MongoDirectory:
    def __init__(
        self,
        db: AsyncDatabase[Document],
        *,
        disabled_max_age_s: float = 1.0,
        head_max_age_s: float = HEAD_MAX_AGE_S,
        token_lifetime_s: float = 905.0,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._db = db
        self._token_lifetime_s = token_lifetime_s
        self._wall_clock = wall_clock
        self._teams = db[s.TEAMS]
        self._attachments = db[s.ATTACHMENTS]
        self._users = db[s.USERS]
        self._unread = UnreadReader(db, head_max_age_s=head_max_age_s)
        self._disabled = DisabledAccounts(self._users, max_age_s=disabled_max_age_s)
        self._ended = EndedSessions(db[s.ENDED_SESSIONS], max_age_s=disabled_max_age_s)

    async def memberships(self, user_id: str) -> list[MembershipView]:
        # The membership index, not the team documents: one small document per team instead of
        # every team whole (services/management/membership_index.py).
        return [
            MembershipView(channel_id=entry.team_id, active=entry.active)
            for entry in await memberships_of(self._db, user_id)
        ]

    async def disabled(self, user_id: str) -> bool:
        return await self._disabled.contains(user_id)

    async def ended_sessions(self, user_id: str) -> tuple[str, ...]:
        return await self._ended.of(user_id)

    async def shut_out(self) -> ShutOut:
        # Only an account disabled within an access token's lifetime can still hold a socket.
        recent = self._wall_clock() - timedelta(seconds=self._token_lifetime_s)
        disabled, ended = await asyncio.gather(self._disabled.since(recent), self._ended.read_now())
        return ShutOut(disabled=disabled, ended=ended)

    async def unread(self, user_id: str, channel_ids: Sequence[str]) -> dict[str, Unread]:
        return await self._unread.unread(user_id, channel_ids)

    async def message(self, channel_id: str, message_id: str) -> MessageView | None:
        try:
            doc = await self._db[s.MESSAGES].find_one(
                {s.MESSAGE_ID: message_id},
                {
                    s.MESSAGE_CHANNEL_ID: 1,
                    s.MESSAGE_TO: 1,
                    s.MESSAGE_FROM: 1,
                    s.MESSAGE_THREAD_ID: 1,
                    s.MESSAGE_DELETED: 1,
                },
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        if doc is None or doc.get(s.MESSAGE_CHANNEL_ID) != channel_id:
            return None
        thread = doc.get(s.MESSAGE_THREAD_ID)
        return MessageView(
            to=str(doc.get(s.MESSAGE_TO, "")),
            sender=str(doc.get(s.MESSAGE_FROM, "")),
            thread_id=thread if isinstance(thread, str) and thread else None,
            deleted=doc.get(s.MESSAGE_DELETED) is True,
        )

    async def members(self, channel_id: str) -> TeamMembers | None:
        try:
            doc = await self._teams.find_one(
                {s.ID: channel_id}, {s.TEAM_MEMBERS: 1, s.TEAM_ACTIVE: 1}
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        if doc is None:
            return None
        return TeamMembers(user_ids=_strings(doc.get(s.TEAM_MEMBERS)), active=_active(doc))

    async def attachment(self, attachment_id: str) -> AttachmentView | None:
        try:
            doc = await self._attachments.find_one(
                {s.ID: attachment_id},
                {
                    s.ATTACHMENT_TEAM_ID: 1,
                    s.ATTACHMENT_KIND: 1,
                    s.ATTACHMENT_STATUS: 1,
                    s.ATTACHMENT_UPLOADER: 1,
                },
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        if doc is None:
            return None
        return AttachmentView(
            attachment_id=attachment_id,
            team_id=str(doc.get(s.ATTACHMENT_TEAM_ID, "")),
            kind=str(doc.get(s.ATTACHMENT_KIND, "")),
            status=str(doc.get(s.ATTACHMENT_STATUS, "")),
            uploader=str(doc.get(s.ATTACHMENT_UPLOADER, "")),
        )
