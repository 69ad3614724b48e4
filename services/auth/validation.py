"""Request bodies of the auth API parsed into typed values; every rule in one place, no I/O.

Each parser collects per-field reasons and raises one ``InvalidInput`` (HTTP 422) with them all in
``details``, so a client learns everything wrong with a form at once. Only strings that passed
these checks ever reach a database query.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatcore.errors import InvalidInput, NotFound
from chatcore.schema import EMAIL_MAX, EMAIL_RE, ID_RE, NAME_RE, NAME_RULE

PASSWORD_MIN = 10
PASSWORD_MAX = 256
REFRESH_TOKEN_MAX = 128
# The login field that asks for the refresh token in a cookie rather than in the body.
REFRESH_IN = "refresh_in"
# What ``secrets.token_urlsafe`` produces; anything else cannot be one of our refresh tokens.
_REFRESH_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True, slots=True)
class Registration:
    email: str
    password: str
    name: str


@dataclass(frozen=True, slots=True)
class Credentials:
    email: str
    password: str


@dataclass(frozen=True, slots=True)
class PasswordChange:
    current: str = field(repr=False)
    new: str = field(repr=False)


CURRENT_PASSWORD = "current_password"
NEW_PASSWORD = "new_password"


def normalize_email(raw: str) -> str:
    """Trimmed and lower-cased: the one form stored and compared."""
    return raw.strip().lower()


def _has_control(text: str) -> bool:
    """Control characters or lone surrogates (JSON's ``\\ud800``), which no store can take:
    PostgreSQL refuses NUL in text (FerretDB answers OperationFailure) and UTF-8 has no
    encoding for a lone surrogate."""
    return any(unicodedata.category(ch) in ("Cc", "Cs") for ch in text)


def valid_email(raw: object) -> str | None:
    """The normalized email, or None when ``raw`` is not an address we could have stored."""
    # The one rule (chatcore.schema, also declared in the OpenAPI document): deliberately plain,
    # one "@", no whitespace or control characters inside, a dot in the domain. Deliverability is
    # not our concern; a unique, comparable identifier is.
    if not isinstance(raw, str) or len(raw) > EMAIL_MAX * 2 or not EMAIL_RE.fullmatch(raw):
        return None
    email = normalize_email(raw)
    if _has_control(email):
        return None  # lone surrogates, which the pattern cannot name
    return email if len(email) <= EMAIL_MAX else None


def _check_fields(body: Mapping[str, Any], allowed: frozenset[str], errors: dict[str, str]) -> None:
    for key in body:
        if key not in allowed:
            errors[str(key)[:64]] = "unknown field"


def _email(body: Mapping[str, Any], errors: dict[str, str]) -> str:
    raw = body.get("email")
    if not isinstance(raw, str):
        errors["email"] = "required, a string"
        return ""
    email = valid_email(raw)
    if email is None:
        errors["email"] = "not a valid email address"
        return ""
    return email


def _password(
    body: Mapping[str, Any], errors: dict[str, str], *, strict: bool, field: str = "password"
) -> str:
    raw = body.get(field)
    if not isinstance(raw, str):
        errors[field] = "required, a string"
        return ""
    if len(raw) > PASSWORD_MAX:
        errors[field] = f"at most {PASSWORD_MAX} characters"
    elif any(unicodedata.category(ch) == "Cs" for ch in raw):
        # Hashing needs UTF-8, which has no encoding for a lone surrogate.
        errors[field] = "must be valid Unicode text"
    elif strict and len(raw) < PASSWORD_MIN:
        errors[field] = f"at least {PASSWORD_MIN} characters"
    elif not raw:
        errors[field] = "required"
    return raw


def _name(body: Mapping[str, Any], errors: dict[str, str]) -> str:
    raw_name = body.get("name")
    name = raw_name.strip() if isinstance(raw_name, str) else ""
    if not isinstance(raw_name, str):
        errors["name"] = "required, a string"
    elif not NAME_RE.fullmatch(raw_name) or _has_control(name):
        # The one rule for every display name (chatcore.schema); lone surrogates on top, which the
        # pattern cannot name.
        errors["name"] = NAME_RULE
    return name


def parse_registration(body: Mapping[str, Any]) -> Registration:
    """``{email, password, name}``: email valid, password 10-256 characters, name 1-100."""
    errors: dict[str, str] = {}
    _check_fields(body, frozenset({"email", "password", "name"}), errors)
    email = _email(body, errors)
    password = _password(body, errors, strict=True)
    name = _name(body, errors)
    if errors:
        raise InvalidInput("invalid registration", details=errors)
    return Registration(email=email, password=password, name=name)


def parse_profile(body: Mapping[str, Any]) -> str:
    """``{name}``: the new display name, by registration's rule."""
    errors: dict[str, str] = {}
    _check_fields(body, frozenset({"name"}), errors)
    name = _name(body, errors)
    if errors:
        raise InvalidInput("invalid profile", details=errors)
    return name


def parse_password_change(body: Mapping[str, Any]) -> PasswordChange:
    """``{current_password, new_password}``: the current one as typed (an account may predate
    today's length rule), the new one by registration's rule and not the same."""
    errors: dict[str, str] = {}
    _check_fields(body, frozenset({CURRENT_PASSWORD, NEW_PASSWORD}), errors)
    current = _password(body, errors, strict=False, field=CURRENT_PASSWORD)
    new = _password(body, errors, strict=True, field=NEW_PASSWORD)
    if not errors and new == current:
        errors[NEW_PASSWORD] = "the same as the current password"
    if errors:
        raise InvalidInput("invalid password change", details=errors)
    return PasswordChange(current=current, new=new)


def parse_login(body: Mapping[str, Any]) -> tuple[Credentials, bool]:
    """``{email, password, refresh_in?}``: the credentials, and whether the refresh token goes
    into an ``HttpOnly`` cookie (``refresh_in: "cookie"``) instead of the response body."""
    errors: dict[str, str] = {}
    _check_fields(body, frozenset({"email", "password", REFRESH_IN}), errors)
    email = _email(body, errors)
    password = _password(body, errors, strict=False)
    where = body.get(REFRESH_IN, "body")
    if where not in ("body", "cookie"):
        errors[REFRESH_IN] = 'either "body" (the default) or "cookie"'
    if errors:
        raise InvalidInput("invalid credentials format", details=errors)
    return Credentials(email=email, password=password), where == "cookie"


def parse_refresh_request(body: Mapping[str, Any]) -> str | None:
    """``{refresh_token}``, or ``{}`` for the token in the refresh cookie (None)."""
    errors: dict[str, str] = {}
    _check_fields(body, frozenset({"refresh_token"}), errors)
    token = _refresh_token(body, errors)
    if errors:
        raise InvalidInput("invalid refresh request", details=errors)
    return token


@dataclass(frozen=True, slots=True)
class LogoutRequest:
    refresh_token: str | None  # None: the one in the refresh cookie
    everywhere: bool  # every login of the user, not only this one


def parse_logout_request(body: Mapping[str, Any]) -> LogoutRequest:
    """``{refresh_token?, everywhere?}``: without ``refresh_token``, the cookie's."""
    errors: dict[str, str] = {}
    _check_fields(body, frozenset({"refresh_token", "everywhere"}), errors)
    everywhere = body.get("everywhere", False)
    if not isinstance(everywhere, bool):
        errors["everywhere"] = "true or false"
    token = _refresh_token({k: v for k, v in body.items() if k != "everywhere"}, errors)
    if errors:
        raise InvalidInput("invalid logout request", details=errors)
    return LogoutRequest(token, everywhere is True)


def _refresh_token(body: Mapping[str, Any], errors: dict[str, str]) -> str | None:
    if "refresh_token" not in body and not body:
        return None
    raw = body.get("refresh_token")
    if not isinstance(raw, str) or not 1 <= len(raw) <= REFRESH_TOKEN_MAX:
        errors["refresh_token"] = "required, a string"
        return None
    return raw


def could_be_refresh_token(token: str) -> bool:
    """False for strings we never issue (lone surrogates, NUL, ...): no lookup needed for those."""
    return _REFRESH_TOKEN_RE.fullmatch(token) is not None


def parse_email_query(values: Sequence[str]) -> str:
    """``?email=`` of ``GET /v1/users``: exactly one value, valid under the registration rule."""
    if len(values) != 1:
        raise InvalidInput(
            "exactly one email query parameter is required",
            details={"email": "exactly one value required"},
        )
    email = valid_email(values[0])
    if email is None:
        raise InvalidInput("invalid email", details={"email": "not a valid email address"})
    return email


def parse_user_id(raw: str) -> str:
    """A user id from a URL: anything but our id format cannot exist, so it is a 404."""
    if not ID_RE.fullmatch(raw):
        raise NotFound("no such user")
    return raw
