"""What relays ask before they accept a frame: memberships, team members, attachment checks.

Read-only views of collections the management and auth services own (``memberships``, ``teams``,
``attachments``, ``users``), behind a narrow interface with a MongoDB implementation. Every id
reaching a filter has passed ``validation.checked_id``, so no caller value can become a query
operator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.memberships import memberships_of
from chatcore.mongo import Document, database_unavailable

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


class Directory(Protocol):
    async def memberships(self, user_id: str) -> list[MembershipView]: ...

    async def disabled(self, user_id: str) -> bool:
        """True when the account exists and is disabled (as of at most a second ago)."""

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
        self._max_age_s = max_age_s
        self._clock = clock
        self._ids: frozenset[str] = frozenset()
        self._read_at = float("-inf")
        self._reading: asyncio.Task[frozenset[str]] | None = None

    async def contains(self, user_id: str) -> bool:
        if self._clock() - self._read_at > self._max_age_s:
            if self._reading is None:
                # One read for every handshake waiting meanwhile.
                self._reading = asyncio.ensure_future(self._read())
            reading = self._reading
            try:
                self._ids = await asyncio.shield(reading)
            finally:
                if self._reading is reading and reading.done():
                    self._reading = None
        return user_id in self._ids

    async def _read(self) -> frozenset[str]:
        started = self._clock()
        try:
            cursor = self._users.find({s.USER_DISABLED: True}, {s.ID: 1})
            ids = frozenset([str(doc[s.ID]) async for doc in cursor])
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        self._read_at = started
        return ids


class MongoDirectory:
    def __init__(self, db: AsyncDatabase[Document], *, disabled_max_age_s: float = 1.0) -> None:
        self._db = db
        self._teams = db[s.TEAMS]
        self._attachments = db[s.ATTACHMENTS]
        self._users = db[s.USERS]
        self._disabled = DisabledAccounts(self._users, max_age_s=disabled_max_age_s)

    async def memberships(self, user_id: str) -> list[MembershipView]:
        # The membership index, not the team documents: one small document per team instead of
        # every team whole (services/management/membership_index.py).
        return [
            MembershipView(channel_id=entry.team_id, active=entry.active)
            for entry in await memberships_of(self._db, user_id)
        ]

    async def disabled(self, user_id: str) -> bool:
        return await self._disabled.contains(user_id)

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
