"""Parsing the message life cycle's inputs: reactions, edits, read positions, pages, ids."""

from __future__ import annotations

from typing import Any

import pytest

from chatcore.errors import InvalidInput
from services.management.validation import (
    HISTORY_LIMIT_DEFAULT,
    HISTORY_LIMIT_MAX,
    SEQ_MAX,
    AfterQuery,
    parse_after_query,
    parse_edit,
    parse_message_id,
    parse_reaction,
    parse_read,
)

# England's flag: a black flag, the tag letters "gbeng", then CANCEL TAG.
ENGLAND = "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f"


# --- parse_reaction ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "emoji",
    [
        "\U0001f44d",  # thumbs up
        "\U0001f44d\U0001f3fd",  # thumbs up, medium skin tone
        "\u2764\ufe0f",  # red heart with its variation selector
        "\u2764",  # red heart without it
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # family: man, woman, girl
        "\U0001f1eb\U0001f1f7",  # flag of France
        "1\ufe0f\u20e3",  # keycap 1
        "#\u20e3",  # keycap # without the selector
        ENGLAND,
        ":thumbs_up:",
        ":+1:",
        ":e-mail:",
    ],
)
def test_one_emoji_or_a_short_name_is_a_reaction(emoji: str) -> None:
    """Single emoji (with modifiers, joiners, keycaps, flags) and ``:short_name:`` are accepted
    unchanged."""
    assert parse_reaction(emoji) == emoji


@pytest.mark.parametrize(
    "raw",
    [
        "a",
        "ok",
        "1",
        "\U0001f44d\U0001f44d",  # two emoji
        "\U0001f1eb\U0001f1f7\U0001f1e9\U0001f1ea",  # two flags
        " \U0001f44d",
        "\U0001f44d ",
        "\U0001f44d\n",
        "",
        " ",
        ":Bad:",
        ":two words:",
        "::",
        ":" + "a" * 31 + ":",  # 33 characters
        "\U0001f468" + "\u200d\U0001f468" * 16,  # one joined sequence, 33 characters
        "<b>",
        "<script>alert(1)</script>",
        ":x:<img>",
        "\u200d",
        "\ufe0f",
    ],
)
def test_anything_else_is_not_a_reaction(raw: str) -> None:
    """Letters, several emoji, spaces, over 32 characters, upper case short names and markup are
    refused as invalid input naming the emoji."""
    with pytest.raises(InvalidInput) as refused:
        parse_reaction(raw)
    assert "emoji" in refused.value.details


@pytest.mark.parametrize("raw", [None, 1, ["\U0001f44d"], {"$ne": ""}])
def test_a_reaction_must_be_a_string(raw: object) -> None:
    """A non-string value is refused, never passed on."""
    with pytest.raises(InvalidInput):
        parse_reaction(raw)


def test_a_short_name_of_32_characters_is_the_longest() -> None:
    """``:`` + 30 characters + ``:`` is accepted."""
    name = ":" + "a" * 30 + ":"
    assert parse_reaction(name) == name


# --- parse_edit ----------------------------------------------------------------------------------


def test_an_edit_returns_the_new_text_as_given() -> None:
    """The text is kept exactly, surrounding spaces, newlines and tabs included."""
    assert parse_edit({"data": "  new\ttext\nline 2 "}) == "  new\ttext\nline 2 "
    assert parse_edit({"data": "x" * 4000}) == "x" * 4000


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"data": "ok", "type": "text"}, "type"),
        ({"data": "ok", "$set": {}}, "$set"),
        ({}, "data"),
        ({"data": None}, "data"),
        ({"data": 5}, "data"),
        ({"data": ["x"]}, "data"),
        ({"data": {"$ne": ""}}, "data"),
        ({"data": ""}, "data"),
        ({"data": " \n\t "}, "data"),
        ({"data": "x" * 4001}, "data"),
        ({"data": "bell\x07"}, "data"),
        ({"data": "nul\x00"}, "data"),
        ({"data": "c1\x85"}, "data"),
    ],
)
def test_a_bad_edit_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    """Unknown fields, a missing or non-string text, a blank, too long or control-character text
    are invalid input with the field named."""
    with pytest.raises(InvalidInput) as refused:
        parse_edit(body)
    assert field in refused.value.details


