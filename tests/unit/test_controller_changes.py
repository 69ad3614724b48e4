"""Applying edits, deletes, reactions and thread replies to a stored message (DESIGN 5b)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from chatcore.message_state import Reaction, StoredMessage
from chatcore.messages import to_datetime
from chatcore.proto.chat.v1 import chat_pb2
from services.controller.changes import Outcome, apply_change, thread_reply

TEAM = "a" * 32
OTHER_TEAM = "f" * 32
ALICE = "1" * 32
BOB = "2" * 32
CAROL = "3" * 32
SENT = datetime(2026, 1, 2, 10, 0, 0, 123000, tzinfo=UTC)
CHANGE_TS_MS = 1_767_348_123_456  # 2026-01-02T10:02:03.456Z


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
        "count": 4,
        "last_change": 10,
    }
    base.update(fields)
    return StoredMessage(**base)


def _change(kind: chat_pb2.ChangeKind.ValueType, **fields: Any) -> chat_pb2.MessageChange:
    base: dict[str, Any] = {
        "id": "c" * 32,
        "channel_id": TEAM,
        "message_id": "m1",
        "kind": kind,
        "actor": ALICE,
        "ts_ms": CHANGE_TS_MS,
    }
    base.update(fields)
    return chat_pb2.MessageChange(**base)


def _edit(data: str = "hello, edited") -> chat_pb2.MessageChange:
    return _change(chat_pb2.CHANGE_KIND_EDIT, data=data)


def _delete() -> chat_pb2.MessageChange:
    return _change(chat_pb2.CHANGE_KIND_DELETE)


def _add(emoji: str, actor: str) -> chat_pb2.MessageChange:
    return _change(chat_pb2.CHANGE_KIND_REACTION_ADD, emoji=emoji, actor=actor)


def _remove(emoji: str, actor: str) -> chat_pb2.MessageChange:
    return _change(chat_pb2.CHANGE_KIND_REACTION_REMOVE, emoji=emoji, actor=actor)


def _applied(state: StoredMessage, change: chat_pb2.MessageChange, seq: int) -> StoredMessage:
    result = apply_change(state, change, seq)
    assert result.outcome is Outcome.APPLIED, result.reason
    assert result.state is not None
    assert result.state.last_change == seq
    return result.state


# --- edit ---------------------------------------------------------------------------------------


def test_an_edit_replaces_the_text_and_sets_edited_ts() -> None:
    """The new text and the change's time become the message's; nothing else changes."""
    state = _message(reactions=(Reaction("👍", (BOB,)),), thread_replies=2)
    after = _applied(state, _edit("new text"), 20)
    assert after.data == "new text"
    assert after.edited_ts == to_datetime(CHANGE_TS_MS)
    assert after == replace(
        state, data="new text", edited_ts=to_datetime(CHANGE_TS_MS), last_change=20
    )
    assert after.public()["edited_ts"] == "2026-01-02T10:02:03.456Z"


def test_only_a_text_can_be_edited() -> None:
    """An edit of an image is dropped and the message stays as it was."""
    state = _message(type="image", data="att1")
    result = apply_change(state, _edit(), 20)
    assert result.outcome is Outcome.DROPPED
    assert result.state == state


# --- delete -------------------------------------------------------------------------------------


def test_a_delete_leaves_a_tombstone_that_keeps_its_thread() -> None:
    """Deleted: data "", deleted, reactions gone; id, seq, sender, ts and thread summary stay."""
    last_reply = datetime(2026, 1, 2, 11, 0, tzinfo=UTC)
    state = _message(
        reactions=(Reaction("👍", (BOB, CAROL)), Reaction("🎉", (BOB,))),
        thread_replies=3,
        thread_last_reply_ts=last_reply,
    )
    after = _applied(state, _delete(), 30)
    assert after.deleted is True
    assert after.data == ""
    assert after.reactions == ()
    assert (after.id, after.seq, after.sender, after.ts) == ("m1", 10, ALICE, SENT)
    assert (after.thread_replies, after.thread_last_reply_ts) == (3, last_reply)
    body = after.public()
    assert body["deleted"] is True
    assert body["data"] == ""
    assert body["reactions"] == []
    assert body["thread"] == {"replies": 3, "last_reply_ts": "2026-01-02T11:00:00.000Z"}


def test_nothing_applies_to_a_deleted_message() -> None:
    """After a delete, a later edit, reaction or delete is dropped and changes nothing."""
    deleted = _applied(_message(), _delete(), 30)
    for change in (_edit(), _add("👍", BOB), _remove("👍", BOB), _delete()):
        result = apply_change(deleted, change, 31)
        assert result.outcome is Outcome.DROPPED
        assert result.state == deleted


# --- reactions ----------------------------------------------------------------------------------


def test_reactions_keep_the_order_of_first_use_and_the_order_of_users() -> None:
    """A new emoji goes last; another user of an existing emoji joins it in place."""
    state = _applied(_message(), _add("👍", BOB), 11)
    state = _applied(state, _add("❤️", CAROL), 12)
    state = _applied(state, _add("👍", CAROL), 13)
    state = _applied(state, _add("👍", ALICE), 14)
    assert state.reactions == (Reaction("👍", (BOB, CAROL, ALICE)), Reaction("❤️", (CAROL,)))
    assert state.public()["reactions"] == [
        {"emoji": "👍", "count": 3, "users": [BOB, CAROL, ALICE]},
        {"emoji": "❤️", "count": 1, "users": [CAROL]},
    ]


def test_adding_a_reaction_the_user_already_has_is_dropped() -> None:
    """The same user adding the same emoji again changes nothing."""
    state = _applied(_message(), _add("👍", BOB), 11)
    result = apply_change(state, _add("👍", BOB), 12)
    assert result.outcome is Outcome.DROPPED
    assert result.state == state


def test_removing_a_reaction_the_user_does_not_have_is_dropped() -> None:
    """Removing an emoji nobody used, or one only others used, changes nothing."""
    state = _applied(_message(), _add("👍", BOB), 11)
    for change in (_remove("🎉", BOB), _remove("👍", CAROL)):
        result = apply_change(state, change, 12)
        assert result.outcome is Outcome.DROPPED
        assert result.state == state


def test_removing_a_reaction_keeps_the_other_users() -> None:
    """One user's removal leaves the emoji with the others, in their order."""
    state = _message(reactions=(Reaction("👍", (BOB, CAROL, ALICE)),))
    after = _applied(state, _remove("👍", CAROL), 20)
    assert after.reactions == (Reaction("👍", (BOB, ALICE)),)


