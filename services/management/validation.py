"""Request bodies, path ids and query strings of the management API parsed into typed values.

No I/O. Each parser collects per-field reasons and raises one ``InvalidInput`` (HTTP 422) with all
of them in ``details``. Only values that passed these checks reach a query: ids are 32 lower-case
hex characters, strings are strings, so nothing a client sends can become a query operator (a key
such as ``$set`` is an unknown field; ``{"$gt": ""}`` where an id belongs is not a string).

Every string rule is also a regular expression (``*_PATTERN``), declared verbatim in
docs/openapi.json, so the document says exactly what the server enforces; a unit test checks the
document against these constants and the patterns against the parsers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from chatcore.errors import InvalidInput
from chatcore.http import json_integer
from chatcore.messages import ID_RE as WIRE_ID_RE
from chatcore.messages import text_problem
from chatcore.schema import EMAIL_MAX, EMAIL_RE, ID_RE, NAME_RE, NAME_RULE, SURROGATE_RE
from chatcore.unread import BEFORE_FIRST
from services.management.model import MemberRef, TeamChanges, TeamDraft

ICON_MAX = 2048
TAGS_MAX = 20
TAG_MAX = 32
HISTORY_LIMIT_DEFAULT = 50
HISTORY_LIMIT_MAX = 200
TEAMS_LIMIT_DEFAULT = 50
TEAMS_LIMIT_MAX = 100
# seq is a Kafka offset: a non-negative signed 64-bit integer.
SEQ_MAX = 2**63 - 1

TAG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
TAG_RE = re.compile(TAG_PATTERN)


# An icon: empty, or an http(s) URL with a DNS-style host, an optional port, then printable ASCII.
_LABEL = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
ICON_PATTERN = f"^(?:https?://{_LABEL}(?:\\.{_LABEL})*(?::[0-9]{{1,5}})?(?:[/?#][!-~]*)?)?$"
ICON_RE = re.compile(ICON_PATTERN)

_DIGITS_RE = re.compile(r"^[0-9]{1,19}$")
_ID_RULE = "must be 32 lower-case hex characters"


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """One page of history: after a seq (forward), before a seq (backward) or the latest."""

    before: int | None
    after: int | None
    limit: int


@dataclass(frozen=True, slots=True)
class TeamsQuery:
    """One page of the caller's teams, ordered by id, optionally only those with a tag."""

    tag: str | None
    cursor: str | None
    limit: int


def _invalid(message: str, errors: Mapping[str, str]) -> InvalidInput:
    return InvalidInput(message, details=errors)


def _unknown_fields(
    body: Mapping[str, Any], allowed: frozenset[str], errors: dict[str, str]
) -> None:
    for key in body:
        if key not in allowed:
            errors[str(key)[:64]] = "unknown field"


def is_id(value: object) -> bool:
    """True for a string in the id format shared by users and teams."""
    return isinstance(value, str) and ID_RE.fullmatch(value) is not None


def parse_id(raw: object, field: str) -> str:
    """A team or user id from a path or body; anything else is a 422 naming the field."""
    if not is_id(raw):
        raise _invalid(f"invalid {field}", {field: _ID_RULE})
    assert isinstance(raw, str)
    return raw


def _name(raw: object, errors: dict[str, str]) -> str:
    if not isinstance(raw, str):
        errors["name"] = "required, a string"
        return ""
    if not NAME_RE.fullmatch(raw) or SURROGATE_RE.search(raw):
        errors["name"] = NAME_RULE
    return raw.strip()


def _icon(raw: object, errors: dict[str, str]) -> str:
    if not isinstance(raw, str):
        errors["icon"] = "must be a string (an http(s) URL, or empty)"
        return ""
    if len(raw) > ICON_MAX or not ICON_RE.fullmatch(raw):
        errors["icon"] = (
            f"empty, or an http:// or https:// URL with a host name, at most {ICON_MAX} "
            "printable ASCII characters"
        )
    return raw


