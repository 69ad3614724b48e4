"""Parsing and rendering of the WebSocket contract's frames, and message ids."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chatcore.errors import (
    ChatError,
    Conflict,
    Forbidden,
    InvalidInput,
    RateLimited,
    TooLarge,
    Unavailable,
)
from services.relay.frames import (
    ChatFrame,
    FrameError,
    TypingFrame,
    ack_frame,
    error_frame,
    frame_code,
    hello_frame,
    parse_frame,
)
from services.relay.ids import content_digest, idempotent_message_id, message_id, new_message_id

TEAM = "a" * 32
USER = "b" * 32


def _frame(**fields: Any) -> str:
    base: dict[str, Any] = {"channel_id": TEAM, "to": "*", "type": "text", "data": "hello"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not None})


def _error(raw: str | bytes) -> FrameError:
    with pytest.raises(FrameError) as info:
        parse_frame(raw)
    return info.value


def test_parses_a_team_message_and_ignores_server_fields() -> None:
    """A valid message parses; client-sent id, seq, from and ts are dropped."""
    frame = parse_frame(_frame(id="forged", seq=1, ts="x", client_msg_id="c1", **{"from": USER}))
    assert frame == ChatFrame(TEAM, "*", "text", "hello", "c1")


def test_parses_dm_and_typing() -> None:
    """A DM keeps its recipient; a typing frame parses to its own type."""
    assert isinstance(parse_frame(_frame(to=USER)), ChatFrame)
    assert parse_frame(json.dumps({"type": "typing", "channel_id": TEAM, "to": "*"})) == (
        TypingFrame(TEAM, "*")
    )
    in_thread = {"type": "typing", "channel_id": TEAM, "to": "*", "thread_id": "r" * 32}
    assert parse_frame(json.dumps(in_thread)) == TypingFrame(TEAM, "*", "r" * 32)
    for bad in ({"$ne": None}, "../x", 5):
        with pytest.raises(FrameError):
            parse_frame(json.dumps({**in_thread, "thread_id": bad}))


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "invalid"),
        (b'{"type":"text"}', "invalid"),
        ("[1,2]", "invalid"),
        (_frame(type="sticker"), "invalid"),
        (_frame(type=None), "invalid"),
        (_frame(channel_id={"$ne": None}), "invalid"),
        (_frame(to={"$ne": None}), "invalid"),
        (_frame(channel_id="../x"), "invalid"),
        (_frame(data=""), "invalid"),
        (_frame(data="   "), "invalid"),
        (_frame(data="\u2028\u2029\ufeff\u200b"), "invalid"),
        (_frame(data="\u2800 \u3164"), "invalid"),
        (_frame(data="x" * 4001), "too_large"),
        (_frame(data="bell\x07"), "invalid"),
        (_frame(data=42), "invalid"),
        (_frame(type="image", data="not an id!"), "invalid"),
        (_frame(client_msg_id="x" * 65), "invalid"),
        (_frame(client_msg_id=""), "invalid"),
        (_frame(extra=1), "invalid"),
    ],
)
def test_rejects_bad_frames_with_a_code(raw: str | bytes, code: str) -> None:
    """Each malformed or operator-shaped frame is refused with the contract's error code."""
    assert _error(raw).frame_code == code


def test_text_limits_are_inclusive_and_allow_newlines_and_tabs() -> None:
    """4,000 characters pass; newline and tab are the allowed control characters."""
    assert isinstance(parse_frame(_frame(data="x" * 4000)), ChatFrame)
    assert isinstance(parse_frame(_frame(data="line1\n\tline2")), ChatFrame)
    # Invisible characters are refused only when nothing else shows: joiners stay in emoji.
    assert isinstance(parse_frame(_frame(data="\U0001f468\u200d\U0001f469 \u200b")), ChatFrame)


def test_errors_carry_the_client_msg_id() -> None:
    """An error about a message names its client_msg_id so the client can match it."""
    assert _error(_frame(data="", client_msg_id="m-7")).client_msg_id == "m-7"


def test_rendered_frames_match_the_contract() -> None:
    """hello, ack and error frames have exactly the contract's fields; hello carries the
    unread counts per team (DESIGN 5b) and the edit window."""
    unread = {TEAM: {"count": 3, "mentions": 1}}
    assert json.loads(hello_frame(USER, [TEAM], "r1", 20, unread, 600)) == {
        "type": "hello",
        "user_id": USER,
        "channels": [TEAM],
        "relay": "r1",
        "heartbeat_s": 20,
        "unread": unread,
        "edit_window_s": 600,
    }
    assert json.loads(ack_frame("c", "id1", 7, 1_764_000_000_123)) == {
        "type": "ack",
        "client_msg_id": "c",
        "id": "id1",
        "seq": 7,
        "ts": "2025-11-24T16:00:00.123Z",
    }
    assert set(json.loads(error_frame("forbidden", "no"))) == {
        "type",
        "code",
        "message",
        "client_msg_id",
    }


def test_ids_sort_by_time_without_client_msg_id() -> None:
    """Ids made later sort later; all are 26 characters."""
    ids = [new_message_id(t) for t in (1_000, 1_001, 2_000_000_000_000)]
    assert ids == sorted(ids)
    assert {len(i) for i in ids} == {26}


def test_ids_are_deterministic_per_sender_client_msg_id_and_content() -> None:
    """A retry gets the same id; another sender, client_msg_id or content gets another."""
    hi, bye = content_digest(TEAM, "*", "text", "hi"), content_digest(TEAM, "*", "text", "bye")
    assert message_id(USER, "c1", hi, 1) == message_id(USER, "c1", hi, 99_999)
    assert idempotent_message_id(USER, "c1", hi) != idempotent_message_id(USER, "c2", hi)
    assert idempotent_message_id(USER, "c1", hi) != idempotent_message_id(TEAM, "c1", hi)
    assert idempotent_message_id(USER, "c1", hi) != idempotent_message_id(USER, "c1", bye)
    assert message_id(USER, "", hi, 1) != message_id(USER, "", hi, 1)


@pytest.mark.parametrize(
    "raw",
    [
        "[" * 5000 + "]" * 5000,
        '{"type":"text","channel_id":"' + "a" * 32 + '","to":"*","data":' + "9" * 5000 + "}",
        '{"a":' * 5000 + "1" + "}" * 5000,
    ],
)
def test_json_the_parser_chokes_on_is_an_invalid_frame(raw: str) -> None:
    """Deep nesting and a 5,000-digit number are refused as invalid, never an exception."""
    with pytest.raises(FrameError) as err:
        parse_frame(raw)
    assert err.value.frame_code == "invalid"


def test_each_error_family_has_one_frame_code() -> None:
    """The relay translates every error family to the contract's codes in one place."""
    cases: list[tuple[ChatError, str]] = [
        (Forbidden("x"), "forbidden"),
        (InvalidInput("x"), "invalid"),
        (TooLarge("x"), "too_large"),
        (RateLimited("x", retry_after=1.0), "rate_limited"),
        (Unavailable("x"), "unavailable"),
        (Conflict("x"), "conflict"),
        (FrameError("x", code="too_large"), "too_large"),
        (ChatError("x"), "unavailable"),
    ]
    assert [frame_code(exc) for exc, _ in cases] == [code for _, code in cases]
