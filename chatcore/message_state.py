"""A stored message as it stands now (DESIGN 5b): its document, its wire form, its client object.

The controller applies changes to it (``services/controller/changes.py``) and stores it; the
management service reads it for history, changes and the REST calls that change it; the relay
renders the ``update`` frames from its wire form. Every conversion lives here so the three agree
on every field. A new message's client object (``chatcore.messages.client_object``, on the
delivery hot path) has the same keys, with the defaults below.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chatcore import schema as s
from chatcore.messages import (
    TYPE_NAMES,
    TYPE_VALUES,
    from_datetime,
    iso_datetime,
    to_datetime,
)
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.unread import mentioned

# A reaction shows at most this many of the users who reacted (its count has them all).
REACTION_USERS_SHOWN = 20
# Distinct emoji per message.
REACTIONS_MAX = 20


@dataclass(frozen=True, slots=True)
class Reaction:
    """One emoji on a message and everyone who reacted with it, in the order they did."""

    emoji: str
    users: tuple[str, ...]

    def public(self) -> dict[str, Any]:
        return {
            "emoji": self.emoji,
            "count": len(self.users),
            "users": list(self.users[:REACTION_USERS_SHOWN]),
        }


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A message as stored, with everything changes have done to it.

    ``count`` is the number of team messages (``to: "*"``) the channel held up to and including
    this one, which turns "unread since seq" into a subtraction; ``last_change`` is the seq of the
    last change applied to it, so a change consumed twice is applied once.
    """

    id: str
    seq: int
    channel_id: str
    to: str
    type: str
    data: str
    sender: str
    ts: datetime
    thread_id: str | None = None
    edited_ts: datetime | None = None
    deleted: bool = False
    reactions: tuple[Reaction, ...] = ()
    thread_replies: int = 0
    thread_last_reply_ts: datetime | None = None
    count: int = 0
    last_change: int = 0
    # Whom a team text's counted mentions name: as stored, then as its last edit left them (None:
    # not recorded, the text then says).
    mentions: tuple[str, ...] | None = None
    # Whom edits took a mention of this text away from (see schema.MESSAGE_UNMENTIONED).
    unmentioned: tuple[str, ...] = ()

    @property
    def is_broadcast(self) -> bool:
        return self.to == s.BROADCAST

    def mentioned_users(self) -> list[str]:
        """The users whose mention of this message is counted: what a delete takes back, and what
        an edit compares its new text with (a message stored before mentions were recorded falls
        back to its text)."""
        if not self.is_broadcast or self.type != s.TEXT:
            return []
        return list(self.mentions) if self.mentions is not None else mentioned(self.data)

    def visible_to(self, user_id: str) -> bool:
        """Team messages to every member; a DM to its two people only."""
        return self.to == s.BROADCAST or user_id in (self.to, self.sender)

    def public(self) -> dict[str, Any]:
        """Exactly the contract's message object (``sender`` is the contract's ``from``)."""
        body: dict[str, Any] = {
            "id": self.id,
            "seq": self.seq,
            "channel_id": self.channel_id,
            "to": self.to,
            "type": self.type,
            "data": self.data,
            "from": self.sender,
            "ts": iso_datetime(self.ts),
            "thread_id": self.thread_id,
            "edited_ts": iso_datetime(self.edited_ts) if self.edited_ts else None,
            "deleted": self.deleted,
            "reactions": [r.public() for r in self.reactions],
        }
        if self.thread_replies:
            body["thread"] = {
                "replies": self.thread_replies,
                "last_reply_ts": (
                    iso_datetime(self.thread_last_reply_ts) if self.thread_last_reply_ts else None
                ),
            }
        return body

    # -- the stored document --

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> StoredMessage:
        """A ``messages`` document (written by the controller) as a ``StoredMessage``."""
        thread = doc.get(s.MESSAGE_THREAD)
        thread = thread if isinstance(thread, Mapping) else {}
        reactions = doc.get(s.MESSAGE_REACTIONS)
        return cls(
            id=str(doc.get(s.MESSAGE_ID, "")),
            seq=int(doc[s.MESSAGE_SEQ]),
            channel_id=str(doc.get(s.MESSAGE_CHANNEL_ID, "")),
            to=str(doc.get(s.MESSAGE_TO, "")),
            type=str(doc.get(s.MESSAGE_TYPE, "")),
            data=str(doc.get(s.MESSAGE_DATA, "")),
            sender=str(doc.get(s.MESSAGE_FROM, "")),
            ts=doc[s.MESSAGE_TS],
            thread_id=_optional_str(doc.get(s.MESSAGE_THREAD_ID)),
            edited_ts=_optional_datetime(doc.get(s.MESSAGE_EDITED_TS)),
            deleted=doc.get(s.MESSAGE_DELETED) is True,
            reactions=tuple(
                Reaction(str(r.get("emoji", "")), tuple(str(u) for u in r.get("users", ())))
                for r in (reactions if isinstance(reactions, list) else ())
                if isinstance(r, Mapping)
            ),
            thread_replies=int(thread.get("replies", 0)),
            thread_last_reply_ts=_optional_datetime(thread.get("last_reply_ts")),
            count=int(doc.get(s.MESSAGE_COUNT, 0)),
            last_change=int(doc.get(s.MESSAGE_LAST_CHANGE, 0)),
            mentions=_optional_users(doc.get(s.MESSAGE_MENTIONS)),
            unmentioned=_optional_users(doc.get(s.MESSAGE_UNMENTIONED)) or (),
        )

    def changed_fields(self) -> dict[str, Any]:
        """The fields a change may alter, as stored (the ``$set`` of an applied change)."""
        return {
            s.MESSAGE_DATA: self.data,
            s.MESSAGE_EDITED_TS: self.edited_ts,
            s.MESSAGE_DELETED: self.deleted,
            s.MESSAGE_REACTIONS: [
                {"emoji": r.emoji, "users": list(r.users)} for r in self.reactions
            ],
            s.MESSAGE_THREAD: (
                {"replies": self.thread_replies, "last_reply_ts": self.thread_last_reply_ts}
                if self.thread_replies
                else None
            ),
            s.MESSAGE_LAST_CHANGE: self.last_change,
            # Only once recorded (an older message keeps falling back to its text); then both,
            # always: an edit that names someone again must clear them from `unmentioned`.
            **(
                {
                    s.MESSAGE_MENTIONS: list(self.mentions),
                    s.MESSAGE_UNMENTIONED: list(self.unmentioned),
                }
                if self.mentions is not None
                else {}
            ),
        }

    # -- the wire form --

    def to_proto(self) -> chat_pb2.MessageState:
        """The wire form of an update: reactions carry at most 20 users each."""
        state = chat_pb2.MessageState(
            message=chat_pb2.ChatMessage(
                id=self.id,
                channel_id=self.channel_id,
                to=self.to,
                type=TYPE_VALUES.get(self.type, chat_pb2.MESSAGE_TYPE_UNSPECIFIED),
                data=self.data,
                sender=self.sender,
                ts_ms=from_datetime(self.ts),
                thread_id=self.thread_id or "",
            ),
            seq=self.seq,
            edited_ts_ms=from_datetime(self.edited_ts) if self.edited_ts else 0,
            deleted=self.deleted,
            reactions=[
                chat_pb2.Reaction(
                    emoji=r.emoji, count=len(r.users), users=r.users[:REACTION_USERS_SHOWN]
                )
                for r in self.reactions
            ],
        )
        if self.thread_replies:
            state.thread.replies = self.thread_replies
            if self.thread_last_reply_ts:
                state.thread.last_reply_ts_ms = from_datetime(self.thread_last_reply_ts)
        return state