def _meta_tags(raw: object, errors: dict[str, str]) -> tuple[str, ...]:
    if not isinstance(raw, list):
        errors["meta_tags"] = "must be an array of strings"
        return ()
    if len(raw) > TAGS_MAX:
        errors["meta_tags"] = f"at most {TAGS_MAX} tags"
        return ()
    tags: list[str] = []
    for tag in raw:
        if not isinstance(tag, str) or not 1 <= len(tag) <= TAG_MAX or not TAG_RE.fullmatch(tag):
            errors["meta_tags"] = (
                f"each tag is a lower-case slug (a-z, 0-9, single dashes) of 1 to {TAG_MAX} "
                "characters"
            )
            return ()
        if tag not in tags:  # duplicates say nothing new; keep the first occurrence's order
            tags.append(tag)
    return tuple(tags)


def parse_new_team(body: Mapping[str, Any]) -> TeamDraft:
    """``{name, icon?, meta_tags?}``."""
    errors: dict[str, str] = {}
    _unknown_fields(body, frozenset({"name", "icon", "meta_tags"}), errors)
    name = _name(body.get("name"), errors)
    icon = _icon(body["icon"], errors) if "icon" in body else ""
    tags = _meta_tags(body["meta_tags"], errors) if "meta_tags" in body else ()
    if errors:
        raise _invalid("invalid team", errors)
    return TeamDraft(name=name, icon=icon, meta_tags=tags)


def parse_team_changes(body: Mapping[str, Any]) -> TeamChanges:
    """A PATCH with at least one of ``name``, ``icon``, ``meta_tags``, ``active``."""
    errors: dict[str, str] = {}
    _unknown_fields(body, frozenset({"name", "icon", "meta_tags", "active"}), errors)
    name = _name(body["name"], errors) if "name" in body else None
    icon = _icon(body["icon"], errors) if "icon" in body else None
    tags = _meta_tags(body["meta_tags"], errors) if "meta_tags" in body else None
    active = body.get("active")
    if "active" in body and not isinstance(active, bool):
        errors["active"] = "must be true or false"
    if not body:
        errors["body"] = "name at least one of name, icon, meta_tags, active"
    if errors:
        raise _invalid("invalid team changes", errors)
    return TeamChanges(
        name=name, icon=icon, meta_tags=tags, active=active if isinstance(active, bool) else None
    )


def parse_member_ref(body: Mapping[str, Any]) -> MemberRef:
    """``{user_id}`` or ``{email}``, exactly one of them."""
    errors: dict[str, str] = {}
    _unknown_fields(body, frozenset({"user_id", "email"}), errors)
    has_id, has_email = "user_id" in body, "email" in body
    if has_id == has_email:
        errors["body"] = "give exactly one of user_id or email"
        raise _invalid("invalid member", errors)
    if has_id:
        if not is_id(body["user_id"]):
            errors["user_id"] = _ID_RULE
        if errors:
            raise _invalid("invalid member", errors)
        return MemberRef(user_id=body["user_id"])
    raw = body["email"]
    valid = isinstance(raw, str) and len(raw) <= EMAIL_MAX and EMAIL_RE.fullmatch(raw)
    # A lone surrogate would be dropped on the way to the auth service's look-up, which would
    # then find another address: refused here, as auth refuses it.
    if not valid or SURROGATE_RE.search(raw):
        errors["email"] = "not a valid email address"
    email = raw.strip().lower() if isinstance(raw, str) else ""
    if errors:
        raise _invalid("invalid member", errors)
    return MemberRef(email=email)


def parse_transfer(body: Mapping[str, Any]) -> str:
    """``{user_id}`` of the member who becomes super_admin."""
    errors: dict[str, str] = {}
    _unknown_fields(body, frozenset({"user_id"}), errors)
    if not is_id(body.get("user_id")):
        errors["user_id"] = f"required, {_ID_RULE}"
    if errors:
        raise _invalid("invalid transfer", errors)
    return str(body["user_id"])


