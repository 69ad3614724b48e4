"""The relay's side of the message life cycle: thread replies in, update/read/presence frames
out, and the gate's rules for replies (DESIGN 5b)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from chatcore.errors import Forbidden, InvalidInput
from chatcore.message_state import Reaction, StoredMessage
from chatcore.proto.chat.v1 import chat_pb2
from services.relay.frames import (
    ChatFrame,
    FrameError,
    hello_frame,
    parse_frame,
    presence_frame,
    read_frame,
    update_frame,
)
from services.relay.gate import ROOT_RETRY_S, Gate
from services.relay.hub import Session
from tests.unit.relay_fakes import FakeAuthority

TEAM = "a" * 32
OTHER_TEAM = "f" * 32
ALICE = "1" * 32
BOB = "2" * 32
CAROL = "3" * 32
DAVE = "4" * 32  # not a member
SENT = datetime(2026, 1, 2, 10, 0, 0, 123000, tzinfo=UTC)
MESSAGE_KEYS = {
    "id",
    "seq",
    "channel_id",
    "to",
    "type",
    "data",
    "from",
    "ts",
    "thread_id",
    "edited_ts",
    "deleted",
    "reactions",
}


def _frame(**fields: Any) -> str:
    base: dict[str, Any] = {"channel_id": TEAM, "to": "*", "type": "text", "data": "hello"}
    base.update(fields)
    return json.dumps(base)


def _stored(**fields: Any) -> StoredMessage:
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


def _update(seq: int, change: str, state: StoredMessage) -> dict[str, Any]:
    frame = update_frame(chat_pb2.MessageUpdate(seq=seq, change=change, message=state.to_proto()))
    body = json.loads(frame)
    assert isinstance(body, dict)
    return body


# --- thread_id on message frames -----------------------------------------------------------------


def test_a_message_frame_may_name_the_message_it_answers() -> None:
    """``thread_id`` is kept on the parsed frame; absent or null means no thread."""
    frame = parse_frame(_frame(thread_id="root_1", client_msg_id="c1"))
    assert frame == ChatFrame(TEAM, "*", "text", "hello", "c1", thread_id="root_1")
    assert parse_frame(_frame()) == ChatFrame(TEAM, "*", "text", "hello", "")
    assert parse_frame(_frame(thread_id=None)) == ChatFrame(TEAM, "*", "text", "hello", "")


@pytest.mark.parametrize("thread_id", ["", "a b", "../x", "x" * 65, 5, ["r"], {"$ne": ""}])
def test_a_bad_thread_id_is_an_invalid_frame_naming_the_client_msg_id(thread_id: object) -> None:
    """A thread_id that is not a message id is refused as ``invalid``, with the frame's
    client_msg_id so the client can match the error to its send."""
    with pytest.raises(FrameError) as refused:
        parse_frame(_frame(thread_id=thread_id, client_msg_id="c-9"))
    assert refused.value.frame_code == "invalid"
    assert refused.value.client_msg_id == "c-9"


# --- update frames -------------------------------------------------------------------------------


def test_an_update_frame_has_exactly_the_contract_s_fields() -> None:
    """``{"type":"update","seq","channel_id","change","message"}``: seq is the change's, the
    message carries its own seq and every field of the 5b message object."""
    state = _stored(
        data="edited text",
        edited_ts=datetime(2026, 1, 2, 10, 1, 0, 500000, tzinfo=UTC),
        last_change=42,
    )
    body = _update(42, "edited", state)
    assert set(body) == {"type", "seq", "channel_id", "change", "message"}
    assert body["type"] == "update"
    assert body["seq"] == 42
    assert body["channel_id"] == TEAM
    assert body["change"] == "edited"
    assert body["message"] == {
        "id": "m1",
        "seq": 10,
        "channel_id": TEAM,
        "to": "*",
        "type": "text",
        "data": "edited text",
        "from": ALICE,
        "ts": "2026-01-02T10:00:00.123Z",
        "thread_id": None,
        "edited_ts": "2026-01-02T10:01:00.500Z",
        "deleted": False,
        "reactions": [],
    }


def test_an_update_s_message_is_the_stored_message_s_client_object() -> None:
    """What the relay renders equals what history and changes serve for the same message."""
    state = _stored(
        to=BOB,
        reactions=(Reaction("👍", (BOB,)), Reaction(":tada:", (ALICE, BOB))),
        thread_replies=2,
        thread_last_reply_ts=datetime(2026, 1, 2, 11, 0, tzinfo=UTC),
        edited_ts=datetime(2026, 1, 2, 10, 1, tzinfo=UTC),
    )
    assert _update(50, "reaction", state)["message"] == state.public()


def test_reactions_carry_their_count_and_at_most_20_users_in_order_of_first_use() -> None:
    """Each reaction has emoji, full count and the first 20 users; emoji in order of first use."""
    many = tuple(f"{n:032x}" for n in range(1, 26))
    state = _stored(reactions=(Reaction("❤️", many), Reaction("👍", (BOB,))))
    reactions = _update(60, "reaction", state)["message"]["reactions"]
    assert reactions == [
        {"emoji": "❤️", "count": 25, "users": list(many[:20])},
        {"emoji": "👍", "count": 1, "users": [BOB]},
    ]


def test_only_a_thread_root_carries_a_thread_summary() -> None:
    """A root with replies has ``thread``; a reply has its ``thread_id`` and no summary."""
    root = _stored(thread_replies=3, thread_last_reply_ts=datetime(2026, 1, 2, 12, tzinfo=UTC))
    message = _update(70, "thread", root)["message"]
    assert message["thread"] == {"replies": 3, "last_reply_ts": "2026-01-02T12:00:00.000Z"}
    assert set(message) == MESSAGE_KEYS | {"thread"}
    reply = _stored(id="m2", seq=70, thread_id="m1")
    message = _update(71, "edited", reply)["message"]
    assert message["thread_id"] == "m1"
    assert "thread" not in message
    assert set(message) == MESSAGE_KEYS


def test_a_deleted_message_s_update_is_a_tombstone() -> None:
    """A deleted message keeps id and seq, its data is "" and deleted is true."""
    state = _stored(data="", deleted=True, thread_replies=1, thread_last_reply_ts=SENT)
    body = _update(80, "deleted", state)
    assert body["change"] == "deleted"
    message = body["message"]
    assert (message["id"], message["seq"], message["data"], message["deleted"]) == (
        "m1",
        10,
        "",
        True,
    )
    assert message["reactions"] == []
    assert message["thread"]["replies"] == 1


# --- read, presence, hello -----------------------------------------------------------------------


def test_a_read_frame_has_exactly_the_contract_s_fields() -> None:
    """``{"type":"read","channel_id","seq"}``."""
    assert json.loads(read_frame(TEAM, 99)) == {"type": "read", "channel_id": TEAM, "seq": 99}


def test_a_presence_frame_has_exactly_the_contract_s_fields() -> None:
    """``{"type":"presence","channel_id","user_id","status"}``."""
    assert json.loads(presence_frame(TEAM, BOB, "offline")) == {
        "type": "presence",
        "channel_id": TEAM,
        "user_id": BOB,
        "status": "offline",
    }


def test_hello_carries_unread_per_team_and_an_empty_object_without() -> None:
    """``hello`` has ``unread`` keyed by team with count and mentions; ``{}`` when none given."""
    unread = {TEAM: {"count": 4, "mentions": 2}, OTHER_TEAM: {"count": 0, "mentions": 0}}
    body = json.loads(hello_frame(ALICE, [TEAM, OTHER_TEAM], "r1", 25, unread))
    assert body["unread"] == unread
    assert body["type"] == "hello"
    assert json.loads(hello_frame(ALICE, [TEAM], "r1", 25))["unread"] == {}


# --- the gate's rules for replies ----------------------------------------------------------------


def _found(
    to: str, sender: str, *, thread_id: str = "", deleted: bool = False
) -> chat_pb2.GetMessageReply:
    return chat_pb2.GetMessageReply(
        found=True, to=to, sender=sender, thread_id=thread_id, deleted=deleted
    )


MESSAGES = {
    (TEAM, "root"): _found("*", ALICE),
    (TEAM, "reply"): _found("*", BOB, thread_id="root"),
    (TEAM, "dm"): _found(BOB, ALICE),
    (TEAM, "dm_reply"): _found(ALICE, BOB, thread_id="dm"),
    (TEAM, "gone"): _found("*", ALICE, deleted=True),
    (TEAM, "reply_to_gone"): _found("*", BOB, thread_id="gone"),
    (OTHER_TEAM, "elsewhere"): _found("*", ALICE),
}


async def _no_pause(_seconds: float) -> None:
    pass


def _gate() -> Gate:
    authority = FakeAuthority(members={TEAM: [ALICE, BOB, CAROL]}, messages=MESSAGES)
    return Gate(authority, sleep=_no_pause)


def _session(user: str) -> Session:
    return Session(user, object(), {TEAM: True})


def _reply(thread_id: str, to: str = "*") -> ChatFrame:
    return ChatFrame(TEAM, to, "text", "a reply", "c1", thread_id=thread_id)


async def test_a_reply_to_a_team_message_goes_to_everyone() -> None:
    """Replying to a team message with to "*" passes, the frame naming its root."""
    resolved = await _gate().check_reply(_session(CAROL), _reply("root"))
    assert resolved == _reply("root")


@pytest.mark.parametrize("to", [BOB, ALICE])
async def test_a_reply_to_a_team_message_cannot_be_a_dm(to: str) -> None:
    """A reply in a team thread addressed to one member is forbidden."""
    with pytest.raises(Forbidden):
        await _gate().check_reply(_session(CAROL), _reply("root", to=to))


@pytest.mark.parametrize(("user", "other"), [(ALICE, BOB), (BOB, ALICE)])
async def test_a_reply_in_a_dm_thread_goes_to_the_other_party(user: str, other: str) -> None:
    """Either person of a DM replies to the other one."""
    resolved = await _gate().check_reply(_session(user), _reply("dm", to=other))
    assert resolved.thread_id == "dm"
    assert resolved.to == other


@pytest.mark.parametrize(("user", "to"), [(ALICE, "*"), (ALICE, CAROL), (BOB, "*"), (BOB, BOB)])
async def test_a_reply_in_a_dm_thread_to_anyone_else_is_forbidden(user: str, to: str) -> None:
    """A DM thread's reply to the whole team or to a third member is forbidden."""
    with pytest.raises(Forbidden):
        await _gate().check_reply(_session(user), _reply("dm", to=to))


