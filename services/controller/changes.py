"""Applying a change to a stored message: the rules, without I/O (DESIGN 5b).

The management service authorized the change (who may edit, delete or react) before producing it;
what is decided here is whether it still applies when the controller reaches it in the channel's
log, and what the message looks like after it:

* A change at or below the message's ``last_change`` was applied before (the record was consumed
  again): ``ALREADY``, nothing changes, the current state is fanned out again.
* A change that no longer applies is ``DROPPED``, never stored nor fanned out: the message is
  unknown or deleted, an edit of something other than a text, a reaction the user already has (or
  removing one they do not have), a 21st distinct emoji.
* Otherwise ``APPLIED`` with the new state, whose ``last_change`` is the change's seq.

A thread reply updates its root's summary the same way (``thread_reply``), at the reply's seq.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime

from chatcore import schema as s
from chatcore.message_state import REACTIONS_MAX, Reaction, StoredMessage, reaction_users
from chatcore.messages import to_datetime
from chatcore.proto.chat.v1 import chat_pb2

EDITED, DELETED, REACTION, THREAD = "edited", "deleted", "reaction", "thread"

CHANGE_NAMES: dict[int, str] = {
    chat_pb2.CHANGE_KIND_EDIT: EDITED,
    chat_pb2.CHANGE_KIND_DELETE: DELETED,
    chat_pb2.CHANGE_KIND_REACTION_ADD: REACTION,
    chat_pb2.CHANGE_KIND_REACTION_REMOVE: REACTION,
}


class Outcome(enum.Enum):
    APPLIED = "applied"
    ALREADY = "already"
    DROPPED = "dropped"


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    state: StoredMessage | None
    reason: str = ""


def _dropped(state: StoredMessage | None, reason: str) -> Result:
    return Result(Outcome.DROPPED, state, reason)


def apply_change(state: StoredMessage | None, change: chat_pb2.MessageChange, seq: int) -> Result:
    """The message after ``change`` (consumed at ``seq``), or why it does not apply."""
    if state is None or state.channel_id != change.channel_id:
        return _dropped(state, "unknown message")
    if seq <= state.last_change:
        return Result(Outcome.ALREADY, state)
    if state.deleted:
        return _dropped(state, "message deleted")
    at = to_datetime(change.ts_ms)
    kind = change.kind
    if kind == chat_pb2.CHANGE_KIND_EDIT:
        if state.type != s.TEXT:
            return _dropped(state, "only a text can be edited")
        changed = replace(state, data=change.data, edited_ts=at)
    elif kind == chat_pb2.CHANGE_KIND_DELETE:
        # A tombstone keeps its id, seq and thread; its content and reactions go.
        changed = replace(state, data="", deleted=True, reactions=())
    elif kind == chat_pb2.CHANGE_KIND_REACTION_ADD:
        reactions = _with_reaction(state.reactions, change.emoji, change.actor)
        if reactions is None:
            return _dropped(state, "reaction already there, or 20 emoji already")
        changed = replace(state, reactions=reactions)
    elif kind == chat_pb2.CHANGE_KIND_REACTION_REMOVE:
        if change.actor not in reaction_users(state.reactions, change.emoji):
            return _dropped(state, "no such reaction")
        changed = replace(state, reactions=_without_reaction(state.reactions, change))
    else:
        return _dropped(state, f"unknown change kind {kind}")
    return Result(Outcome.APPLIED, replace(changed, last_change=seq))


def _with_reaction(
    reactions: tuple[Reaction, ...], emoji: str, user: str
) -> tuple[Reaction, ...] | None:
    for i, reaction in enumerate(reactions):
        if reaction.emoji == emoji:
            if user in reaction.users:
                return None
            updated = Reaction(emoji, (*reaction.users, user))
            return (*reactions[:i], updated, *reactions[i + 1 :])
    if len(reactions) >= REACTIONS_MAX:
        return None
    return (*reactions, Reaction(emoji, (user,)))


def _without_reaction(
    reactions: tuple[Reaction, ...], change: chat_pb2.MessageChange
) -> tuple[Reaction, ...]:
    out = []
    for reaction in reactions:
        if reaction.emoji == change.emoji:
            users = tuple(u for u in reaction.users if u != change.actor)
            if users:
                out.append(Reaction(reaction.emoji, users))
        else:
            out.append(reaction)
    return tuple(out)


def thread_reply_deleted(root: StoredMessage | None, delete_seq: int) -> Result:
    """The root after one of its replies was deleted at ``delete_seq``: one reply fewer (a
    tombstone is no reply to count; the last reply's time stays, as it was)."""
    if root is None:
        return _dropped(root, "unknown thread root")
    if delete_seq <= root.last_change:
        return Result(Outcome.ALREADY, root)
    return Result(
        Outcome.APPLIED,
        replace(root, thread_replies=max(0, root.thread_replies - 1), last_change=delete_seq),
    )


def thread_reply(root: StoredMessage | None, reply_seq: int, reply_ts: datetime) -> Result:
    """The root after one more reply stored at ``reply_seq``."""
    if root is None:
        return _dropped(root, "unknown thread root")
    if reply_seq <= root.last_change:
        return Result(Outcome.ALREADY, root)
    if root.deleted:
        return _dropped(root, "thread root deleted")
    last = root.thread_last_reply_ts
    return Result(
        Outcome.APPLIED,
        replace(
            root,
            thread_replies=root.thread_replies + 1,
            thread_last_reply_ts=reply_ts if last is None or reply_ts > last else last,
            last_change=reply_seq,
        ),
    )
