"""Persistence of teams and reads of stored messages, behind narrow interfaces.

The ``teams`` collection is also read by the controller service to answer membership questions, so
its documents keep exactly this shape::

    {_id: team id (uuid4 hex), name, icon, active, meta_tags: [str], members: [user id],
     admins: [user id], super_admin: user id, doc: creation time (UTC datetime)}

There are no transactions: every change is ONE single-document update whose filter carries the
preconditions the domain checked (the caller's role, the target's membership and role). When a
concurrent change has invalidated them the update matches nothing and the method returns ``None``
(or False); the domain then re-reads and decides between 404, 403 and 409. Invariants kept by the
filters: ``super_admin`` is always in ``admins``, ``admins`` is always a subset of ``members``.

Every filter is built here from values that are already validated ids, tags and booleans.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from chatcore.errors import Conflict
from chatcore.locks import KeyedLocks
from chatcore.mongo import Document, IndexSpec, database_unavailable
from services.management.model import Message, Team, TeamChanges

TEAMS = "teams"
MESSAGES = "messages"

MANAGEMENT_INDEXES: tuple[IndexSpec, ...] = (
    # "The teams of a user": a multikey index over the members array.
    IndexSpec(TEAMS, (("members", ASCENDING),), multikey=True),
    # ?tag= filters and tag search.
    IndexSpec(TEAMS, (("meta_tags", ASCENDING),)),
)


class TeamStore(Protocol):
    async def insert(self, team: Team) -> None: ...

    async def get(self, team_id: str) -> Team | None: ...

    async def list_for_member(
        self, user_id: str, *, tag: str | None, after_id: str | None, limit: int
    ) -> list[Team]:
        """The user's teams ordered by id, starting after ``after_id``."""

    async def update_settings(
        self, team_id: str, *, actor: str, changes: TeamChanges, as_super_admin: bool
    ) -> Team | None:
        """Set fields if the actor is an admin (the super_admin, if ``as_super_admin``).

        Returns the team as it was BEFORE the change, so the caller can tell what changed.
        """

    async def add_member(self, team_id: str, *, actor: str, user_id: str) -> Team | None:
        """Add a user if the actor is an admin and the user is not a member yet."""

    async def remove_member(
        self, team_id: str, *, actor: str, user_id: str, as_super_admin: bool
    ) -> Team | None:
        """Remove a member: the super_admin removes any other member, an admin only non-admins."""

    async def add_admin(self, team_id: str, *, actor: str, user_id: str) -> Team | None:
        """Elect a member who is not an admin, if the actor is the super_admin."""

    async def remove_admin(self, team_id: str, *, actor: str, user_id: str) -> Team | None:
        """Dismiss an admin other than the actor, if the actor is the super_admin."""

    async def transfer_super_admin(self, team_id: str, *, actor: str, user_id: str) -> Team | None:
        """Make a member the super_admin (and an admin) if the actor is the super_admin."""

    async def leave(self, team_id: str, *, user_id: str) -> bool:
        """Remove a member who is not the super_admin."""

    async def delete_if_sole_member(self, team_id: str, *, user_id: str) -> bool:
        """Delete the team if the user is its super_admin and only member."""