@pytest.mark.parametrize("thread_id", ["dm", "dm_reply"])
@pytest.mark.parametrize("to", ["*", ALICE, BOB])
async def test_a_third_party_cannot_reply_into_someone_else_s_dm(thread_id: str, to: str) -> None:
    """To anyone outside a DM, its thread does not exist: "no such message", not forbidden."""
    with pytest.raises(InvalidInput, match="no such message") as refused:
        await _gate().check_reply(_session(CAROL), _reply(thread_id, to=to))
    assert not isinstance(refused.value, Forbidden)


@pytest.mark.parametrize("thread_id", ["nothing", "elsewhere"])
async def test_a_reply_to_an_unknown_message_is_refused(thread_id: str) -> None:
    """A root that is not a message of this channel (unknown, another team's) is refused."""
    with pytest.raises(InvalidInput, match="no such message"):
        await _gate().check_reply(_session(CAROL), _reply(thread_id))


async def test_a_reply_sent_before_its_root_is_stored_waits_for_it() -> None:
    """A root acked but not yet stored (found on the third look) takes the reply; a root never
    found is refused once the pauses of ROOT_RETRY_S, and no more, have passed."""
    authority = FakeAuthority(members={TEAM: [ALICE, BOB, CAROL]}, messages={})
    looks: list[str] = []
    found_on_look = 3

    async def message(channel_id: str, message_id: str) -> chat_pb2.GetMessageReply:
        looks.append(message_id)
        if message_id == "late" and len(looks) >= found_on_look:
            return _found("*", ALICE)
        return chat_pb2.GetMessageReply(found=False)

    authority.message = message  # type: ignore[method-assign]
    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    gate = Gate(authority, sleep=pause)
    resolved = await gate.check_reply(_session(CAROL), _reply("late"))
    assert resolved.thread_id == "late"
    assert pauses == list(ROOT_RETRY_S[:2])
    looks.clear()
    pauses.clear()
    with pytest.raises(InvalidInput, match="no such message"):
        await gate.check_reply(_session(CAROL), _reply("never"))
    assert pauses == list(ROOT_RETRY_S)
    assert len(looks) == len(ROOT_RETRY_S) + 1


