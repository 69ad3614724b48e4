"""The management domain's value types: teams, roles, requested changes, stored messages.

Plain frozen data with no I/O. The JSON shapes clients see are built here (``public()``), so the
API layer and the tests agree on one mapping from stored fields to the contract's fields.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chatcore.messages import iso_datetime


class Role(enum.IntEnum):
    """A member's role; ordered, since every privilege of a role includes the ones below it."""

    USER = 1
    ADMIN = 2
    SUPER_ADMIN = 3


class MembershipChange(enum.Enum):
    """What a membership event announces (mapped to the protobuf enum when published)."""

    ADDED = "added"
    REMOVED = "removed"
    DEACTIVATED = "deactivated"
    ACTIVATED = "activated"
    # Team-wide news that changes nobody's access: members' pages read the team again.
    SETTINGS = "settings"
    ROLES = "roles"


@dataclass(frozen=True, slots=True)
class OutboxEvent:
    """A membership event stored in its team's document with the change that caused it.

    It stays there until Kafka acknowledged it; ``id`` tells the published ones apart from any
    appended meanwhile. ``user_id`` is empty for team-wide changes (activated, deactivated).
    """

    id: str
    user_id: str
    change: MembershipChange
    actor: str
    ts_ms: int
    correlation_id: str


@dataclass(frozen=True, slots=True)
class Team:
    """A team as stored; invariants: super_admin in admins, admins a subset of members."""

    id: str
    name: str
    icon: str
    active: bool
    meta_tags: tuple[str, ...]
    members: tuple[str, ...]
    admins: tuple[str, ...]
    super_admin: str
    doc: datetime

    def role_of(self, user_id: str) -> Role | None:
        """The user's role in this team, or None for a non-member."""
        if user_id == self.super_admin:
            return Role.SUPER_ADMIN
        if user_id in self.admins:
            return Role.ADMIN
        if user_id in self.members:
            return Role.USER
        return None

    def public(self) -> dict[str, Any]:
        """The team object of the API."""
        return {
            "id": self.id,
            "name": self.name,
            "icon": self.icon,
            "active": self.active,
            "meta_tags": list(self.meta_tags),
            "members": list(self.members),
            "admins": list(self.admins),
            "super_admin": self.super_admin,
            "doc": iso_datetime(self.doc),
        }


@dataclass(frozen=True, slots=True)
class TeamDraft:
    """What a client may set when creating a team."""

    name: str
    icon: str
    meta_tags: tuple[str, ...]


# The fields of a PATCH that members are shown (a ``settings`` event), as ``fields()`` names them.
SETTINGS_FIELDS = frozenset({"name", "icon", "meta_tags"})


@dataclass(frozen=True, slots=True)
class TeamChanges:
    """A PATCH: None means "leave unchanged"."""

    name: str | None = None
    icon: str | None = None
    meta_tags: tuple[str, ...] | None = None
    active: bool | None = None

    def fields(self) -> dict[str, Any]:
        """The fields to set, as stored (lists for arrays)."""
        values: dict[str, Any] = {}
        if self.name is not None:
            values["name"] = self.name
        if self.icon is not None:
            values["icon"] = self.icon
        if self.meta_tags is not None:
            values["meta_tags"] = list(self.meta_tags)
        if self.active is not None:
            values["active"] = self.active
        return values

    def settles(self, team: Team) -> bool:
        """Whether this changes the name, icon or tags ``team`` has (what members are shown)."""
        return (
            (self.name is not None and self.name != team.name)
            or (self.icon is not None and self.icon != team.icon)
            or (self.meta_tags is not None and self.meta_tags != team.meta_tags)
        )


@dataclass(frozen=True, slots=True)
class MemberRef:
    """Who to add: exactly one of a user id or an email (resolved through the auth service)."""

    user_id: str | None = None
    email: str | None = None