def test_removing_the_last_user_removes_the_emoji() -> None:
    """An emoji nobody has any more disappears; the others keep their order."""
    state = _message(
        reactions=(Reaction("👍", (BOB,)), Reaction("🎉", (CAROL,)), Reaction("❤️", (BOB,)))
    )
    after = _applied(state, _remove("🎉", CAROL), 20)
    assert after.reactions == (Reaction("👍", (BOB,)), Reaction("❤️", (BOB,)))


def test_a_21st_distinct_emoji_is_dropped_but_existing_ones_still_grow() -> None:
    """With 20 emoji on a message a new one is dropped; joining one of the 20 still applies."""
    twenty = tuple(Reaction(f":e{n}:", (BOB,)) for n in range(20))
    state = _message(reactions=twenty)
    result = apply_change(state, _add(":e20:", CAROL), 20)
    assert result.outcome is Outcome.DROPPED
    assert result.state == state
    after = _applied(state, _add(":e5:", CAROL), 21)
    assert after.reactions[5] == Reaction(":e5:", (BOB, CAROL))
    assert len(after.reactions) == 20


def test_a_reaction_shows_its_full_count_but_at_most_20_users() -> None:
    """A 21st user of one emoji counts; the message object lists the first 20 users."""
    users = tuple(f"{n:032x}" for n in range(1, 21))
    state = _message(reactions=(Reaction("👍", users),))
    after = _applied(state, _add("👍", CAROL), 20)
    shown = after.public()["reactions"][0]
    assert shown["count"] == 21
    assert shown["users"] == list(users)


