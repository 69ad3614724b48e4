"""Reading the membership index (``memberships``): the teams a user belongs to, by equality.

The management service writes the index from each team's outbox
(``services/management/membership_index.py``); the controller reads it at every WebSocket
handshake. The read lives here so both use the one query.
"""

from __future__ import annotations

from dataclasses import dataclass

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.mongo import Document, database_unavailable


@dataclass(frozen=True, slots=True, order=True)
class MembershipEntry:
    """One team of a user, and whether the team is active (members may send)."""

    team_id: str
    active: bool


async def memberships_of(db: AsyncDatabase[Document], user_id: str) -> list[MembershipEntry]:
    """The user's teams ordered by id; ``Unavailable`` when the database fails."""
    try:
        cursor = db[s.MEMBERSHIPS].find(
            {s.MEMBERSHIP_USER_ID: user_id}, {s.MEMBERSHIP_TEAM_ID: 1, s.MEMBERSHIP_ACTIVE: 1}
        )
        docs = await cursor.to_list(length=None)
    except PyMongoError as exc:
        raise database_unavailable(exc) from exc
    return sorted(
        MembershipEntry(str(d[s.MEMBERSHIP_TEAM_ID]), d.get(s.MEMBERSHIP_ACTIVE) is not False)
        for d in docs
        if isinstance(d.get(s.MEMBERSHIP_TEAM_ID), str)
    )


async def share_a_team(db: AsyncDatabase[Document], one: str, other: str) -> bool:
    """Whether two users are members of one team now (by the index): ``one``'s teams, then one
    lookup of ``other`` among them; ``Unavailable`` when the database fails."""
    mine = [m.team_id for m in await memberships_of(db, one)]
    if not mine:
        return False
    try:
        # Equality on user_id narrows the read to the other user's entries (FerretDB passes
        # that down); the ids compared are the index's own.
        found = await db[s.MEMBERSHIPS].find_one(
            {s.MEMBERSHIP_USER_ID: other, s.MEMBERSHIP_TEAM_ID: {"$in": mine}}, {s.ID: 1}
        )
    except PyMongoError as exc:
        raise database_unavailable(exc) from exc
    return found is not None