def _single(pairs: Iterable[tuple[str, str]], allowed: frozenset[str]) -> dict[str, str]:
    """Query parameters as a dict; a repeated parameter is ambiguous and rejected."""
    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    for key, value in pairs:
        if key not in allowed:
            continue  # unknown parameters are ignored, as browsers and proxies add their own
        if key in values:
            errors[key] = "given more than once"
        values[key] = value
    if errors:
        raise _invalid("invalid query", errors)
    return values


def _bounded_int(raw: str, low: int, high: int) -> int | None:
    if not _DIGITS_RE.fullmatch(raw):
        return None
    value = int(raw)
    return value if low <= value <= high else None


def _after(raw: str) -> int | None:
    # Seqs start at 0 (a Kafka offset), so "from the very start" is after -1.
    return BEFORE_FIRST if raw == str(BEFORE_FIRST) else _bounded_int(raw, 0, SEQ_MAX)


_AFTER_ERROR = "a seq (a non-negative integer), or -1 for from the start"


def parse_history_query(pairs: Iterable[tuple[str, str]]) -> HistoryQuery:
    """``?before=|after=<seq>&limit=``: at most one cursor, limit 1-200 (default 50)."""
    values = _single(pairs, frozenset({"before", "after", "limit"}))
    errors: dict[str, str] = {}
    cursors: dict[str, int | None] = {"before": None, "after": None}
    if "before" in values:
        cursors["before"] = _bounded_int(values["before"], 0, SEQ_MAX)
        if cursors["before"] is None:
            errors["before"] = "a non-negative integer seq"
    if "after" in values:
        cursors["after"] = _after(values["after"])
        if cursors["after"] is None:
            errors["after"] = _AFTER_ERROR
    if "before" in values and "after" in values:
        errors["before"] = "give before or after, not both"
    limit: int | None = HISTORY_LIMIT_DEFAULT
    if "limit" in values:
        limit = _bounded_int(values["limit"], 1, HISTORY_LIMIT_MAX)
        if limit is None:
            errors["limit"] = f"an integer from 1 to {HISTORY_LIMIT_MAX}"
    if errors:
        raise _invalid("invalid history query", errors)
    assert limit is not None
    return HistoryQuery(before=cursors["before"], after=cursors["after"], limit=limit)


def parse_teams_query(pairs: Iterable[tuple[str, str]]) -> TeamsQuery:
    """``?tag=&cursor=&limit=`` for the caller's teams."""
    values = _single(pairs, frozenset({"tag", "cursor", "limit"}))
    errors: dict[str, str] = {}
    tag = values.get("tag")
    if tag is not None and (len(tag) > TAG_MAX or not TAG_RE.fullmatch(tag)):
        errors["tag"] = f"a lower-case slug of 1 to {TAG_MAX} characters"
    cursor = values.get("cursor")
    if cursor is not None and not is_id(cursor):
        errors["cursor"] = "a team id from a previous page's meta.next_cursor"
    limit: int | None = TEAMS_LIMIT_DEFAULT
    if "limit" in values:
        limit = _bounded_int(values["limit"], 1, TEAMS_LIMIT_MAX)
        if limit is None:
            errors["limit"] = f"an integer from 1 to {TEAMS_LIMIT_MAX}"
    if errors:
        raise _invalid("invalid query", errors)
    assert limit is not None
    return TeamsQuery(tag=tag, cursor=cursor, limit=limit)


# --- the message life cycle (DESIGN 5b) ---------------------------------------------------------

# Message ids on the wire (the relay stamps them): letters, digits, "_" and "-", up to 64.
MESSAGE_ID_PATTERN = WIRE_ID_RE.pattern

