"""Who may change a message (DESIGN 5b, seed 003) as pure functions over a snapshot.

Each check raises what the caller gets when the rule says no: ``NotFound`` for a message they may
not see (it does not exist for them, as teams do), ``Forbidden`` for one they see but may not
change, ``Conflict`` for one whose state forbids the change (deleted, 20 emoji already).

* Edit: a text, by its author, within the edit window; an admin or the super_admin edits their own
  messages at any time. Nobody edits someone else's message.
* Delete: the author within the window; an admin or the super_admin any message, any time.
* React: any member who can see the message; at most 20 distinct emoji.

The controller applies the change later, in the channel's order, and drops one that no longer
applies (services/controller/changes.py); these checks decide the HTTP answer now.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from chatcore import schema as s
from chatcore.errors import Conflict, Forbidden, NotFound
from chatcore.message_state import REACTIONS_MAX, StoredMessage, reaction_users
from services.management.model import Role

NO_SUCH_MESSAGE = "no such message in this team"


def visible_message(message: StoredMessage | None, team_id: str, caller: str) -> StoredMessage:
    """The message, if it is in this team and the caller may see it."""
    if message is None or message.channel_id != team_id or not message.visible_to(caller):
        raise NotFound(NO_SUCH_MESSAGE)
    return message


def _within(message: StoredMessage, now: datetime, window: timedelta) -> bool:
    return now - message.ts <= window


def check_edit(
    message: StoredMessage, caller: str, role: Role, now: datetime, window: timedelta
) -> None:
    if message.deleted:
        raise Conflict("the message was deleted")
    if message.sender != caller:
        raise Forbidden("only the author can edit a message")
    if message.type != s.TEXT:
        raise Forbidden("only text messages can be edited")
    if role < Role.ADMIN and not _within(message, now, window):
        raise Forbidden(f"messages can be edited for {int(window.total_seconds())} s")


def check_delete(
    message: StoredMessage, caller: str, role: Role, now: datetime, window: timedelta
) -> None:
    """May the caller delete it (an already deleted message is the caller's problem: no-op)."""
    if role >= Role.ADMIN:
        return
    if message.sender != caller:
        raise Forbidden("only the author or a team admin can delete a message")
    if not _within(message, now, window):
        seconds = int(window.total_seconds())
        raise Forbidden(f"messages can be deleted by their author for {seconds} s")


def needs_reaction_change(message: StoredMessage, caller: str, emoji: str, add: bool) -> bool:
    """Whether the reaction request changes anything; ``Conflict`` when it cannot be done."""
    if message.deleted:
        raise Conflict("the message was deleted")
    has = caller in reaction_users(message.reactions, emoji)
    if add:
        if has:
            return False
        known = any(r.emoji == emoji for r in message.reactions)
        if not known and len(message.reactions) >= REACTIONS_MAX:
            raise Conflict(f"a message holds at most {REACTIONS_MAX} different reactions")
        return True
    return has
