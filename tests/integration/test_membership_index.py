"""The membership index on the real database: the one-time backfill of teams stored before it,
and which events change a team's state in it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from chatcore import schema
from chatcore.memberships import MembershipEntry, memberships_of
from chatcore.migrations import run_once
from chatcore.mongo import Document, ensure_indexes
from services.management.membership_index import (
    BACKFILL,
    MEMBERSHIP_INDEXES,
    MongoMembershipIndex,
)
from services.management.model import MembershipChange, OutboxEvent


@pytest.fixture
async def db(scratch_db: AsyncDatabase[Document]) -> AsyncDatabase[Document]:
    """A scratch database with the index's indexes."""
    await ensure_indexes(scratch_db, MEMBERSHIP_INDEXES)
    return scratch_db


def _team(members: list[str], *, active: bool) -> Document:
    return {
        schema.ID: uuid.uuid4().hex,
        schema.TEAM_NAME: "old",
        schema.TEAM_ACTIVE: active,
        schema.TEAM_MEMBERS: members,
        schema.TEAM_ADMINS: members[:1],
        schema.TEAM_SUPER_ADMIN: members[0],
        schema.TEAM_DOC: datetime.now(UTC),
    }


async def test_backfill_indexes_every_member_of_every_older_team_once(
    db: AsyncDatabase[Document],
) -> None:
    """Teams stored without index entries are indexed (their state included) at the first
    start; a later start skips the backfill, and entries written since are kept."""
    alice, bob = uuid.uuid4().hex, uuid.uuid4().hex
    open_team, closed_team = _team([alice, bob], active=True), _team([bob], active=False)
    await db[schema.TEAMS].insert_many([open_team, closed_team])
    index = MongoMembershipIndex(db)
    assert await run_once(db, BACKFILL, index.backfill) == 3
    assert await memberships_of(db, alice) == [MembershipEntry(open_team[schema.ID], True)]
    assert await memberships_of(db, bob) == sorted(
        [
            MembershipEntry(open_team[schema.ID], True),
            MembershipEntry(closed_team[schema.ID], False),
        ]
    )
    await db[schema.TEAMS].insert_one(_team([alice], active=True))
    assert await run_once(db, BACKFILL, index.backfill) == 0
    assert len(await memberships_of(db, alice)) == 1


async def test_only_activation_changes_a_team_s_state_in_the_index(
    db: AsyncDatabase[Document],
) -> None:
    """A rename or a role change leaves the members' entries as they are; deactivating and
    reactivating set every member's entry."""
    alice, bob = uuid.uuid4().hex, uuid.uuid4().hex
    team = _team([alice, bob], active=True)
    await db[schema.TEAMS].insert_one(team)
    index = MongoMembershipIndex(db)
    team_id = team[schema.ID]
    await index.index_team(team_id, [alice, bob], active=True)

    def event(change: MembershipChange, user_id: str = "") -> OutboxEvent:
        return OutboxEvent(uuid.uuid4().hex, user_id, change, alice, 1, "")

    await index.apply(team_id, event(MembershipChange.DEACTIVATED))
    for news in (event(MembershipChange.SETTINGS), event(MembershipChange.ROLES, bob)):
        await index.apply(team_id, news)
        assert await memberships_of(db, bob) == [MembershipEntry(team_id, False)]
    await index.apply(team_id, event(MembershipChange.ACTIVATED))
    await index.apply(team_id, event(MembershipChange.SETTINGS))
    assert await memberships_of(db, alice) == [MembershipEntry(team_id, True)]
    assert await memberships_of(db, bob) == [MembershipEntry(team_id, True)]
