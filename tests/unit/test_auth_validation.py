"""Rules for the auth API's request bodies."""

from __future__ import annotations

from typing import Any

import pytest

from chatcore.errors import InvalidInput, NotFound
from services.auth.validation import (
    parse_credentials,
    parse_refresh_token,
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
    assert parse_credentials({"email": "A@B.co", "password": "short"}).email == "a@b.co"
    with pytest.raises(InvalidInput):
        parse_credentials({"email": "a@b.co", "password": ""})


def test_refresh_token_must_be_a_string() -> None:
    """An operator-shaped or missing refresh token is invalid input."""
    assert parse_refresh_token({"refresh_token": "abc"}) == "abc"
    for body in ({}, {"refresh_token": {"$gt": ""}}, {"refresh_token": "x" * 500}):
        with pytest.raises(InvalidInput):
            parse_refresh_token(body)


def test_user_ids_outside_our_format_are_not_found() -> None:
    """A path id that cannot be ours is a 404, never a query."""
    assert parse_user_id("0" * 32) == "0" * 32
    for raw in ("", "../etc", "A" * 32, "0" * 33):
        with pytest.raises(NotFound):
            parse_user_id(raw)