class MessageStore(Protocol):
    async def page(
        self,
        channel_id: str,
        viewer: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> list[Message]:
        """Up to ``limit`` messages the viewer may see: ascending by seq after ``after``,
        otherwise descending by seq (below ``before`` when given)."""


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def team_from_doc(doc: Mapping[str, Any]) -> Team:
    """A stored document as a ``Team``."""
    return Team(
        id=str(doc["_id"]),
        name=str(doc.get("name", "")),
        icon=str(doc.get("icon", "")),
        active=bool(doc.get("active", True)),
        meta_tags=_strings(doc.get("meta_tags")),
        members=_strings(doc.get("members")),
        admins=_strings(doc.get("admins")),
        super_admin=str(doc.get("super_admin", "")),
        doc=doc["doc"],
    )


def team_to_doc(team: Team) -> Document:
    """A ``Team`` in the stored shape."""
    return {
        "_id": team.id,
        "name": team.name,
        "icon": team.icon,
        "active": team.active,
        "meta_tags": list(team.meta_tags),
        "members": list(team.members),
        "admins": list(team.admins),
        "super_admin": team.super_admin,
        "doc": team.doc,
    }


class MongoTeamStore:
    def __init__(self, db: AsyncDatabase[Document], locks: KeyedLocks | None = None) -> None:
        self._teams = db[TEAMS]
        self._locks = locks if locks is not None else KeyedLocks()

    async def insert(self, team: Team) -> None:
        try:
            await self._teams.insert_one(team_to_doc(team))
        except DuplicateKeyError:
            raise Conflict("a team with this id exists") from None
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def get(self, team_id: str) -> Team | None:
        try:
            doc = await self._teams.find_one({"_id": team_id})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return team_from_doc(doc) if doc is not None else None

    async def list_for_member(
        self, user_id: str, *, tag: str | None, after_id: str | None, limit: int
    ) -> list[Team]:
        query: Document = {"members": user_id}
        if tag is not None:
            query["meta_tags"] = tag
        if after_id is not None:
            query["_id"] = {"$gt": after_id}
        try:
            cursor = self._teams.find(query).sort("_id", ASCENDING).limit(limit)
            return [team_from_doc(doc) async for doc in cursor]
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def _update(
        self, team_id: str, query: Document, update: Document, *, before: bool = False
    ) -> Team | None:
        # The lock makes FerretDB's read-then-write update behave like MongoDB's atomic one for
        # the writes of this process (see locks.py); on MongoDB it costs one uncontended acquire.
        async with self._locks.hold(team_id):
            try:
                doc = await self._teams.find_one_and_update(
                    {"_id": team_id, **query},
                    update,
                    return_document=ReturnDocument.BEFORE if before else ReturnDocument.AFTER,
                )
            except PyMongoError as exc:
                raise database_unavailable(exc) from exc
        return team_from_doc(doc) if doc is not None else None

    async def update_settings(
        self, team_id: str, *, actor: str, changes: TeamChanges, as_super_admin: bool
    ) -> Team | None:
        query: Document = {"super_admin": actor} if as_super_admin else {"admins": actor}
        return await self._update(team_id, query, {"$set": changes.fields()}, before=True)

    async def add_member(self, team_id: str, *, actor: str, user_id: str) -> Team | None:
        return await self._update(
            team_id,
            {"admins": actor, "members": {"$ne": user_id}},
            {"$addToSet": {"members": user_id}},
        )

    async def remove_member(
        self, team_id: str, *, actor: str, user_id: str, as_super_admin: bool
    ) -> Team | None:
        if actor == user_id:
            return None  # nobody removes themselves: that is leaving
        query: Document = (
            {"super_admin": actor, "members": user_id}
            if as_super_admin
            # Both conditions are on the admins array: the actor is in it, the target is not.
            else {"members": user_id, "$and": [{"admins": actor}, {"admins": {"$ne": user_id}}]}
        )
        # Pulling from admins too is a no-op for a plain member and keeps admins within members.
        return await self._update(
            team_id, query, {"$pull": {"members": user_id, "admins": user_id}}
        )

    async def add_admin(self, team_id: str, *, actor: str, user_id: str) -> Team | None:
        return await self._update(
            team_id,
            {"super_admin": actor, "members": user_id, "admins": {"$ne": user_id}},
            {"$addToSet": {"admins": user_id}},
        )

    async def remove_admin(self, team_id: str, *, actor: str, user_id: str) -> Team | None:
        if actor == user_id:
            return None  # the super_admin stays an admin
        return await self._update(
            team_id,
            {"super_admin": actor, "admins": user_id},
            {"$pull": {"admins": user_id}},
        )

    async def transfer_super_admin(self, team_id: str, *, actor: str, user_id: str) -> Team | None:
        return await self._update(
            team_id,
            {"super_admin": actor, "members": user_id},
            # The former super_admin stays an admin; the new one becomes an admin if not yet.
            {"$set": {"super_admin": user_id}, "$addToSet": {"admins": user_id}},
        )

    async def leave(self, team_id: str, *, user_id: str) -> bool:
        team = await self._update(
            team_id,
            {"members": user_id, "super_admin": {"$ne": user_id}},
            {"$pull": {"members": user_id, "admins": user_id}},
        )
        return team is not None

    async def delete_if_sole_member(self, team_id: str, *, user_id: str) -> bool:
        async with self._locks.hold(team_id):
            try:
                result = await self._teams.delete_one(
                    {"_id": team_id, "super_admin": user_id, "members": [user_id]}
                )
            except PyMongoError as exc:
                raise database_unavailable(exc) from exc
        return result.deleted_count == 1


def message_from_doc(doc: Mapping[str, Any]) -> Message:
    """A stored message (written by the controller) as a ``Message``."""
    return Message(
        id=str(doc.get("id", "")),
        seq=int(doc["seq"]),
        channel_id=str(doc.get("channel_id", "")),
        to=str(doc.get("to", "")),
        type=str(doc.get("type", "")),
        data=str(doc.get("data", "")),
        sender=str(doc.get("from", "")),
        ts=doc["ts"],
    )


class MongoMessageStore:
    """History reads over the ``(channel_id, seq)`` index; visibility is a residual filter."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._messages = db[MESSAGES]

    async def page(
        self,
        channel_id: str,
        viewer: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> list[Message]:
        query: Document = {
            "channel_id": channel_id,
            # Team messages, and DMs the viewer sent or received.
            "$or": [{"to": "*"}, {"from": viewer}, {"to": viewer}],
        }
        if after is not None:
            query["seq"] = {"$gt": after}
        elif before is not None:
            query["seq"] = {"$lt": before}
        direction = ASCENDING if after is not None else DESCENDING
        try:
            cursor = (
                self._messages.find(query, projection={"_id": False})
                .sort("seq", direction)
                .limit(limit)
            )
            return [message_from_doc(doc) async for doc in cursor]
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
