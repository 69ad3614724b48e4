"""Teams written straight into the database the way the management service leaves them: the
team document plus its membership index entries (services/management/membership_index.py).

For tests and benchmarks that set teams up without going through the REST API (creating 1,000
accounts would measure argon2, not chat). Membership changes made here are announced by the
caller, if at all (``Pipeline.membership_event``), as a test of the relay's reaction needs.
"""

from __future__ import annotations

import uuid
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from chatcore import schema as s
from services.management.membership_index import MongoMembershipIndex
from services.management.model import MembershipChange, OutboxEvent

Document = dict[str, Any]


def _event(user_id: str, change: MembershipChange) -> OutboxEvent:
    return OutboxEvent(uuid.uuid4().hex, user_id, change, "test", 0, "")


async def store_team(db: AsyncDatabase[Document], doc: Document) -> None:
    """Insert a whole team document and index each of its members."""
    await db[s.TEAMS].insert_one(doc)
    members = [str(m) for m in doc.get(s.TEAM_MEMBERS, [])]
    active = doc.get(s.TEAM_ACTIVE, True) is not False
    await MongoMembershipIndex(db).index_team(str(doc[s.ID]), members, active=active)


async def add_member(db: AsyncDatabase[Document], team_id: str, user_id: str) -> None:
    await db[s.TEAMS].update_one({s.ID: team_id}, {"$push": {s.TEAM_MEMBERS: user_id}})
    await MongoMembershipIndex(db).apply(team_id, _event(user_id, MembershipChange.ADDED))


async def remove_member(
    db: AsyncDatabase[Document], team_id: str, user_id: str, *, index: bool = True
) -> None:
    """Take the user out of the team; ``index=False`` leaves the index stale, as a lost
    outbox would."""
    await db[s.TEAMS].update_one({s.ID: team_id}, {"$pull": {s.TEAM_MEMBERS: user_id}})
    if index:
        await MongoMembershipIndex(db).apply(team_id, _event(user_id, MembershipChange.REMOVED))


async def drop_team(db: AsyncDatabase[Document], team_id: str) -> None:
    await db[s.TEAMS].delete_one({s.ID: team_id})
    await db[s.MEMBERSHIPS].delete_many({s.MEMBERSHIP_TEAM_ID: team_id})
