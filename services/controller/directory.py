"""What relays ask before they accept a frame: memberships, team members, attachment checks.

Read-only views of collections the management and auth services own (``teams``, ``attachments``,
``users``), behind a
narrow interface with a MongoDB implementation. Every id reaching a filter has passed
``validation.checked_id``, so no caller value can become a query operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.mongo import Document, database_unavailable

NOT_FOUND = "not_found"
WRONG_TEAM = "wrong_team"
NOT_READY = "not_ready"
WRONG_TYPE = "wrong_type"
NOT_UPLOADER = "not_uploader"


@dataclass(frozen=True, slots=True)
class MembershipView:
    """One team a user belongs to, and the user's role in it."""

    channel_id: str
    admin: bool
    super_admin: bool
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
        """True when the account exists and is disabled."""

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


class MongoDirectory:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._teams = db[s.TEAMS]
        self._attachments = db[s.ATTACHMENTS]
        self._users = db[s.USERS]

    async def memberships(self, user_id: str) -> list[MembershipView]:
        try:
            cursor = self._teams.find(
                {s.TEAM_MEMBERS: user_id},
                {s.ID: 1, s.TEAM_ADMINS: 1, s.TEAM_SUPER_ADMIN: 1, s.TEAM_ACTIVE: 1},
            )
            docs = await cursor.to_list(length=None)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        views = []
        for doc in docs:
            super_admin = doc.get(s.TEAM_SUPER_ADMIN) == user_id
            views.append(
                MembershipView(
                    channel_id=str(doc[s.ID]),
                    # The super_admin holds every admin right even if ``admins`` lags behind.
                    admin=super_admin or user_id in _strings(doc.get(s.TEAM_ADMINS)),
                    super_admin=super_admin,
                    active=_active(doc),
                )
            )
        return views

    async def disabled(self, user_id: str) -> bool:
        try:
            doc = await self._users.find_one({s.ID: user_id}, {s.USER_DISABLED: 1})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return doc is not None and doc.get(s.USER_DISABLED) is True

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
