"""Who may see, edit, delete and react to a message (DESIGN 5b, seed 003)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chatcore.errors import Conflict, Forbidden, NotFound
from chatcore.message_state import Reaction, StoredMessage
from services.management.message_rules import (
    check_delete,
    check_edit,
    needs_reaction_change,
    visible_message,
)
from services.management.model import Role

TEAM = "a" * 32
OTHER_TEAM = "f" * 32
ALICE = "1" * 32
BOB = "2" * 32
CAROL = "3" * 32
SENT = datetime(2026, 1, 2, 10, 0, tzinfo=UTC)
WINDOW = timedelta(seconds=300)
IN_WINDOW = SENT + WINDOW
LATE = SENT + WINDOW + timedelta(milliseconds=1)
PRIVILEGED = (Role.ADMIN, Role.SUPER_ADMIN)


def _message(**fields: Any) -> StoredMessage:
    base: dict[str, Any] = {
        "id": "m1",
        "seq": 10,
        "channel_id": TEAM,
        "to": "*",
        "type": "text",
        "data": "hello",
        "sender": ALICE,
        "ts": SENT,
    }
    base.update(fields)
    return StoredMessage(**base)


# --- visibility ---------------------------------------------------------------------------------


def test_a_team_message_is_visible_to_any_member() -> None:
    """A message to "*" of the caller's team is returned as is."""
    message = _message()
    assert visible_message(message, TEAM, CAROL) is message


def test_a_dm_is_visible_to_its_two_people_only() -> None:
    """Sender and recipient see a DM; anyone else gets not-found, as for a missing message."""
    dm = _message(to=BOB)
    assert visible_message(dm, TEAM, ALICE) is dm
    assert visible_message(dm, TEAM, BOB) is dm
    with pytest.raises(NotFound):
        visible_message(dm, TEAM, CAROL)


def test_a_message_of_another_team_or_none_is_not_found() -> None:
    """A message id from another team answers like an unknown one (404, no existence leak)."""
    with pytest.raises(NotFound) as other:
        visible_message(_message(channel_id=OTHER_TEAM), TEAM, ALICE)
    with pytest.raises(NotFound) as missing:
        visible_message(None, TEAM, ALICE)
    assert other.value.message == missing.value.message
    assert other.value.http_status == 404


# --- edit ---------------------------------------------------------------------------------------


def test_the_author_edits_a_text_within_the_window() -> None:
    """A user edits their own text up to the end of the window, not after."""
    check_edit(_message(), ALICE, Role.USER, SENT, WINDOW)
    check_edit(_message(), ALICE, Role.USER, IN_WINDOW, WINDOW)
    with pytest.raises(Forbidden):
        check_edit(_message(), ALICE, Role.USER, LATE, WINDOW)


@pytest.mark.parametrize("role", [Role.USER, *PRIVILEGED])
def test_nobody_edits_someone_else_s_message(role: Role) -> None:
    """Not even an admin or the super_admin may edit another member's message."""
    with pytest.raises(Forbidden):
        check_edit(_message(), BOB, role, SENT, WINDOW)


@pytest.mark.parametrize("role", PRIVILEGED)
def test_admins_edit_their_own_messages_at_any_time(role: Role) -> None:
    """An admin's or the super_admin's own text stays editable long after the window."""
    check_edit(_message(), ALICE, role, SENT + timedelta(days=400), WINDOW)


@pytest.mark.parametrize("role", [Role.USER, *PRIVILEGED])
def test_only_a_text_can_be_edited(role: Role) -> None:
    """An attachment message cannot be edited, whoever asks."""
    with pytest.raises(Forbidden):
        check_edit(_message(type="image", data="att1"), ALICE, role, SENT, WINDOW)


@pytest.mark.parametrize("role", [Role.USER, *PRIVILEGED])
def test_editing_a_deleted_message_is_a_conflict(role: Role) -> None:
    """A deleted message answers 409, even to its author within the window."""
    deleted = _message(deleted=True, data="")
    with pytest.raises(Conflict):
        check_edit(deleted, ALICE, role, SENT, WINDOW)


# --- delete -------------------------------------------------------------------------------------


def test_the_author_deletes_within_the_window() -> None:
    """A user deletes their own message up to the end of the window, not after."""
    check_delete(_message(), ALICE, Role.USER, IN_WINDOW, WINDOW)
    check_delete(_message(type="file", data="att1"), ALICE, Role.USER, SENT, WINDOW)
    with pytest.raises(Forbidden):
        check_delete(_message(), ALICE, Role.USER, LATE, WINDOW)


def test_a_user_cannot_delete_someone_else_s_message() -> None:
    """A plain member deleting another's message gets 403, within the window too."""
    with pytest.raises(Forbidden) as refused:
        check_delete(_message(), BOB, Role.USER, SENT, WINDOW)
    assert refused.value.http_status == 403


@pytest.mark.parametrize("role", PRIVILEGED)
def test_admins_delete_any_message_at_any_time(role: Role) -> None:
    """An admin or the super_admin deletes anyone's message, however old, DMs between others too."""
    long_after = SENT + timedelta(days=400)
    check_delete(_message(), BOB, role, long_after, WINDOW)
    check_delete(_message(to=CAROL), BOB, role, long_after, WINDOW)
    check_delete(_message(sender=BOB), BOB, role, long_after, WINDOW)


# --- reactions ----------------------------------------------------------------------------------


def test_adding_a_new_reaction_is_a_change() -> None:
    """A reaction the caller does not have yet is to be added, on a new or an existing emoji."""
    message = _message(reactions=(Reaction("👍", (BOB,)),))
    assert needs_reaction_change(message, CAROL, "👍", add=True) is True
    assert needs_reaction_change(message, CAROL, "🎉", add=True) is True


def test_adding_a_reaction_the_caller_has_is_idempotent() -> None:
    """Adding the same emoji again changes nothing (204, no record)."""
    message = _message(reactions=(Reaction("👍", (BOB,)),))
    assert needs_reaction_change(message, BOB, "👍", add=True) is False


def test_removing_is_a_change_only_for_a_reaction_the_caller_has() -> None:
    """Removing one's own reaction is a change; removing one not had is a no-op."""
    message = _message(reactions=(Reaction("👍", (BOB,)),))
    assert needs_reaction_change(message, BOB, "👍", add=False) is True
    assert needs_reaction_change(message, CAROL, "👍", add=False) is False
    assert needs_reaction_change(message, BOB, "🎉", add=False) is False


def test_a_21st_distinct_emoji_is_a_conflict() -> None:
    """With 20 emoji on a message, a new one is refused; joining an existing one is not."""
    message = _message(reactions=tuple(Reaction(f":e{n}:", (BOB,)) for n in range(20)))
    with pytest.raises(Conflict):
        needs_reaction_change(message, CAROL, ":e20:", add=True)
    assert needs_reaction_change(message, CAROL, ":e3:", add=True) is True
    assert needs_reaction_change(message, BOB, ":e3:", add=False) is True
    assert needs_reaction_change(message, BOB, ":e3:", add=True) is False


@pytest.mark.parametrize("add", [True, False])
def test_reacting_to_a_deleted_message_is_a_conflict(add: bool) -> None:
    """Adding or removing a reaction on a deleted message answers 409."""
    with pytest.raises(Conflict):
        needs_reaction_change(_message(deleted=True, data=""), BOB, "👍", add=add)
