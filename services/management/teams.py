"""Team management rules in action: create, list, read, change, members, roles, leave.

No HTTP and no database driver here: the store, the user directory, the event publisher and the
clock come in through the constructor. Every change follows one pattern:

1. read the team and decide with the pure rules in ``roles.py`` (a denial raises before anything is
   written, so nothing changes on a denied call);
2. write with one conditional update whose filter repeats the preconditions of that decision;
3. if the filter matched nothing, something changed in between: go back to 1 with a fresh read,
   which now answers 404, 403 or 409 or succeeds (a bounded number of times, then 409);
4. a membership change carries its event into the same write (the team's outbox, see
   ``store.py``); once the write is stored, the outbox is published (``events.py``).
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter

from chatcore.errors import Conflict, NotFound
from chatcore.logging import get_logger
from chatcore.memberships import MembershipEntry
from services.management import roles
from services.management.events import Announcer, current_correlation_id
from services.management.model import (
    SETTINGS_FIELDS,
    MemberRef,
    MembershipChange,
    OutboxEvent,
    Role,
    Team,
    TeamChanges,
    TeamDraft,
)
from services.management.store import TeamStore
from services.management.users import UserDirectory
from services.management.validation import TeamsQuery

_log = get_logger("management.teams")

# A change that loses this many races in a row is reported as a conflict; the client retries.
MAX_ATTEMPTS = 4


@dataclass(frozen=True, slots=True)
class TeamMetrics:
    changes: Counter
    lost_races: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> TeamMetrics:
        return cls(
            changes=Counter(
                "management_team_changes_total",
                "Successful team changes by kind",
                ["kind"],
                registry=registry,
            ),
            lost_races=Counter(
                "management_conditional_update_misses_total",
                "Conditional updates that matched nothing because the team changed concurrently",
                registry=registry,
            ),
        )


@dataclass(frozen=True, slots=True)
class TeamPage:
    teams: tuple[Team, ...]
    has_more: bool
    next_cursor: str | None


Attempt = Callable[[Team], Awaitable[Team | None]]


class RoleWrite(Protocol):
    """A store role change: ``add_admin``, ``remove_admin`` or ``transfer_super_admin``."""

    async def __call__(
        self, team_id: str, *, actor: str, user_id: str, event: OutboxEvent
    ) -> Team | None: ...


class Memberships(Protocol):
    async def teams_of(self, user_id: str) -> list[MembershipEntry]:
        """The teams the membership index has for the user (``Unavailable`` on failure)."""


class TeamService:
    def __init__(
        self,
        *,
        teams: TeamStore,
        users: UserDirectory,
        events: Announcer,
        metrics: TeamMetrics,
        memberships: Memberships,
        teams_per_user_max: int,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        new_event_id: Callable[[], str] = lambda: uuid.uuid4().hex,
    ) -> None:
        self._teams = teams
        self._users = users
        self._events = events
        self._metrics = metrics
        self._memberships = memberships
        self._teams_max = teams_per_user_max
        # A tenth kept for the account's own teams; none below 10 (a cap that small is a test's,
        # and a reserve of one would leave a user of their own team impossible to add anywhere).
        self._added_max = teams_per_user_max - teams_per_user_max // 10
        self._clock = clock
        self._new_id = new_id
        self._new_event_id = new_event_id

    def _event(self, user_id: str, change: MembershipChange, *, actor: str) -> OutboxEvent:
        """The event a change stores in the team's outbox; ``user_id`` empty for team-wide."""
        return OutboxEvent(
            id=self._new_event_id(),
            user_id=user_id,
            change=change,
            actor=actor,
            ts_ms=int(self._clock() * 1000),
            correlation_id=current_correlation_id(),
        )

    def _now(self) -> datetime:
        # Millisecond precision: what the database stores, so a created team reads back equal.
        now = datetime.fromtimestamp(self._clock(), UTC)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    async def create(self, draft: TeamDraft, *, creator: str) -> Team:
        """A new active team; the creator is its super_admin, an admin and its only member."""
        await self._check_room(creator, "you are", self._teams_max)
        team = Team(
            id=self._new_id(),
            name=draft.name,
            icon=draft.icon,
            active=True,
            meta_tags=draft.meta_tags,
            members=(creator,),
            admins=(creator,),
            super_admin=creator,
            doc=self._now(),
        )
        await self._teams.insert(team, self._event(creator, MembershipChange.ADDED, actor=creator))
        self._metrics.changes.labels("create").inc()
        _log.info("team_created", team_id=team.id, user_id=creator)
        await self._events.announce(team.id)
        return team

    async def list_mine(self, caller: str, query: TeamsQuery) -> TeamPage:
        """The caller's teams, ordered by id; ``next_cursor`` continues after this page."""
        found = await self._teams.list_for_member(
            caller, tag=query.tag, after_id=query.cursor, limit=query.limit + 1
        )
        page = tuple(found[: query.limit])
        has_more = len(found) > query.limit
        return TeamPage(page, has_more, page[-1].id if has_more else None)

    async def get(self, team_id: str, *, caller: str) -> Team:
        return roles.member_team(await self._teams.get(team_id), caller)

    async def _retrying(self, team_id: str, caller: str, attempt: Attempt) -> Team:
        """Read, decide and write until the write's preconditions hold (see module docstring)."""
        for _ in range(MAX_ATTEMPTS):
            team = await self._teams.get(team_id)
            roles.visible_role(team, caller)
            assert team is not None
            result = await attempt(team)
            if result is not None:
                return result
            self._metrics.lost_races.inc()
        raise Conflict("the team kept changing while this request was applied; retry")

    async def update(self, team_id: str, changes: TeamChanges, *, caller: str) -> Team:
        """Admins change name, icon and tags; the super_admin also ``active``."""
        announced = False

        async def attempt(team: Team) -> Team | None:
            nonlocal announced
            role = roles.check_update(team, caller, changes)
            events = []
            # Each event (or its absence) is right only while the team has what was read: a
            # field it decides on is part of the write's filter unless its event is stored
            # anyway, so a lost race is decided again on the team as it is then.
            as_read: dict[str, Any] = {}
            if changes.settles(team):
                events.append(self._event("", MembershipChange.SETTINGS, actor=caller))
            else:
                as_read.update((k, v) for k, v in changes.fields().items() if k in SETTINGS_FIELDS)
            if changes.active is not None:
                as_read["active"] = team.active
                if changes.active != team.active:
                    change = (
                        MembershipChange.ACTIVATED
                        if changes.active
                        else MembershipChange.DEACTIVATED
                    )
                    events.append(self._event("", change, actor=caller))
            announced = bool(events)
            return await self._teams.update_settings(
                team_id,
                actor=caller,
                changes=changes,
                as_super_admin=role is Role.SUPER_ADMIN and changes.active is not None,
                events=events,
                as_read=as_read,
            )

        before = await self._retrying(team_id, caller, attempt)
        self._metrics.changes.labels("update").inc()
        if announced:
            await self._events.announce(team_id)
        return _apply(before, changes)

    async def _resolve(self, ref: MemberRef, bearer: str) -> str:
        if ref.user_id is not None:
            if not await self._users.exists(ref.user_id, bearer=bearer):
                raise NotFound("no such user")
            return ref.user_id
        assert ref.email is not None
        user_id = await self._users.id_by_email(ref.email, bearer=bearer)
        if user_id is None:
            raise NotFound("no such user")
        return user_id

    async def add_member(self, team_id: str, ref: MemberRef, *, caller: str, bearer: str) -> Team:
        """Admins add a user (by id or email) with the user role."""
        # The role check comes before the look-up, so a plain member cannot probe for accounts.
        roles.check_manage_members(await self._teams.get(team_id), caller)
        user_id = await self._resolve(ref, bearer)
        # Others may fill an account only up to the cap less a reserve: whoever adds a victim to
        # hundreds of teams cannot stop the victim from creating teams of their own.
        await self._check_room(user_id, "this user is", self._added_max)

        async def attempt(team: Team) -> Team | None:
            roles.check_add_member(team, caller, user_id)
            event = self._event(user_id, MembershipChange.ADDED, actor=caller)
            return await self._teams.add_member(team_id, actor=caller, user_id=user_id, event=event)

        team = await self._retrying(team_id, caller, attempt)
        self._metrics.changes.labels("add_member").inc()
        await self._events.announce(team_id)
        return team

    async def _check_room(self, user_id: str, who: str, limit: int) -> None:
        """Refuse a team past ``limit``. The index follows the teams' outboxes, so a burst of
        concurrent adds can pass it by the few still in flight: a bound, not a count."""
        if len(await self._memberships.teams_of(user_id)) < limit:
            return
        if limit < self._teams_max:
            raise Conflict(
                f"{who} already in {limit} teams, the most others may add one account to"
                f" (the last {self._teams_max - limit} of its {self._teams_max} are its own to"
                " create)"
            )
        raise Conflict(f"{who} already in {limit} teams, the most one account may join")

    async def remove_member(self, team_id: str, user_id: str, *, caller: str) -> Team:
        """Admins remove user-level members; the super_admin removes anyone else."""

        async def attempt(team: Team) -> Team | None:
            role = roles.check_remove_member(team, caller, user_id)
            return await self._teams.remove_member(
                team_id,
                actor=caller,
                user_id=user_id,
                as_super_admin=role is Role.SUPER_ADMIN,
                event=self._event(user_id, MembershipChange.REMOVED, actor=caller),
            )

        team = await self._retrying(team_id, caller, attempt)
        self._metrics.changes.labels("remove_member").inc()
        await self._events.announce(team_id)
        return team

    async def elect_admin(self, team_id: str, user_id: str, *, caller: str) -> Team:
        """The super_admin makes a member an admin (already one: no change)."""
        return await self._change_role(
            team_id, user_id, caller, "elect_admin", roles.check_elect_admin, self._teams.add_admin
        )

    async def dismiss_admin(self, team_id: str, user_id: str, *, caller: str) -> Team:
        """The super_admin makes an admin a plain member again (not an admin: no change)."""
        return await self._change_role(
            team_id,
            user_id,
            caller,
            "dismiss_admin",
            roles.check_dismiss_admin,
            self._teams.remove_admin,
        )

    async def transfer(self, team_id: str, user_id: str, *, caller: str) -> Team:
        """The super_admin hands the role to another member and stays an admin."""
        team = await self._change_role(
            team_id,
            user_id,
            caller,
            "transfer",
            roles.check_transfer,
            self._teams.transfer_super_admin,
        )
        _log.info("super_admin_transferred", team_id=team_id, user_id=user_id, actor=caller)
        return team

    async def _change_role(
        self,
        team_id: str,
        user_id: str,
        caller: str,
        label: str,
        check: Callable[[Team | None, str, str], bool],
        write: RoleWrite,
    ) -> Team:
        """Decide with ``check`` (False: nothing to change), write the change with its ``roles``
        event, and announce it; a request that changes nothing writes and announces nothing."""
        changed = False

        async def attempt(team: Team) -> Team | None:
            nonlocal changed
            changed = check(team, caller, user_id)
            if not changed:
                return team
            event = self._event(user_id, MembershipChange.ROLES, actor=caller)
            return await write(team_id, actor=caller, user_id=user_id, event=event)

        team = await self._retrying(team_id, caller, attempt)
        self._metrics.changes.labels(label).inc()
        if changed:
            await self._events.announce(team_id)
        return team

    async def leave(self, team_id: str, *, caller: str) -> None:
        """The caller leaves; the last member leaving deletes the team."""
        for _ in range(MAX_ATTEMPTS):
            kind = roles.check_leave(await self._teams.get(team_id), caller)
            event = self._event(caller, MembershipChange.REMOVED, actor=caller)
            if kind is roles.Leave.LAST_MEMBER:
                # Emptied now, deleted once the event is published.
                done = await self._teams.close_if_sole_member(team_id, user_id=caller, event=event)
            else:
                done = await self._teams.leave(team_id, user_id=caller, event=event)
            if done:
                self._metrics.changes.labels("leave").inc()
                if kind is roles.Leave.LAST_MEMBER:
                    _log.info("team_deleted", team_id=team_id, user_id=caller)
                await self._events.announce(team_id)
                return
            self._metrics.lost_races.inc()
        raise Conflict("the team kept changing while this request was applied; retry")


def _apply(team: Team, changes: TeamChanges) -> Team:
    """The team after a ``$set`` of these changes (what the database now holds)."""
    values = changes.fields()
    if changes.meta_tags is not None:
        values["meta_tags"] = changes.meta_tags  # a tuple in the domain, a list when stored
    return dataclasses.replace(team, **values)
