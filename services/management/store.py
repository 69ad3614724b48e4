"""Persistence of teams and reads of stored messages, behind narrow interfaces.

The ``teams`` collection is also read by the controller service to answer membership questions, so
its documents keep exactly this shape (field names in ``chatcore.schema``)::

    {_id: team id (uuid4 hex), name, icon, active, meta_tags: [str], members: [user id],
     admins: [user id], super_admin: user id, doc: creation time (UTC datetime),
     outbox: [pending membership event], outbox_pending: bool}

There are no transactions: every change is ONE single-document update whose filter carries the
preconditions the domain checked (the caller's role, the target's membership and role). When a
concurrent change has invalidated them the update matches nothing and the method returns ``None``
(or False); the domain then re-reads and decides between 404, 403 and 409. Invariants kept by the
filters: ``super_admin`` is always in ``admins``, ``admins`` is always a subset of ``members``.

A membership change and the event that announces it are written by that same update: the event is
appended to the document's ``outbox`` (and ``outbox_pending`` set), so the change can never be
stored without its announcement. ``outbox.py`` publishes and then removes the events; a team whose
last member left is emptied (no members, no super_admin) and deleted once its outbox is drained.

Every filter is built here from values that are already validated ids, tags and booleans.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from chatcore import schema as s
from chatcore.errors import Conflict
from chatcore.fencing import fenced, guarded, lost_race
from chatcore.leases import Leases, local_leases
from chatcore.message_state import StoredMessage
from chatcore.mongo import Document, IndexSpec, database_unavailable
from services.management.model import (
    MembershipChange,
    OutboxEvent,
    Team,
    TeamChanges,
)

MANAGEMENT_INDEXES: tuple[IndexSpec, ...] = (
    # "The teams of a user": a multikey index over the members array.
    IndexSpec(s.TEAMS, ((s.TEAM_MEMBERS, ASCENDING),), multikey=True),
    # ?tag= filters and tag search.
    IndexSpec(s.TEAMS, ((s.TEAM_META_TAGS, ASCENDING),)),
    # The outbox retry loop: teams with events not yet acknowledged by Kafka.
    IndexSpec(s.TEAMS, ((s.TEAM_OUTBOX_PENDING, ASCENDING),)),
)


class TeamStore(Protocol):
    async def insert(self, team: Team, event: OutboxEvent) -> None:
        """Store a new team with its first event (the creator joined) in its outbox."""

    async def get(self, team_id: str) -> Team | None:
        """The team, or None (also for a team whose last member left: it is being closed)."""

    async def list_for_member(
        self, user_id: str, *, tag: str | None, after_id: str | None, limit: int
    ) -> list[Team]:
        """The user's teams ordered by id, starting after ``after_id``."""

    async def update_settings(
        self,
        team_id: str,
        *,
        actor: str,
        changes: TeamChanges,
        as_super_admin: bool,
        events: Sequence[OutboxEvent] = (),
        as_read: Mapping[str, Any] | None = None,
    ) -> Team | None:
        """Set fields if the actor is an admin (the super_admin, if ``as_super_admin``).

        With ``as_read`` (fields as stored: lists for arrays), only while the team still has
        those values; ``events`` go to the outbox in the same update, in order. Returns the
        team as it was BEFORE the change.
        """

    async def add_member(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None:
        """Add a user if the actor is an admin and the user is not a member yet."""

    async def remove_member(
        self, team_id: str, *, actor: str, user_id: str, as_super_admin: bool, event: OutboxEvent
    ) -> Team | None:
        """Remove a member: the super_admin removes any other member, an admin only non-admins."""

    # The role changes store a ``roles`` event with the change, as the membership changes do.

    async def add_admin(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None:
        """Elect a member who is not an admin, if the actor is the super_admin."""

    async def remove_admin(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None:
        """Dismiss an admin other than the actor, if the actor is the super_admin."""

    async def transfer_super_admin(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None:
        """Make a member the super_admin (and an admin) if the actor is the super_admin."""

    async def leave(self, team_id: str, *, user_id: str, event: OutboxEvent) -> bool:
        """Remove a member who is not the super_admin."""

    async def close_if_sole_member(self, team_id: str, *, user_id: str, event: OutboxEvent) -> bool:
        """Empty the team (no members, admins or super_admin) if the user is its only member."""

    # The outbox. These take no lease of their own: the publisher calls them while it holds the
    # team's lease (the same ``Leases`` the writes above take) and passes its epoch as ``fence``.

    async def outbox(self, team_id: str) -> tuple[OutboxEvent, ...]:
        """The team's pending events, oldest first (none for an unknown team)."""

    async def acknowledge(
        self, team_id: str, events: Sequence[OutboxEvent], *, fence: int | None = None
    ) -> None:
        """Remove exactly these events from the outbox; clear ``outbox_pending`` once empty.

        With ``fence`` (the publisher's lease epoch), a publisher fenced off writes nothing.
        """

    async def delete_if_closed(self, team_id: str) -> bool:
        """Delete an emptied team whose outbox is drained."""

    async def with_pending_outbox(self, *, limit: int) -> list[str]:
        """Ids of teams whose outbox holds events (the retry loop's work)."""


class Carrier(enum.Enum):
    """What the stored messages that carry an attachment say about one viewer."""

    NONE = "none"  # no message carries it (yet)
    VISIBLE = "visible"  # a message the viewer may see carries it
    HIDDEN = "hidden"  # only messages the viewer may not see carry it


class MessageStore(Protocol):
    async def page(
        self,
        channel_id: str,
        viewer: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> Walk[StoredMessage]:
        """Up to ``limit`` messages the viewer may see: ascending by seq after ``after``,
        otherwise descending by seq (below ``before`` when given). Fewer, with ``resume_at``,
        when the walk reached its bound first."""

    async def carrier(self, channel_id: str, attachment_id: str, viewer: str) -> Carrier:
        """Whether the viewer may see a message of the channel that carries the attachment."""

    async def carried_besides(self, channel_id: str, attachment_id: str, message_id: str) -> bool:
        """Whether a message of the channel other than ``message_id`` carries the attachment."""

    async def message(self, channel_id: str, message_id: str) -> StoredMessage | None:
        """The channel's message with this id (None for none, or one of another channel)."""

    async def thread(
        self, channel_id: str, root_id: str, viewer: str, *, after: int, limit: int
    ) -> list[StoredMessage]:
        """Up to ``limit`` replies to ``root_id`` the viewer may see, ascending after ``after``."""

    async def changes(
        self, channel_id: str, viewer: str, *, after: int, limit: int
    ) -> Walk[ChangeEntry]:
        """Up to ``limit`` entries of the channel's log after ``after`` that the viewer may see,
        ascending: each message's creation and each change applied to one. Fewer, with
        ``resume_at``, when the walk reached its bound first."""

    async def count_at(self, channel_id: str, seq: int, viewer: str | None = None) -> int | None:
        """The channel's team-message count at its record ``seq`` (a message or a change, seen by
        the caller or not: every record carries the count up to itself, and a record hidden from
        a viewer holds the same count as the last one they see before it); None when the channel
        has no record at that seq, or, with ``viewer``, none that the viewer may see."""

    async def count_before(self, channel_id: str, seq: int) -> int:
        """The channel's team-message count at its last message at or below ``seq`` (0 when
        there is none). A few bucket reads, whatever the channel's size."""


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Walk(Generic[T]):
    """What a walk over a channel's history found, in its direction.

    A walk reads a bounded number of buckets: a member who may see little of a busy channel
    (other members' DMs) would otherwise make one request read the whole channel. When the bound
    stops it before the page is full, ``resume_at`` is the seq to go on from (``after`` forward,
    ``before`` backward): everything the viewer may see between the cursor and it was found.
    """

    found: list[T]
    resume_at: int | None = None


@dataclass(frozen=True, slots=True)
class ChangeEntry:
    """One entry of the changes feed: what happened at ``seq`` and the message after it."""

    seq: int
    change: str  # "created" | "edited" | "deleted" | "reaction" | "thread"
    message: StoredMessage

    def public(self) -> dict[str, Any]:
        return {"seq": self.seq, "change": self.change, "message": self.message.public()}


CREATED = "created"
THREAD = "thread"


def entry_order(entry: ChangeEntry) -> tuple[int, int]:
    """The feed's order: by seq; at one seq a creation first, a thread change last (it shares
    the seq of the reply it counts, or of the delete that takes one off)."""
    rank = 0 if entry.change == CREATED else 2 if entry.change == THREAD else 1
    return entry.seq, rank


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def team_from_doc(doc: Mapping[str, Any]) -> Team:
    """A stored document as a ``Team``."""
    return Team(
        id=str(doc[s.ID]),
        name=str(doc.get(s.TEAM_NAME, "")),
        icon=str(doc.get(s.TEAM_ICON, "")),
        active=bool(doc.get(s.TEAM_ACTIVE, True)),
        meta_tags=_strings(doc.get(s.TEAM_META_TAGS)),
        members=_strings(doc.get(s.TEAM_MEMBERS)),
        admins=_strings(doc.get(s.TEAM_ADMINS)),
        super_admin=str(doc.get(s.TEAM_SUPER_ADMIN, "")),
        doc=doc[s.TEAM_DOC],
    )


def team_to_doc(team: Team, outbox: Sequence[OutboxEvent] = ()) -> Document:
    """A ``Team`` in the stored shape, with its pending events."""
    return {
        s.ID: team.id,
        s.TEAM_NAME: team.name,
        s.TEAM_ICON: team.icon,
        s.TEAM_ACTIVE: team.active,
        s.TEAM_META_TAGS: list(team.meta_tags),
        s.TEAM_MEMBERS: list(team.members),
        s.TEAM_ADMINS: list(team.admins),
        s.TEAM_SUPER_ADMIN: team.super_admin,
        s.TEAM_DOC: team.doc,
        s.TEAM_OUTBOX: [event_to_doc(e) for e in outbox],
        s.TEAM_OUTBOX_PENDING: bool(outbox),
    }


def event_to_doc(event: OutboxEvent) -> Document:
    return {
        s.EVENT_ID: event.id,
        s.EVENT_USER_ID: event.user_id,
        s.EVENT_CHANGE: event.change.value,
        s.EVENT_ACTOR: event.actor,
        s.EVENT_TS_MS: event.ts_ms,
        s.EVENT_CORRELATION_ID: event.correlation_id,
    }


def event_from_doc(doc: Mapping[str, Any]) -> OutboxEvent:
    return OutboxEvent(
        id=str(doc[s.EVENT_ID]),
        user_id=str(doc.get(s.EVENT_USER_ID, "")),
        change=MembershipChange(doc[s.EVENT_CHANGE]),
        actor=str(doc.get(s.EVENT_ACTOR, "")),
        ts_ms=int(doc.get(s.EVENT_TS_MS, 0)),
        correlation_id=str(doc.get(s.EVENT_CORRELATION_ID, "")),
    )


def _with_events(update: Document, events: Sequence[OutboxEvent]) -> Document:
    """``update`` that also appends ``events`` to the outbox (the same single-document write)."""
    if not events:
        return update
    merged = {op: dict(fields) for op, fields in update.items()}
    merged.setdefault("$push", {})[s.TEAM_OUTBOX] = {"$each": [event_to_doc(e) for e in events]}
    merged.setdefault("$set", {})[s.TEAM_OUTBOX_PENDING] = True
    return merged


class MongoTeamStore:
    def __init__(self, db: AsyncDatabase[Document], leases: Leases | None = None) -> None:
        self._teams = db[s.TEAMS]
        # Per team, across every management instance when the leases live in the database.
        self._leases = leases if leases is not None else local_leases("team")

    async def insert(self, team: Team, event: OutboxEvent) -> None:
        try:
            await self._teams.insert_one(team_to_doc(team, (event,)))
        except DuplicateKeyError:
            raise Conflict("a team with this id exists") from None
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def get(self, team_id: str) -> Team | None:
        try:
            doc = await self._teams.find_one({s.ID: team_id})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        # An emptied team (its last member left; deleted once its outbox is drained) is gone.
        if doc is None or not doc.get(s.TEAM_MEMBERS):
            return None
        return team_from_doc(doc)

    async def list_for_member(
        self, user_id: str, *, tag: str | None, after_id: str | None, limit: int
    ) -> list[Team]:
        query: Document = {s.TEAM_MEMBERS: user_id}
        if tag is not None:
            query[s.TEAM_META_TAGS] = tag
        if after_id is not None:
            query[s.ID] = {"$gt": after_id}
        try:
            cursor = self._teams.find(query).sort(s.ID, ASCENDING).limit(limit)
            return [team_from_doc(doc) async for doc in cursor]
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def _update(
        self,
        team_id: str,
        query: Document,
        update: Document,
        *,
        events: Sequence[OutboxEvent] = (),
        before: bool = False,
    ) -> Team | None:
        # The team's lease keeps writers of every instance apart; its epoch fences the write, so
        # a holder paused past its expiry matches nothing afterwards (chatcore/fencing.py).
        async with self._leases.hold(team_id) as lease:
            lease.check()
            try:
                doc = await self._teams.find_one_and_update(
                    fenced({s.ID: team_id, **query}, lease.epoch),
                    guarded(_with_events(update, events), lease.epoch),
                    return_document=ReturnDocument.BEFORE if before else ReturnDocument.AFTER,
                )
            except PyMongoError as exc:
                if not lost_race(exc):
                    raise database_unavailable(exc) from exc
                doc = None  # the stack's guard refused a stale write: the filter lost the race
        return team_from_doc(doc) if doc is not None else None

    async def update_settings(
        self,
        team_id: str,
        *,
        actor: str,
        changes: TeamChanges,
        as_super_admin: bool,
        events: Sequence[OutboxEvent] = (),
        as_read: Mapping[str, Any] | None = None,
    ) -> Team | None:
        query: Document = {s.TEAM_SUPER_ADMIN: actor} if as_super_admin else {s.TEAM_ADMINS: actor}
        # Our own field names and the values the service read: never a client's operator.
        query.update(as_read or {})
        return await self._update(
            team_id, query, {"$set": changes.fields()}, events=events, before=True
        )

    async def add_member(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None:
        return await self._update(
            team_id,
            {s.TEAM_ADMINS: actor, s.TEAM_MEMBERS: {"$ne": user_id}},
            {"$addToSet": {s.TEAM_MEMBERS: user_id}},
            events=(event,),
        )

    async def remove_member(
        self, team_id: str, *, actor: str, user_id: str, as_super_admin: bool, event: OutboxEvent
    ) -> Team | None:
        if actor == user_id:
            return None  # nobody removes themselves: that is leaving
        query: Document = (
            {s.TEAM_SUPER_ADMIN: actor, s.TEAM_MEMBERS: user_id}
            if as_super_admin
            # Both conditions are on the admins array: the actor is in it, the target is not.
            else {
                s.TEAM_MEMBERS: user_id,
                "$and": [{s.TEAM_ADMINS: actor}, {s.TEAM_ADMINS: {"$ne": user_id}}],
            }
        )
        # Pulling from admins too is a no-op for a plain member and keeps admins within members.
        return await self._update(
            team_id,
            query,
            {"$pull": {s.TEAM_MEMBERS: user_id, s.TEAM_ADMINS: user_id}},
            events=(event,),
        )

    async def add_admin(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None:
        return await self._update(
            team_id,
            {s.TEAM_SUPER_ADMIN: actor, s.TEAM_MEMBERS: user_id, s.TEAM_ADMINS: {"$ne": user_id}},
            {"$addToSet": {s.TEAM_ADMINS: user_id}},
            events=(event,),
        )

    async def remove_admin(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None:
        if actor == user_id:
            return None  # the super_admin stays an admin
        return await self._update(
            team_id,
            {s.TEAM_SUPER_ADMIN: actor, s.TEAM_ADMINS: user_id},
            {"$pull": {s.TEAM_ADMINS: user_id}},
            events=(event,),
        )

    async def transfer_super_admin(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None:
        return await self._update(
            team_id,
            {s.TEAM_SUPER_ADMIN: actor, s.TEAM_MEMBERS: user_id},
            # The former super_admin stays an admin; the new one becomes an admin if not yet.
            {"$set": {s.TEAM_SUPER_ADMIN: user_id}, "$addToSet": {s.TEAM_ADMINS: user_id}},
            events=(event,),
        )

    async def leave(self, team_id: str, *, user_id: str, event: OutboxEvent) -> bool:
        team = await self._update(
            team_id,
            {s.TEAM_MEMBERS: user_id, s.TEAM_SUPER_ADMIN: {"$ne": user_id}},
            {"$pull": {s.TEAM_MEMBERS: user_id, s.TEAM_ADMINS: user_id}},
            events=(event,),
        )
        return team is not None

    async def close_if_sole_member(self, team_id: str, *, user_id: str, event: OutboxEvent) -> bool:
        # Not deleted yet: the document carries the REMOVED event until Kafka has it.
        team = await self._update(
            team_id,
            {s.TEAM_SUPER_ADMIN: user_id, s.TEAM_MEMBERS: [user_id]},
            {"$set": {s.TEAM_MEMBERS: [], s.TEAM_ADMINS: [], s.TEAM_SUPER_ADMIN: ""}},
            events=(event,),
        )
        return team is not None

    async def outbox(self, team_id: str) -> tuple[OutboxEvent, ...]:
        try:
            doc = await self._teams.find_one({s.ID: team_id}, {s.TEAM_OUTBOX: 1})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        entries = doc.get(s.TEAM_OUTBOX) if doc is not None else None
        if not isinstance(entries, list):
            return ()
        return tuple(event_from_doc(entry) for entry in entries)

    async def acknowledge(
        self, team_id: str, events: Sequence[OutboxEvent], *, fence: int | None = None
    ) -> None:
        def query(extra: Document) -> Document:
            base = {s.ID: team_id, **extra}
            return fenced(base, fence) if fence is not None else base

        try:
            if events:
                # Whole entries, not a ``$pull`` condition on their ids: FerretDB 1.24 ignores
                # conditions in ``$pull`` (measured: nothing removed), equality works everywhere.
                await self._teams.update_one(
                    query({}),
                    guarded(
                        {"$pullAll": {s.TEAM_OUTBOX: [event_to_doc(e) for e in events]}}, fence
                    ),
                )
            # A separate conditional write: an event appended in between keeps the flag set; a
            # flag already clear is not written again (a flush of a drained outbox changes
            # nothing: no revision, no fence).
            await self._teams.update_one(
                query({s.TEAM_OUTBOX: [], s.TEAM_OUTBOX_PENDING: True}),
                guarded({"$set": {s.TEAM_OUTBOX_PENDING: False}}, fence),
            )
        except PyMongoError as exc:
            # A write that lost a race leaves the events for the next flush (a harmless replay).
            if not lost_race(exc):
                raise database_unavailable(exc) from exc

    async def delete_if_closed(self, team_id: str) -> bool:
        try:
            result = await self._teams.delete_one(
                {s.ID: team_id, s.TEAM_MEMBERS: [], s.TEAM_OUTBOX: []}
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return result.deleted_count == 1

    async def with_pending_outbox(self, *, limit: int) -> list[str]:
        try:
            cursor = self._teams.find({s.TEAM_OUTBOX_PENDING: True}, {s.ID: 1}).limit(limit)
            return [str(doc[s.ID]) async for doc in cursor]
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
