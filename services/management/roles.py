"""Seed 002's privilege table as pure functions over a team snapshot: who may do what, to whom.

Every check raises the answer the caller gets when the rule says no:

* ``NotFound`` when the caller is not a member (a stranger learns nothing about the team), or when
  the target user is not a member;
* ``Forbidden`` when the caller's role lacks the privilege;
* ``Conflict`` when the request clashes with the team's state (already a member, the super_admin
  leaving others behind).

The store's conditional updates repeat the same preconditions in their filters; these functions
decide which answer to give, the filters make sure the state the decision was based on still
holds when the write lands.
"""

from __future__ import annotations

import enum

from chatcore.errors import Conflict, Forbidden, NotFound
from services.management.model import Role, Team, TeamChanges

NO_SUCH_TEAM = "no such team"
NO_SUCH_MEMBER = "no such member in this team"


class Leave(enum.Enum):
    """How a member leaves: an ordinary departure, or the last member closing the team."""

    MEMBER = "member"
    LAST_MEMBER = "last_member"


def visible_role(team: Team | None, caller: str) -> Role:
    """The caller's role; a non-member (or a missing team) is told the team does not exist."""
    role = team.role_of(caller) if team is not None else None
    if role is None:
        raise NotFound(NO_SUCH_TEAM)
    return role


def member_team(team: Team | None, caller: str) -> Team:
    """The team, if the caller may see it at all (any role)."""
    visible_role(team, caller)
    assert team is not None
    return team


def check_writable(team: Team) -> None:
    """A deactivated team is read-only for everyone: no sends, uploads, edits, deletes or
    reactions (reading, and marking read, go on)."""
    if not team.active:
        raise Forbidden("this team is deactivated")


def check_update(team: Team | None, caller: str, changes: TeamChanges) -> Role:
    """Admins change name, icon and tags; only the super_admin (de)activates the team."""
    role = visible_role(team, caller)
    if changes.active is not None and role is not Role.SUPER_ADMIN:
        raise Forbidden("only the super_admin can activate or deactivate a team")
    if role < Role.ADMIN:
        raise Forbidden("only team admins can change a team")
    return role


def check_manage_members(team: Team | None, caller: str) -> Role:
    """Adding and removing members takes at least the admin role."""
    role = visible_role(team, caller)
    if role < Role.ADMIN:
        raise Forbidden("only team admins can add or remove members")
    return role


def check_add_member(team: Team | None, caller: str, target: str) -> Role:
    """Admins add users (who join with the user role); adding a member twice is a conflict."""
    role = check_manage_members(team, caller)
    assert team is not None
    if target in team.members:
        raise Conflict("the user is already a member of this team")
    return role


def check_remove_member(team: Team | None, caller: str, target: str) -> Role:
    """Admins remove user-level members; the super_admin removes anyone but themselves."""
    role = check_manage_members(team, caller)
    assert team is not None
    target_role = team.role_of(target)
    if target_role is None:
        raise NotFound(NO_SUCH_MEMBER)
    if target == caller:
        raise Conflict("to leave a team, use POST /v1/teams/{team_id}/leave")
    if role is Role.ADMIN and target_role is not Role.USER:
        raise Forbidden("admins can remove only user-level members")
    return role


def _require_super_admin(team: Team | None, caller: str, what: str) -> Team:
    role = visible_role(team, caller)
    if role is not Role.SUPER_ADMIN:
        raise Forbidden(f"only the super_admin can {what}")
    assert team is not None
    return team


def _target_role(team: Team, target: str) -> Role:
    role = team.role_of(target)
    if role is None:
        raise NotFound(NO_SUCH_MEMBER)
    return role


def check_elect_admin(team: Team | None, caller: str, target: str) -> bool:
    """The super_admin elects any member; True when that changes anything (PUT is idempotent)."""
    checked = _require_super_admin(team, caller, "elect admins")
    return _target_role(checked, target) is Role.USER


def check_dismiss_admin(team: Team | None, caller: str, target: str) -> bool:
    """The super_admin dismisses other admins; True when that changes anything."""
    checked = _require_super_admin(team, caller, "remove admins")
    target_role = _target_role(checked, target)
    if target_role is Role.SUPER_ADMIN:
        raise Conflict("the super admin is always an admin: make another member super admin first")
    return target_role is Role.ADMIN


def check_transfer(team: Team | None, caller: str, target: str) -> bool:
    """The super_admin hands the role to another member; True when that changes anything."""
    checked = _require_super_admin(team, caller, "transfer the super_admin role")
    _target_role(checked, target)
    return target != caller


def check_leave(team: Team | None, caller: str) -> Leave:
    """Anyone leaves; the super_admin only after a transfer, unless they are the last member."""
    role = visible_role(team, caller)
    assert team is not None
    if role is Role.SUPER_ADMIN:
        if len(team.members) > 1:
            raise Conflict("the super admin must make another member super admin before leaving")
        return Leave.LAST_MEMBER
    return Leave.MEMBER