async def test_a_reply_to_a_reply_attaches_to_the_root() -> None:
    """Answering a reply puts the new message in the root's thread."""
    resolved = await _gate().check_reply(_session(CAROL), _reply("reply"))
    assert resolved.thread_id == "root"
    dm_resolved = await _gate().check_reply(_session(ALICE), _reply("dm_reply", to=BOB))
    assert dm_resolved.thread_id == "dm"


@pytest.mark.parametrize("thread_id", ["gone", "reply_to_gone"])
async def test_a_reply_to_a_deleted_root_is_refused(thread_id: str) -> None:
    """A thread whose root was deleted takes no more replies, directly or via a reply."""
    with pytest.raises(InvalidInput):
        await _gate().check_reply(_session(CAROL), _reply(thread_id))


async def test_a_frame_without_thread_id_is_returned_unchanged() -> None:
    """A plain message is checked as usual and comes back as it was."""
    frame = ChatFrame(TEAM, BOB, "text", "hi", "c1")
    assert await _gate().check_reply(_session(ALICE), frame) == frame


async def test_a_plain_message_still_gets_the_usual_checks() -> None:
    """Without thread_id, a DM to a non-member is still forbidden."""
    with pytest.raises(Forbidden):
        await _gate().check_reply(_session(ALICE), ChatFrame(TEAM, DAVE, "text", "hi", "c1"))


async def test_a_non_member_cannot_reply() -> None:
    """Someone outside the team is forbidden before any thread is looked at."""
    outsider = Session(DAVE, object(), {OTHER_TEAM: True})
    with pytest.raises(Forbidden):
        await _gate().check_reply(outsider, _reply("root"))


async def test_a_reply_in_a_dm_thread_needs_the_other_party_still_a_member() -> None:
    """A DM thread's reply to someone who left the team is forbidden like any DM to them."""
    gate = Gate(FakeAuthority(members={TEAM: [ALICE, CAROL]}, messages=MESSAGES))
    with pytest.raises(Forbidden):
        await gate.check_reply(_session(ALICE), _reply("dm", to=BOB))
