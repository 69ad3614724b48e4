"""The membership index: one small ``memberships`` document per (team, member).

Every WebSocket handshake asks which teams a user belongs to. Answered from the ``teams``
documents, that query reads every matching team whole: on FerretDB a 1,000-member team is a 35 KB
document decoded for each lookup (5 ms each, 8 s for a storm of 1,000 handshakes). The index holds
``{_id: "<team>:<user>", team_id, user_id, active}`` and is looked up by ``user_id`` alone.

There are no transactions to keep it in step with the team document. Instead it follows the team's
outbox: every membership change is already stored in the team document together with its event
(store.py), and the outbox publisher applies each event here, in order, before it publishes the
event to Kafka and removes it (events.py). Applying is idempotent (an upsert, a delete, a
``$set``), so a publisher that fails half-way and retries, or two management instances that flush
the same outbox, leave the same documents. The index lags the team document by at most the time
until the outbox is flushed (normally the same request), exactly as the Kafka event does; a
removal reaches a relay's sockets only once both are done.

Teams stored before the index existed are indexed once at start-up (``backfill``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from chatcore import schema as s
from chatcore.memberships import MembershipEntry, memberships_of
from chatcore.mongo import Document, IndexSpec, database_unavailable
from services.management.model import MembershipChange, OutboxEvent

MEMBERSHIP_INDEXES: tuple[IndexSpec, ...] = (
    # A user's teams: the handshake's lookup.
    IndexSpec(s.MEMBERSHIPS, ((s.MEMBERSHIP_USER_ID, ASCENDING),)),
    # A team's entries: (de)activation updates them all.
    IndexSpec(s.MEMBERSHIPS, ((s.MEMBERSHIP_TEAM_ID, ASCENDING),)),
)

BACKFILL = "membership-index-v1"

# The changes that set a team's state on its entries; settings and roles leave the index alone.
ACTIVATION = frozenset({MembershipChange.ACTIVATED, MembershipChange.DEACTIVATED})


class MembershipIndex(Protocol):
    async def apply(self, team_id: str, event: OutboxEvent) -> None:
        """Make the index say what the event announces; idempotent. ``Unavailable`` on failure."""

    async def teams_of(self, user_id: str) -> list[MembershipEntry]:
        """What the index says about the user (the controller reads it the same way)."""


class MongoMembershipIndex:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self._index = db[s.MEMBERSHIPS]
        self._teams = db[s.TEAMS]

    async def teams_of(self, user_id: str) -> list[MembershipEntry]:
        return await memberships_of(self._db, user_id)

    async def apply(self, team_id: str, event: OutboxEvent) -> None:
        try:
            if event.change is MembershipChange.ADDED:
                # The team's current state, not the event's: a member added to a deactivated
                # team may read but not send, and a later event corrects anything stale.
                team = await self._teams.find_one({s.ID: team_id}, {s.TEAM_ACTIVE: 1})
                active = team is None or team.get(s.TEAM_ACTIVE, True) is not False
                await self._upsert(team_id, event.user_id, active=active)
            elif event.change is MembershipChange.REMOVED:
                await self._index.delete_one({s.ID: s.membership_id(team_id, event.user_id)})
            elif event.change in ACTIVATION:
                await self._index.update_many(
                    {s.MEMBERSHIP_TEAM_ID: team_id},
                    {
                        "$set": {
                            s.MEMBERSHIP_ACTIVE: event.change is MembershipChange.ACTIVATED,
                        }
                    },
                )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def _upsert(self, team_id: str, user_id: str, *, active: bool) -> None:
        await self._index.update_one(
            {s.ID: s.membership_id(team_id, user_id)},
            {
                "$set": {
                    s.MEMBERSHIP_TEAM_ID: team_id,
                    s.MEMBERSHIP_USER_ID: user_id,
                    s.MEMBERSHIP_ACTIVE: active,
                }
            },
            upsert=True,
        )

    async def index_team(self, team_id: str, members: Sequence[str], *, active: bool) -> None:
        """Entries for every member of a team in one insert (those that exist stay), then the
        team's state on all of them; for the backfill and for tests that store teams directly."""
        docs = [
            {
                s.ID: s.membership_id(team_id, user_id),
                s.MEMBERSHIP_TEAM_ID: team_id,
                s.MEMBERSHIP_USER_ID: user_id,
                s.MEMBERSHIP_ACTIVE: active,
            }
            for user_id in members
        ]
        try:
            if docs:
                with contextlib.suppress(BulkWriteError):  # duplicates: already indexed
                    await self._index.insert_many(docs, ordered=False)
            await self._index.update_many(
                {s.MEMBERSHIP_TEAM_ID: team_id}, {"$set": {s.MEMBERSHIP_ACTIVE: active}}
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def backfill(self) -> int:
        """Index every member of every team (run once, before the index is trusted); how many.

        Entries of teams with a pending outbox may be stale until it is flushed, which applies
        its events on top, in order.
        """
        done = 0
        try:
            cursor = self._teams.find({}, {s.ID: 1, s.TEAM_MEMBERS: 1, s.TEAM_ACTIVE: 1})
            teams = await cursor.to_list(length=None)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        for team in teams:
            members = team.get(s.TEAM_MEMBERS)
            if not isinstance(members, list):
                continue
            active = team.get(s.TEAM_ACTIVE, True) is not False
            await self.index_team(str(team[s.ID]), [str(m) for m in members], active=active)
            done += len(members)
        return done