# A reaction: one emoji (a single grapheme: a pictograph with its variation selector, skin tone
# and zero-width-joined parts, a keycap, a flag, a tag sequence) or a ``:short_name:``; at most
# 32 characters either way.
REACTION_MAX = 32
_PICTO = (
    "\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9\u21aa\u231a\u231b\u2328\u23cf"
    "\u23e9-\u23f3\u23f8-\u23fa\u24c2\u25aa\u25ab\u25b6\u25c0\u25fb-\u25fe\u2600-\u27bf"
    "\u2934\u2935\u2b05-\u2b07\u2b1b\u2b1c\u2b50\u2b55\u3030\u303d\u3297\u3299"
    "\U0001f000-\U0001faff"
)
_ELEMENT = f"[{_PICTO}]\ufe0f?[\U0001f3fb-\U0001f3ff]?"
REACTION_PATTERN = (
    "^(?::[a-z0-9_+-]{1,30}:"
    "|[\U0001f1e6-\U0001f1ff]{2}"
    "|[0-9#*]\ufe0f?\u20e3"
    f"|{_ELEMENT}(?:\u200d{_ELEMENT})*(?:[\U000e0020-\U000e007e]+\U000e007f)?)$"
)
REACTION_RE = re.compile(REACTION_PATTERN)


def parse_message_id(raw: object) -> str:
    if not isinstance(raw, str) or not WIRE_ID_RE.fullmatch(raw):
        raise _invalid("invalid message id", {"message_id": "a message id"})
    return raw


def parse_reaction(raw: object) -> str:
    """An emoji (or ``:short_name:``) from the URL, percent-decoded by the router."""
    if not isinstance(raw, str) or len(raw) > REACTION_MAX or not REACTION_RE.fullmatch(raw):
        raise _invalid(
            "invalid reaction",
            {"emoji": f"one emoji or a :short_name:, at most {REACTION_MAX} characters"},
        )
    return raw


def parse_edit(body: Mapping[str, Any]) -> str:
    """``{data}``: the new text of a text message."""
    errors: dict[str, str] = {}
    _unknown_fields(body, frozenset({"data"}), errors)
    data = body.get("data")
    if not isinstance(data, str):
        errors["data"] = "required, the new text"
    else:
        problem = text_problem(data)
        if problem is not None:
            errors["data"] = problem
    if errors:
        raise _invalid("invalid edit", errors)
    assert isinstance(data, str)
    return data


def parse_read(body: Mapping[str, Any]) -> int:
    """``{seq}``: the highest seq the member has seen."""
    errors: dict[str, str] = {}
    _unknown_fields(body, frozenset({"seq"}), errors)
    seq = json_integer(body.get("seq"))
    if seq is None or not 0 <= seq <= SEQ_MAX:
        errors["seq"] = "required, a non-negative integer seq"
    if errors:
        raise _invalid("invalid read position", errors)
    assert isinstance(seq, int)
    return seq


@dataclass(frozen=True, slots=True)
class AfterQuery:
    """A forward page: everything after ``after`` (``BEFORE_FIRST``: from the start), at most
    ``limit``."""

    after: int
    limit: int


def parse_after_query(pairs: Iterable[tuple[str, str]]) -> AfterQuery:
    """``?after=<seq>&limit=`` for a thread's replies and the changes feed."""
    values = _single(pairs, frozenset({"after", "limit"}))
    errors: dict[str, str] = {}
    after: int | None = BEFORE_FIRST
    if "after" in values:
        after = _after(values["after"])
        if after is None:
            errors["after"] = _AFTER_ERROR
    limit: int | None = HISTORY_LIMIT_DEFAULT
    if "limit" in values:
        limit = _bounded_int(values["limit"], 1, HISTORY_LIMIT_MAX)
        if limit is None:
            errors["limit"] = f"an integer from 1 to {HISTORY_LIMIT_MAX}"
    if errors:
        raise _invalid("invalid query", errors)
    assert after is not None
    assert limit is not None
    return AfterQuery(after=after, limit=limit)
