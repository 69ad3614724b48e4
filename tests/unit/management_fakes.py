"""In-memory stand-ins for the management service's stores, user directory and event publisher.

``MemoryTeamStore`` checks the same preconditions as the MongoDB filters, so the domain's
read-decide-write loop behaves as it does against the database; ``interfere`` lets a test change
the team between the domain's read and its write, as a concurrent request would.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from chatcore.errors import Conflict
from services.management.model import MembershipChange, Message, Team, TeamChanges


class MemoryTeamStore:
    def __init__(self) -> None:
        self.teams: dict[str, Team] = {}
        self.writes = 0
        # Called once before the next conditional write (then cleared): a concurrent change.
        self.interfere: Callable[[MemoryTeamStore], None] | None = None
        # The next N conditional writes match nothing, as if a concurrent change came and went.
        self.fail_next_writes = 0
        # Every method called, in order: proves that rejected input never reached the store.
        self.calls: list[str] = []

    async def insert(self, team: Team) -> None:
        self.calls.append("insert")
        if team.id in self.teams:
            raise Conflict("a team with this id exists")
        self.teams[team.id] = team

    async def get(self, team_id: str) -> Team | None:
        self.calls.append("get")
        return self.teams.get(team_id)

    async def list_for_member(
        self, user_id: str, *, tag: str | None, after_id: str | None, limit: int
    ) -> list[Team]:
        self.calls.append("list_for_member")
        found = sorted(
            (
                t
                for t in self.teams.values()
                if user_id in t.members
                and (tag is None or tag in t.meta_tags)
                and (after_id is None or t.id > after_id)
            ),
            key=lambda t: t.id,
        )
        return found[:limit]

    def _before_write(self) -> bool:
        """Run the interference hook; False when this write is to miss."""
        hook, self.interfere = self.interfere, None
        if hook is not None:
            hook(self)
        if self.fail_next_writes > 0:
            self.fail_next_writes -= 1
            return False
        return True

    def _write(
        self, team_id: str, precondition: Callable[[Team], bool], change: Callable[[Team], Team]
    ) -> tuple[Team, Team] | None:
        if not self._before_write():
            return None
        team = self.teams.get(team_id)
        if team is None or not precondition(team):
            return None
        after = change(team)
        self.teams[team_id] = after
        self.writes += 1
        return team, after

    async def update_settings(
        self, team_id: str, *, actor: str, changes: TeamChanges, as_super_admin: bool
    ) -> Team | None:
        self.calls.append("update_settings")
        values = changes.fields()
        if changes.meta_tags is not None:
            values["meta_tags"] = changes.meta_tags
        result = self._write(
            team_id,
            lambda t: t.super_admin == actor if as_super_admin else actor in t.admins,
            lambda t: dataclasses.replace(t, **values),
        )
        return result[0] if result else None

    async def add_member(self, team_id: str, *, actor: str, user_id: str) -> Team | None:
        self.calls.append("add_member")
        result = self._write(
            team_id,
            lambda t: actor in t.admins and user_id not in t.members,
            lambda t: dataclasses.replace(t, members=(*t.members, user_id)),
        )
        return result[1] if result else None

    async def remove_member(
        self, team_id: str, *, actor: str, user_id: str, as_super_admin: bool
    ) -> Team | None:
        self.calls.append("remove_member")

        def allowed(t: Team) -> bool:
            if actor == user_id or user_id not in t.members:
                return False
            if as_super_admin:
                return t.super_admin == actor
            return actor in t.admins and user_id not in t.admins

        result = self._write(team_id, allowed, lambda t: _without(t, user_id))
        return result[1] if result else None

    async def add_admin(self, team_id: str, *, actor: str, user_id: str) -> Team | None:
        self.calls.append("add_admin")
        result = self._write(
            team_id,
            lambda t: t.super_admin == actor and user_id in t.members and user_id not in t.admins,
            lambda t: dataclasses.replace(t, admins=(*t.admins, user_id)),
        )
        return result[1] if result else None

    async def remove_admin(self, team_id: str, *, actor: str, user_id: str) -> Team | None:
        self.calls.append("remove_admin")
        result = self._write(
            team_id,
            lambda t: actor != user_id and t.super_admin == actor and user_id in t.admins,
            lambda t: dataclasses.replace(t, admins=tuple(a for a in t.admins if a != user_id)),
        )
        return result[1] if result else None

    async def transfer_super_admin(self, team_id: str, *, actor: str, user_id: str) -> Team | None:
        self.calls.append("transfer_super_admin")
        result = self._write(
            team_id,
            lambda t: t.super_admin == actor and user_id in t.members,
            lambda t: dataclasses.replace(
                t,
                super_admin=user_id,
                admins=t.admins if user_id in t.admins else (*t.admins, user_id),
            ),
        )
        return result[1] if result else None

    async def leave(self, team_id: str, *, user_id: str) -> bool:
        self.calls.append("leave")
        result = self._write(
            team_id,
            lambda t: user_id in t.members and t.super_admin != user_id,
            lambda t: _without(t, user_id),
        )
        return result is not None

    async def delete_if_sole_member(self, team_id: str, *, user_id: str) -> bool:
        self.calls.append("delete_if_sole_member")
        if not self._before_write():
            return False
        team = self.teams.get(team_id)
        if team is None or team.super_admin != user_id or team.members != (user_id,):
            return False
        del self.teams[team_id]
        self.writes += 1
        return True


def _without(team: Team, user_id: str) -> Team:
    return dataclasses.replace(
        team,
        members=tuple(m for m in team.members if m != user_id),
        admins=tuple(a for a in team.admins if a != user_id),
    )


class MemoryMessageStore:
    def __init__(self, messages: list[Message] | None = None) -> None:
        self.messages = list(messages or [])
        self.calls: list[str] = []

    async def page(
        self,
        channel_id: str,
        viewer: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
    ) -> list[Message]:
        self.calls.append("page")
        visible = [
            m
            for m in self.messages
            if m.channel_id == channel_id and (m.to == "*" or viewer in (m.to, m.sender))
        ]
        if after is not None:
            return sorted((m for m in visible if m.seq > after), key=lambda m: m.seq)[:limit]
        if before is not None:
            visible = [m for m in visible if m.seq < before]
        return sorted(visible, key=lambda m: m.seq, reverse=True)[:limit]


class FakeUserDirectory:
    """Known users by id and email; records every look-up and the token it came with."""

    def __init__(self, users: dict[str, str] | None = None) -> None:
        self.by_email = dict(users or {})  # email -> user id
        self.lookups: list[tuple[str, str]] = []

    async def id_by_email(self, email: str, *, bearer: str) -> str | None:
        self.lookups.append((email, bearer))
        return self.by_email.get(email)

    async def exists(self, user_id: str, *, bearer: str) -> bool:
        self.lookups.append((user_id, bearer))
        return user_id in self.by_email.values()


@dataclass(frozen=True, slots=True)
class Published:
    team_id: str
    user_id: str
    change: MembershipChange
    actor: str


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list[Published] = []

    async def publish(
        self, team_id: str, user_id: str, change: MembershipChange, *, actor: str
    ) -> None:
        self.events.append(Published(team_id, user_id, change, actor))
