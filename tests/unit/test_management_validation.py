"""Parsing of the management API's bodies, path ids and query strings."""

from __future__ import annotations

from typing import Any

import pytest

from chatcore.errors import InvalidInput
from services.management.model import MemberRef, TeamChanges
from services.management.validation import (
    parse_history_query,
    parse_id,
    parse_member_ref,
    parse_new_team,
    parse_team_changes,
    parse_teams_query,
    parse_transfer,
)

UID = "0123456789abcdef" * 2


def _details(excinfo: pytest.ExceptionInfo[InvalidInput]) -> dict[str, str]:
    return excinfo.value.details


def test_new_team_defaults_and_normalization() -> None:
    """Name is trimmed, icon defaults to empty, duplicate tags collapse in order."""
    draft = parse_new_team({"name": "  Core team ", "meta_tags": ["a-1", "b", "a-1"]})
    assert (draft.name, draft.icon, draft.meta_tags) == ("Core team", "", ("a-1", "b"))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"name": "Core \u202eevil"}, "name"),
        ({"name": "\u2067Core"}, "name"),
        ({"name": 5}, "name"),
        ({"name": {"$gt": ""}}, "name"),
        ({"name": "t", "icon": "javascript:alert(1)"}, "icon"),
        ({"name": "t", "icon": "ftp://example.com/x.png"}, "icon"),
        ({"name": "t", "icon": "https://"}, "icon"),
        ({"name": "t", "icon": "https://ex ample.com/x.png"}, "icon"),
        ({"name": "t", "icon": "https://example.com/" + "x" * 2048}, "icon"),
        ({"name": "t", "icon": None}, "icon"),
        ({"name": "t", "meta_tags": "tag"}, "meta_tags"),
        ({"name": "t", "meta_tags": [f"t{i}" for i in range(21)]}, "meta_tags"),
        ({"name": "t", "meta_tags": ["x" * 33]}, "meta_tags"),
        ({"name": "t", "meta_tags": ["Upper"]}, "meta_tags"),
        ({"name": "t", "meta_tags": ["two words"]}, "meta_tags"),
        ({"name": "t", "meta_tags": ["-dash"]}, "meta_tags"),
        ({"name": "t", "meta_tags": [""]}, "meta_tags"),
        ({"name": "t", "meta_tags": [{"$ne": 1}]}, "meta_tags"),
        ({"name": "t", "$set": {"admins": []}}, "$set"),
        ({"name": "t", "super_admin": UID}, "super_admin"),
    ],
)
def test_new_team_rejections_name_the_field(body: dict[str, Any], field: str) -> None:
    """Every broken rule is a 422 whose details name the offending field."""
    with pytest.raises(InvalidInput) as excinfo:
        parse_new_team(body)
    assert excinfo.value.http_status == 422
    assert field in _details(excinfo)


def test_new_team_accepts_the_limits() -> None:
    """Exactly 100 characters, 20 tags of 32 characters and an https icon pass."""
    tags = [f"{i:02d}" + "x" * 30 for i in range(20)]
    draft = parse_new_team(
        {"name": "n" * 100, "icon": "https://cdn.example.com/i.png?s=64", "meta_tags": tags}
    )
    assert len(draft.meta_tags) == 20


def test_all_errors_are_reported_at_once() -> None:
    """A form with several problems reports all of them in one answer."""
    with pytest.raises(InvalidInput) as excinfo:
        parse_new_team({"name": "", "icon": "nope", "meta_tags": ["A"], "x": 1})
    assert set(_details(excinfo)) == {"name", "icon", "meta_tags", "x"}


def test_team_changes() -> None:
    """A PATCH carries only what it names; active must be a real boolean; empty is refused."""
    assert parse_team_changes({"active": False}) == TeamChanges(active=False)
    assert parse_team_changes({"icon": ""}) == TeamChanges(icon="")
    for body in ({}, {"active": 0}, {"active": "false"}, {"members": [UID]}, {"name": None}):
        with pytest.raises(InvalidInput):
            parse_team_changes(body)