def public_from_proto(state: chat_pb2.MessageState) -> dict[str, Any]:
    """The client object of a wire ``MessageState`` (the relay's ``update`` frames)."""
    m = state.message
    body: dict[str, Any] = {
        "id": m.id,
        "seq": state.seq,
        "channel_id": m.channel_id,
        "to": m.to,
        "type": TYPE_NAMES.get(m.type, ""),
        "data": m.data,
        "from": m.sender,
        "ts": iso_datetime(to_datetime(m.ts_ms)),
        "thread_id": m.thread_id or None,
        "edited_ts": iso_datetime(to_datetime(state.edited_ts_ms)) if state.edited_ts_ms else None,
        "deleted": state.deleted,
        "reactions": [
            {"emoji": r.emoji, "count": r.count, "users": list(r.users)} for r in state.reactions
        ],
    }
    if state.thread.replies:
        last = state.thread.last_reply_ts_ms
        body["thread"] = {
            "replies": state.thread.replies,
            "last_reply_ts": iso_datetime(to_datetime(last)) if last else None,
        }
    return body


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _optional_datetime(value: object) -> datetime | None:
    return value if isinstance(value, datetime) else None


def _optional_users(value: object) -> tuple[str, ...] | None:
    return tuple(str(u) for u in value) if isinstance(value, list) else None


def visible_filter(viewer: str) -> dict[str, Any]:
    """The MongoDB condition for the messages (or changes) a viewer may see."""
    return {
        "$or": [
            {s.MESSAGE_TO: s.BROADCAST},
            {s.MESSAGE_FROM: viewer},
            {s.MESSAGE_TO: viewer},
        ]
    }


def reaction_users(reactions: Sequence[Reaction], emoji: str) -> tuple[str, ...]:
    """Who reacted with ``emoji`` (empty when nobody did)."""
    for reaction in reactions:
        if reaction.emoji == emoji:
            return reaction.users
    return ()