# --- parse_read ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seq", [0, 1, 12345, SEQ_MAX])
def test_a_read_position_is_a_non_negative_integer(seq: int) -> None:
    """Any seq from 0 up to the largest offset is accepted."""
    assert parse_read({"seq": seq}) == seq


def test_an_integral_float_is_a_json_integer() -> None:
    """1.0 is the integer 1 in JSON (and JSON Schema); 1.5 is not."""
    assert parse_read({"seq": 44565.0}) == 44565


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"seq": True}, "seq"),
        ({"seq": False}, "seq"),
        ({"seq": -1}, "seq"),
        ({"seq": 2.5}, "seq"),
        ({"seq": "5"}, "seq"),
        ({"seq": None}, "seq"),
        ({"seq": SEQ_MAX + 1}, "seq"),
        ({}, "seq"),
        ({"seq": 5, "user_id": "x"}, "user_id"),
    ],
)
def test_a_bad_read_position_is_refused(body: dict[str, Any], field: str) -> None:
    """Booleans, negatives, floats, strings, a missing seq and unknown fields are invalid input."""
    with pytest.raises(InvalidInput) as refused:
        parse_read(body)
    assert field in refused.value.details


# --- parse_after_query ---------------------------------------------------------------------------


def test_an_after_query_defaults_to_the_start_and_the_default_limit() -> None:
    """No parameters: from the very start (seq 0 included), the default page size; unknown
    parameters are ignored."""
    assert parse_after_query([]) == AfterQuery(after=-1, limit=HISTORY_LIMIT_DEFAULT)
    assert parse_after_query([("_", "123"), ("utm", "x")]) == AfterQuery(-1, HISTORY_LIMIT_DEFAULT)


def test_an_after_query_takes_its_bounds() -> None:
    """``after`` from -1 (the start) to the largest seq and ``limit`` from 1 to the maximum are
    accepted."""
    assert parse_after_query([("after", "-1")]) == AfterQuery(-1, HISTORY_LIMIT_DEFAULT)
    assert parse_after_query([("after", "0"), ("limit", "1")]) == AfterQuery(0, 1)
    assert parse_after_query([("after", str(SEQ_MAX)), ("limit", str(HISTORY_LIMIT_MAX))]) == (
        AfterQuery(SEQ_MAX, HISTORY_LIMIT_MAX)
    )
    assert parse_after_query([("after", "42")]) == AfterQuery(42, HISTORY_LIMIT_DEFAULT)


@pytest.mark.parametrize(
    ("pairs", "field"),
    [
        ([("after", "-2")], "after"),
        ([("after", "-0")], "after"),
        ([("after", "1.5")], "after"),
        ([("after", "")], "after"),
        ([("after", "abc")], "after"),
        ([("after", " 1")], "after"),
        ([("after", str(SEQ_MAX + 1))], "after"),
        ([("limit", "0")], "limit"),
        ([("limit", str(HISTORY_LIMIT_MAX + 1))], "limit"),
        ([("limit", "ten")], "limit"),
        ([("after", "1"), ("after", "2")], "after"),
        ([("limit", "5"), ("limit", "5")], "limit"),
    ],
)
def test_a_bad_after_query_is_refused(pairs: list[tuple[str, str]], field: str) -> None:
    """Out of range or non-integer values, and a parameter given twice, are invalid input."""
    with pytest.raises(InvalidInput) as refused:
        parse_after_query(pairs)
    assert field in refused.value.details


# --- parse_message_id ----------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["m1", "0190a1b2c3d4e5f6", "a" * 64, "A-b_9"])
def test_a_message_id_is_letters_digits_dash_and_underscore(raw: str) -> None:
    """Wire message ids up to 64 characters are accepted unchanged."""
    assert parse_message_id(raw) == raw


@pytest.mark.parametrize(
    "raw", ["", "a" * 65, "a b", "a/b", "../x", "id\n", "é", None, 5, {"$ne": ""}]
)
def test_anything_else_is_not_a_message_id(raw: object) -> None:
    """Empty, too long, other characters or a non-string are invalid input."""
    with pytest.raises(InvalidInput) as refused:
        parse_message_id(raw)
    assert "message_id" in refused.value.details
