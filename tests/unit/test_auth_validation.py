"""Rules for the auth API's request bodies."""

from __future__ import annotations

from typing import Any

import pytest

from chatcore.errors import InvalidInput, NotFound
from services.auth.validation import (
    LogoutRequest,
    could_be_refresh_token,
    parse_email_query,
    parse_login,
    parse_logout_request,
    parse_password_change,
    parse_profile,
    parse_refresh_request,
    parse_registration,
    parse_user_id,
)


def _details(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(InvalidInput) as info:
        parse_registration(body)
    return info.value.details


def test_registration_normalizes_email_and_trims_name() -> None:
    """Email is trimmed and lower-cased; the name is trimmed; the password is kept as typed."""
    form = parse_registration(
        {"email": "  Ada@Example.COM ", "password": " pass word 1 ", "name": " Ada "}
    )
    assert (form.email, form.name, form.password) == ("ada@example.com", "Ada", " pass word 1 ")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "no-at-sign", "password": "x" * 12, "name": "A"}, "email"),
        ({"email": "a@localhost", "password": "x" * 12, "name": "A"}, "email"),
        ({"email": {"$ne": None}, "password": "x" * 12, "name": "A"}, "email"),
        ({"email": "a@b.co", "password": "short", "name": "A"}, "password"),
        ({"email": "a@b.co", "password": "x" * 257, "name": "A"}, "password"),
        ({"email": "a@b.co", "password": 1234567890123, "name": "A"}, "password"),
        ({"email": "a@b.co", "password": "x" * 12, "name": "   "}, "name"),
        ({"email": "a@b.co", "password": "x" * 12, "name": "x" * 101}, "name"),
        ({"email": "a@b.co", "password": "x" * 12, "name": "bad\x07name"}, "name"),
        ({"email": "a@b.co", "password": "x" * 12, "name": "A", "admin": True}, "admin"),
    ],
)
def test_registration_rejects_each_bad_field(body: dict[str, Any], field: str) -> None:
    """Each broken rule is reported against its field."""
    assert field in _details(body)


def test_registration_reports_every_problem_at_once() -> None:
    """All broken fields come back together, so a form can be fixed in one go."""
    assert set(_details({})) == {"email", "password", "name"}


def test_password_length_bounds_are_inclusive() -> None:
    """10 and 256 characters are both accepted."""
    for length in (10, 256):
        parse_registration({"email": "a@b.co", "password": "p" * length, "name": "A"})


def test_credentials_accept_any_nonempty_password() -> None:
    """Login checks only shape, so a password set under older rules still logs in."""
    assert parse_login({"email": "A@B.co", "password": "short"})[0].email == "a@b.co"
    with pytest.raises(InvalidInput):
        parse_login({"email": "a@b.co", "password": ""})


def test_login_chooses_where_the_refresh_token_goes() -> None:
    """``refresh_in`` is "body" by default or "cookie"; anything else is a 422 naming it."""
    creds = {"email": "a@b.co", "password": "secret"}
    assert parse_login(creds)[1] is False
    assert parse_login({**creds, "refresh_in": "body"})[1] is False
    assert parse_login({**creds, "refresh_in": "cookie"})[1] is True
    for bad in ("Cookie", {"$ne": "body"}, True):
        with pytest.raises(InvalidInput) as info:
            parse_login({**creds, "refresh_in": bad})
        assert "refresh_in" in info.value.details


def test_refresh_token_must_be_a_string() -> None:
    """An operator-shaped, oversized or misnamed refresh token is invalid input; ``{}`` means
    the refresh cookie."""
    assert parse_refresh_request({"refresh_token": "abc"}) == "abc"
    assert parse_refresh_request({}) is None
    for body in (
        {"refresh_token": {"$gt": ""}},
        {"refresh_token": "x" * 500},
        {"refresh_token": ""},
        {"token": "abc"},
    ):
        with pytest.raises(InvalidInput):
            parse_refresh_request(body)


def test_a_logout_names_a_token_or_the_cookie_and_maybe_everywhere() -> None:
    """``everywhere`` is an optional boolean beside the token (or alone, for the cookie);
    anything else is invalid input naming the field."""
    assert parse_logout_request({}) == LogoutRequest(None, everywhere=False)
    assert parse_logout_request({"everywhere": True}) == LogoutRequest(None, everywhere=True)
    assert parse_logout_request({"refresh_token": "abc", "everywhere": False}) == LogoutRequest(
        "abc", everywhere=False
    )
    for body, field in (
        ({"everywhere": "yes"}, "everywhere"),
        ({"everywhere": 1}, "everywhere"),
        ({"refresh_token": {"$gt": ""}, "everywhere": True}, "refresh_token"),
        ({"all": True}, "all"),
    ):
        with pytest.raises(InvalidInput) as info:
            parse_logout_request(body)
        assert field in info.value.details