# --- redelivery and unknown messages --------------------------------------------------------------


def test_a_change_at_or_below_last_change_is_already_applied() -> None:
    """A record consumed again answers ALREADY with the current state, unchanged."""
    state = _applied(_message(), _edit("first"), 20)
    for seq in (20, 15):
        result = apply_change(state, _edit("second"), seq)
        assert result.outcome is Outcome.ALREADY
        assert result.state == state


def test_a_delete_consumed_again_is_already_applied_not_dropped() -> None:
    """Redelivering the delete itself fans the tombstone out again rather than dropping it."""
    deleted = _applied(_message(), _delete(), 30)
    result = apply_change(deleted, _delete(), 30)
    assert result.outcome is Outcome.ALREADY
    assert result.state == deleted


def test_a_change_to_an_unknown_message_is_dropped() -> None:
    """No stored message: dropped, nothing to store."""
    result = apply_change(None, _edit(), 20)
    assert result.outcome is Outcome.DROPPED
    assert result.state is None


def test_a_change_for_another_channel_is_dropped() -> None:
    """A change whose channel is not the message's never applies to it."""
    state = _message()
    result = apply_change(state, _change(chat_pb2.CHANGE_KIND_EDIT, channel_id=OTHER_TEAM), 20)
    assert result.outcome is Outcome.DROPPED
    assert result.state == state


def test_a_change_of_unknown_kind_is_dropped() -> None:
    """An unspecified change kind changes nothing."""
    state = _message()
    result = apply_change(state, _change(chat_pb2.CHANGE_KIND_UNSPECIFIED), 20)
    assert result.outcome is Outcome.DROPPED
    assert result.state == state


# --- thread replies -------------------------------------------------------------------------------


def test_a_reply_counts_on_its_root_with_its_time() -> None:
    """Each reply adds one to the root's replies and sets the last reply time."""
    first = datetime(2026, 1, 2, 10, 5, tzinfo=UTC)
    second = datetime(2026, 1, 2, 10, 6, tzinfo=UTC)
    result = thread_reply(_message(), 11, first)
    assert result.outcome is Outcome.APPLIED
    assert result.state is not None
    assert (result.state.thread_replies, result.state.thread_last_reply_ts) == (1, first)
    assert result.state.last_change == 11
    again = thread_reply(result.state, 12, second)
    assert again.state is not None
    assert (again.state.thread_replies, again.state.thread_last_reply_ts) == (2, second)
    assert again.state.public()["thread"] == {
        "replies": 2,
        "last_reply_ts": "2026-01-02T10:06:00.000Z",
    }


def test_the_last_reply_time_never_goes_back() -> None:
    """A reply stamped earlier than the last one still counts but keeps the later time."""
    later = datetime(2026, 1, 2, 10, 6, tzinfo=UTC)
    earlier = datetime(2026, 1, 2, 10, 5, tzinfo=UTC)
    root = _message(thread_replies=1, thread_last_reply_ts=later, last_change=11)
    result = thread_reply(root, 12, earlier)
    assert result.outcome is Outcome.APPLIED
    assert result.state is not None
    assert (result.state.thread_replies, result.state.thread_last_reply_ts) == (2, later)


def test_a_reply_consumed_again_is_counted_once() -> None:
    """A reply at or below the root's last change answers ALREADY with the root unchanged."""
    root = _applied(_message(), _edit(), 11)
    counted = thread_reply(root, 12, SENT)
    assert counted.state is not None
    for seq in (12, 11):
        result = thread_reply(counted.state, seq, SENT)
        assert result.outcome is Outcome.ALREADY
        assert result.state == counted.state


def test_a_reply_to_a_deleted_or_unknown_root_is_dropped() -> None:
    """No summary is kept for a deleted root, nor for one that is not stored."""
    deleted = _applied(_message(), _delete(), 30)
    result = thread_reply(deleted, 31, SENT)
    assert result.outcome is Outcome.DROPPED
    assert result.state == deleted
    assert thread_reply(None, 31, SENT).outcome is Outcome.DROPPED
