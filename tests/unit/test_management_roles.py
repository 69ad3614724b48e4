"""Seed 002's privilege table, rule by rule, over every role and a stranger."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from chatcore.errors import ChatError, Conflict, Forbidden, NotFound
from services.management import roles
from services.management.model import Role, Team, TeamChanges

S, A, A2, U, U2, X, N = (f"{c * 32}" for c in "1234567")  # super, admins, users, stranger, new

TEAM = Team(
    id="f" * 32,
    name="t",
    icon="",
    active=True,
    meta_tags=(),
    members=(S, A, A2, U, U2),
    admins=(S, A, A2),
    super_admin=S,
    doc=datetime(2026, 1, 1, tzinfo=UTC),
)
CALLERS = {"stranger": X, "user": U, "admin": A, "super_admin": S}

Outcome = type[ChatError] | object


def _outcome(rule: Callable[[], object]) -> Outcome:
    try:
        return rule()
    except ChatError as exc:
        return type(exc)


def test_role_of_each_kind_of_member() -> None:
    """Roles follow super_admin > admins > members; strangers have none."""
    assert [TEAM.role_of(u) for u in (S, A, U, X)] == [
        Role.SUPER_ADMIN,
        Role.ADMIN,
        Role.USER,
        None,
    ]


RULES: dict[str, Callable[[str], object]] = {
    "view": lambda c: roles.visible_role(TEAM, c),
    "rename": lambda c: roles.check_update(TEAM, c, TeamChanges(name="x")),
    "deactivate": lambda c: roles.check_update(TEAM, c, TeamChanges(active=False)),
    "add new user": lambda c: roles.check_add_member(TEAM, c, N),
    "add existing member": lambda c: roles.check_add_member(TEAM, c, U2),
    "remove user": lambda c: roles.check_remove_member(TEAM, c, U2),
    "remove admin": lambda c: roles.check_remove_member(TEAM, c, A2),
    "remove super_admin": lambda c: roles.check_remove_member(TEAM, c, S),
    "remove non-member": lambda c: roles.check_remove_member(TEAM, c, N),
    "elect user": lambda c: roles.check_elect_admin(TEAM, c, U2),
    "elect admin again": lambda c: roles.check_elect_admin(TEAM, c, A2),
    "elect non-member": lambda c: roles.check_elect_admin(TEAM, c, N),
    "dismiss admin": lambda c: roles.check_dismiss_admin(TEAM, c, A2),
    "dismiss user": lambda c: roles.check_dismiss_admin(TEAM, c, U2),
    "dismiss super_admin": lambda c: roles.check_dismiss_admin(TEAM, c, S),
    "transfer to member": lambda c: roles.check_transfer(TEAM, c, U2),
    "transfer to non-member": lambda c: roles.check_transfer(TEAM, c, N),
    "leave": lambda c: roles.check_leave(TEAM, c),
}

# caller kind -> expected outcome per rule (an exception type, or the returned value)
EXPECTED: dict[str, dict[str, Outcome]] = {
    "view": {
        "stranger": NotFound,
        "user": Role.USER,
        "admin": Role.ADMIN,
        "super_admin": Role.SUPER_ADMIN,
    },
    "rename": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Role.ADMIN,
        "super_admin": Role.SUPER_ADMIN,
    },
    "deactivate": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Forbidden,
        "super_admin": Role.SUPER_ADMIN,
    },
    "add new user": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Role.ADMIN,
        "super_admin": Role.SUPER_ADMIN,
    },
    "add existing member": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Conflict,
        "super_admin": Conflict,
    },
    "remove user": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Role.ADMIN,
        "super_admin": Role.SUPER_ADMIN,
    },
    "remove admin": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Forbidden,
        "super_admin": Role.SUPER_ADMIN,
    },
    "remove super_admin": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Forbidden,
        "super_admin": Conflict,
    },
    "remove non-member": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": NotFound,
        "super_admin": NotFound,
    },
    "elect user": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Forbidden,
        "super_admin": True,
    },
    "elect admin again": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Forbidden,
        "super_admin": False,
    },
    "elect non-member": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Forbidden,
        "super_admin": NotFound,
    },
    "dismiss admin": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Forbidden,
        "super_admin": True,
    },
    "dismiss user": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Forbidden,
        "super_admin": False,
    },
    "dismiss super_admin": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Forbidden,
        "super_admin": Conflict,
    },
    "transfer to member": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Forbidden,
        "super_admin": True,
    },
    "transfer to non-member": {
        "stranger": NotFound,
        "user": Forbidden,
        "admin": Forbidden,
        "super_admin": NotFound,
    },
    "leave": {
        "stranger": NotFound,
        "user": roles.Leave.MEMBER,
        "admin": roles.Leave.MEMBER,
        "super_admin": Conflict,
    },
}


@pytest.mark.parametrize(
    ("rule", "caller"),
    [(rule, caller) for rule in RULES for caller in CALLERS],
)
def test_privilege_table(rule: str, caller: str) -> None:
    """Each rule answers each kind of caller as seed 002's privilege table says."""
    assert _outcome(lambda: RULES[rule](CALLERS[caller])) == EXPECTED[rule][caller]


def test_admin_removing_themselves_is_told_to_leave() -> None:
    """An admin naming themselves in DELETE members gets 409 (use leave), not a removal."""
    with pytest.raises(Conflict, match="leave"):
        roles.check_remove_member(TEAM, A, A)


def test_sole_super_admin_may_leave() -> None:
    """The super_admin who is the last member leaves (closing the team)."""
    alone = Team(
        id="f" * 32,
        name="t",
        icon="",
        active=True,
        meta_tags=(),
        members=(S,),
        admins=(S,),
        super_admin=S,
        doc=TEAM.doc,
    )
    assert roles.check_leave(alone, S) is roles.Leave.LAST_MEMBER


def test_transfer_to_self_changes_nothing() -> None:
    """PUT super_admin naming the current super_admin is an idempotent no-op."""
    assert roles.check_transfer(TEAM, S, S) is False


def test_missing_team_looks_like_a_stranger() -> None:
    """A team that does not exist answers exactly like one the caller is not in."""
    with pytest.raises(NotFound) as missing:
        roles.visible_role(None, S)
    with pytest.raises(NotFound) as foreign:
        roles.visible_role(TEAM, X)
    assert missing.value.message == foreign.value.message