def test_user_ids_outside_our_format_are_not_found() -> None:
    """A path id that cannot be ours is a 404, never a query."""
    assert parse_user_id("0" * 32) == "0" * 32
    for raw in ("", "../etc", "A" * 32, "0" * 33):
        with pytest.raises(NotFound):
            parse_user_id(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "\x00",
        "a\x00b@example.com",
        "ada@example.com\x00",
        "a\ud800@example.com",
        "ada@exa\u200bmple.com",
        "no-at-sign",
        "a@localhost",
        "a@@b.co",
        "x" * 65 + "@example.com",
        "a@" + "b" * 260 + ".com",
        "$ne",
    ],
)
def test_email_query_rejects_what_registration_rejects(raw: str) -> None:
    """?email= values that registration would refuse are invalid input, before any query."""
    with pytest.raises(InvalidInput) as info:
        parse_email_query([raw])
    assert info.value.http_status == 422
    with pytest.raises(InvalidInput):
        parse_registration({"email": raw, "password": "x" * 12, "name": "A"})


def test_email_query_needs_exactly_one_value() -> None:
    """No value or several values are invalid; one valid value comes back normalized."""
    for values in ([], ["a@b.co", "c@d.co"]):
        with pytest.raises(InvalidInput):
            parse_email_query(values)
    assert parse_email_query([" Ada@Example.COM "]) == "ada@example.com"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a\x00@b.co", "password": "x" * 12}, "email"),
        ({"email": "a@b.co", "password": "x\ud800" * 6}, "password"),
    ],
)
def test_credentials_refuse_what_no_store_or_hash_can_take(
    body: dict[str, Any], field: str
) -> None:
    """NUL in an email (PostgreSQL refuses it) or a lone surrogate (no UTF-8) is a 422."""
    with pytest.raises(InvalidInput) as info:
        parse_login(body)
    assert field in info.value.details


def test_names_with_lone_surrogates_are_refused() -> None:
    """A name that cannot be encoded as UTF-8 never reaches the database."""
    assert "name" in _details({"email": "a@b.co", "password": "x" * 12, "name": "A\ud800"})


def test_names_with_text_direction_overrides_are_refused() -> None:
    """A name that would reorder itself on screen ("Carol \u202eevil" shows as "Carol live") is
    refused; joiners in emoji and direction marks for right-to-left scripts are not."""
    body = {"email": "a@b.co", "password": "x" * 12}
    for name in ("Carol \u202eevil", "\u2066Eve\u2069", "Mallory\u202a"):
        assert "name" in _details({**body, "name": name})
    for name in (
        "Family \U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\u05e9\u05dc\u05d5\u05dd\u200f",
    ):
        assert parse_registration({**body, "name": name}).name == name


def test_only_url_safe_base64_could_be_a_refresh_token() -> None:
    """Strings outside the alphabet refresh tokens are issued in are recognised as never issued."""
    assert could_be_refresh_token("aZ09_-" * 7)
    for raw in ("\ud800", "a\x00", "a b", "a/b", ""):
        assert not could_be_refresh_token(raw)


def test_a_password_change_needs_both_passwords_and_a_new_one_by_the_rule() -> None:
    """The current password as typed (an old account's may be shorter than today's rule), the
    new one 10-256 characters and not the same; unknown fields and wrong types are 422 per field."""
    change = parse_password_change({"current_password": "short", "new_password": "x" * 10})
    assert (change.current, change.new) == ("short", "x" * 10)
    assert "short" not in repr(change)  # never in a log line
    for body, field in (
        ({"current_password": "a" * 12, "new_password": "b" * 9}, "new_password"),
        ({"current_password": "a" * 12, "new_password": "a" * 12}, "new_password"),
        ({"current_password": "", "new_password": "b" * 12}, "current_password"),
        ({"current_password": 5, "new_password": "b" * 12}, "current_password"),
        ({"new_password": "b" * 12}, "current_password"),
        ({"current_password": "a" * 12, "new_password": "b" * 257}, "new_password"),
        ({"current_password": "a" * 12, "new_password": "b" * 12, "password": "c"}, "password"),
    ):
        with pytest.raises(InvalidInput) as info:
            parse_password_change(body)
        assert field in info.value.details, body


def test_a_new_name_follows_the_registration_rule() -> None:
    """Trimmed like a registered name; empty, overlong, text-direction overrides and unknown
    fields are 422 per field."""
    assert parse_profile({"name": "  Ada Lovelace "}) == "Ada Lovelace"
    for body, field in (
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"name": "Carol \u202eevil"}, "name"),
        ({"name": 7}, "name"),
        ({"name": "Ada", "email": "a@b.co"}, "email"),
    ):
        with pytest.raises(InvalidInput) as info:
            parse_profile(body)
        assert field in info.value.details, body