def test_member_ref_takes_exactly_one_of_id_or_email() -> None:
    """user_id must be an id, email an address (lower-cased); never both, never neither."""
    assert parse_member_ref({"user_id": UID}) == MemberRef(user_id=UID)
    assert parse_member_ref({"email": " Ada@Example.COM "}) == MemberRef(email="ada@example.com")
    bad: list[dict[str, Any]] = [
        {},
        {"user_id": UID, "email": "a@b.co"},
        {"user_id": {"$gt": ""}},
        {"user_id": UID.upper()},
        {"email": {"$ne": None}},
        {"email": "not-an-email"},
        {"user_id": UID, "$where": "1"},
    ]
    for body in bad:
        with pytest.raises(InvalidInput):
            parse_member_ref(body)


def test_transfer_needs_a_user_id() -> None:
    """PUT super_admin takes {user_id} and nothing else."""
    assert parse_transfer({"user_id": UID}) == UID
    for body in ({}, {"user_id": ["x"]}, {"user_id": {"$gt": ""}}, {"user_id": UID, "x": 1}):
        with pytest.raises(InvalidInput):
            parse_transfer(body)


@pytest.mark.parametrize(
    "raw", ['{"$gt": ""}', "", "../x", UID.upper(), UID + "0", UID[:-1], "g" * 32, 5, None]
)
def test_ids_outside_the_format_are_invalid(raw: object) -> None:
    """Anything but 32 lower-case hex characters is a 422 for the named field."""
    with pytest.raises(InvalidInput) as excinfo:
        parse_id(raw, "team_id")
    assert _details(excinfo) == {"team_id": "must be 32 lower-case hex characters"}


def test_history_query() -> None:
    """One cursor at most, seqs are non-negative integers (after=-1: from the start), limit 1-200
    (default 50)."""
    q = parse_history_query([])
    assert (q.before, q.after, q.limit) == (None, None, 50)
    q = parse_history_query([("after", "0"), ("limit", "200"), ("utm", "x")])
    assert (q.before, q.after, q.limit) == (None, 0, 200)
    assert parse_history_query([("after", "-1")]).after == -1
    assert parse_history_query([("before", str(2**63 - 1))]).before == 2**63 - 1
    bad = [
        [("before", "1"), ("after", "2")],
        [("after", "-2")],
        [("before", "-1")],
        [("after", "1.5")],
        [("after", str(2**63))],
        [("after", "$gt")],
        [("limit", "0")],
        [("limit", "201")],
        [("limit", "ten")],
        [("after", "1"), ("after", "2")],
    ]
    for pairs in bad:
        with pytest.raises(InvalidInput):
            parse_history_query(pairs)


def test_teams_query() -> None:
    """tag is a slug, cursor an id, limit 1-100."""
    q = parse_teams_query([("tag", "core-team"), ("cursor", UID), ("limit", "5")])
    assert (q.tag, q.cursor, q.limit) == ("core-team", UID, 5)
    for pairs in ([("tag", "Bad Tag")], [("cursor", "x")], [("limit", "101")], [("tag", "")]):
        with pytest.raises(InvalidInput):
            parse_teams_query(pairs)


def test_a_member_email_with_a_lone_surrogate_is_invalid() -> None:
    """ "a\ud800dmin@x.yz" is refused, not looked up as another address without the surrogate."""
    with pytest.raises(InvalidInput) as excinfo:
        parse_member_ref({"email": "a\ud800dmin@x.yz"})
    assert "email" in _details(excinfo)


def test_a_team_name_with_a_lone_surrogate_is_invalid_not_a_server_error() -> None:
    """JSON's "\\ud800" is no character and no store takes it: 422 on the name, for a new team
    and for a rename, before anything reaches the database."""
    for parse in (parse_new_team, parse_team_changes):
        with pytest.raises(InvalidInput) as excinfo:
            parse({"name": "Core \ud800"})
        assert "name" in _details(excinfo)
