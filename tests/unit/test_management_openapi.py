"""docs/openapi.json declares exactly what the server enforces: its constraints are the server's
constants, and for generated values the document and the parsers accept the same ones."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from chatcore import schema
from chatcore.errors import InvalidInput
from chatcore.messages import MAX_TEXT_CHARS, TEXT_PATTERN, text_problem
from services.auth import validation as auth_rules
from services.management import attachment_rules as rules
from services.management import validation
from services.management.openapi import OPENAPI_PATH

DOCUMENT: dict[str, Any] = json.loads(OPENAPI_PATH.read_text())
SCHEMAS: dict[str, Any] = DOCUMENT["components"]["schemas"]
_URI = "urn:chatstack:openapi"
_REGISTRY: Registry[Any] = Registry().with_resource(
    _URI, Resource.from_contents(DOCUMENT, default_specification=DRAFT202012)
)


def _validator(name: str) -> Draft202012Validator:
    ref = {"$ref": f"{_URI}#/components/schemas/{name}"}
    return Draft202012Validator(ref, registry=_REGISTRY)


def test_declared_constraints_are_the_servers_constants() -> None:
    """Every pattern and bound in the document is the one the parsers use."""
    assert SCHEMAS["Id"]["pattern"] == schema.ID_PATTERN
    assert SCHEMAS["Tag"]["pattern"] == validation.TAG_PATTERN
    assert SCHEMAS["Tag"]["maxLength"] == validation.TAG_MAX
    assert SCHEMAS["Name"]["pattern"] == schema.NAME_PATTERN
    assert (SCHEMAS["Icon"]["pattern"], SCHEMAS["Icon"]["maxLength"]) == (
        validation.ICON_PATTERN,
        validation.ICON_MAX,
    )
    assert (SCHEMAS["Email"]["pattern"], SCHEMAS["Email"]["maxLength"]) == (
        schema.EMAIL_PATTERN,
        schema.EMAIL_MAX,
    )
    assert SCHEMAS["Seq"]["maximum"] == validation.SEQ_MAX
    assert SCHEMAS["MessageId"]["pattern"] == validation.MESSAGE_ID_PATTERN
    assert (SCHEMAS["Reaction"]["pattern"], SCHEMAS["Reaction"]["maxLength"]) == (
        validation.REACTION_PATTERN,
        validation.REACTION_MAX,
    )
    edit = SCHEMAS["MessageEdit"]["properties"]["data"]
    assert (edit["pattern"], edit["maxLength"]) == (TEXT_PATTERN, MAX_TEXT_CHARS)
    assert SCHEMAS["Filename"]["pattern"] == rules.FILENAME_PATTERN
    assert SCHEMAS["Filename"]["not"] == {"pattern": rules.FILENAME_DOTS_PATTERN}
    assert SCHEMAS["Filename"]["maxLength"] == rules.FILENAME_RAW_MAX
    listed = {ct for types in rules.ALLOWED_TYPES.values() for ct in types}
    assert set(SCHEMAS["ContentType"]["enum"]) == listed
    size = SCHEMAS["NewAttachment"]["properties"]["size"]
    assert (size["minimum"], size["maximum"]) == (1, rules.MAX_BYTES)
    tags = SCHEMAS["NewTeam"]["properties"]["meta_tags"]
    assert tags["maxItems"] == validation.TAGS_MAX
    page = DOCUMENT["paths"]["/v1/teams/{team_id}/messages"]["get"]["parameters"][1]["schema"]
    assert page["properties"]["limit"]["maximum"] == validation.HISTORY_LIMIT_MAX
    assert page["not"] == {"required": ["before", "after"]}


def _category_set(*categories: str) -> set[str]:
    return {ch for ch in map(chr, range(0x110000)) if unicodedata.category(ch) in categories}


def test_character_classes_are_what_python_strips_and_removes() -> None:
    """SPACE is exactly str.isspace(); IGNORED exactly Unicode Cc and Cf (this Python's)."""

    def members(cls: str) -> set[str]:
        pattern = re.compile(f"[{cls}]")
        return {ch for ch in map(chr, range(0x110000)) if pattern.fullmatch(ch)}

    assert members(schema.SPACE) == {ch for ch in map(chr, range(0x110000)) if ch.isspace()}
    assert members(schema.CONTROL) == _category_set("Cc")
    assert members(rules.IGNORED) == _category_set("Cc", "Cf")


# --- the document and the parsers accept the same values -------------------------------------

_TRICKY = (
    " \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u1680\u2000\u200a\u2028\u202f\u3000"  # whitespace
    "\x00\x07\x7f\x9f\xad\u200b\u200e\u202e\u2066\ufeff\U000e0001"  # control and format
    "./\\@:?#-_%aAzZ09éß\u212a\u0130€\U0001f600"
)
_TEXT = st.text(st.sampled_from(_TRICKY) | st.characters(codec="utf-8"), max_size=40)


def _padded(core: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pad = st.text(st.sampled_from(" \t\n\xa0\u3000\x00\u200b"), max_size=3)
    return st.tuples(pad, core, pad).map("".join)


def _rejects(field: str, parse: Callable[[], object]) -> bool:
    try:
        parse()
    except InvalidInput as exc:
        return field in exc.details
    return False


def _agree(schema: str, value: object, rejected: bool) -> None:
    declared = _validator(schema).is_valid(value)
    assert declared == (not rejected), (schema, value, declared)


_EXAMPLES = hypothesis_settings(max_examples=400, deadline=None, derandomize=True)


@_EXAMPLES
@given(
    _TEXT
    | _padded(st.text(min_size=95, max_size=102))
    | _padded(
        st.sampled_from(["Core", "a b", "a\x00b", "x" * 100, "x" * 101, "a\u202eb", "a\u200db"])
    )
)
def test_team_and_account_names(value: str) -> None:
    """Team names and account names: trimmed 1-100 characters, no control characters, no
    text-direction overrides."""
    _agree("Name", value, _rejects("name", lambda: validation.parse_new_team({"name": value})))
    registration = {"email": "a@b.co", "password": "x" * 10, "name": value}
    _agree("Name", value, _rejects("name", lambda: auth_rules.parse_registration(registration)))


_LABELS = st.from_regex(r"\A[a-zA-Z0-9-]{1,8}\Z")
_URLS = st.builds(
    lambda scheme, host, rest: f"{scheme}{host}{rest}",
    st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "javascript:", "https:/", ""]),
    st.lists(_LABELS, min_size=1, max_size=3).map(".".join) | _TEXT,
    st.sampled_from(["", "/", "/i.png?s=64", ":8080/x", ":", "/a b", "/é", "#x", "\n"]) | _TEXT,
)


@_EXAMPLES
@given(_URLS | _TEXT | st.just("https://example.com/" + "x" * 2030))
def test_icons(value: str) -> None:
    """An icon is empty or an http(s) URL of printable ASCII with a host."""
    body = {"name": "t", "icon": value}
    _agree("Icon", value, _rejects("icon", lambda: validation.parse_new_team(body)))


_EMAILS = st.builds(
    lambda local, domain: f"{local}@{domain}",
    st.text(st.sampled_from("ab.+_ \tÉ@"), min_size=0, max_size=66),
    st.text(st.sampled_from("ab.-@ \u212a"), min_size=0, max_size=12),
)


@_EXAMPLES
@given(_padded(_EMAILS) | _TEXT | _EMAILS)
def test_emails(value: str) -> None:
    """Member emails (management) and account emails (auth): the same declared rule."""
    _agree("Email", value, _rejects("email", lambda: validation.parse_member_ref({"email": value})))
    credentials = {"email": value, "password": "x"}
    _agree("Email", value, _rejects("email", lambda: auth_rules.parse_login(credentials)))


_NAMES = st.lists(
    st.sampled_from([".", "..", " ", "/", "\\", "\x00", "\u200b", "a", "é", "\U000e0020", "\t"]),
    max_size=6,
).map("".join)


@_EXAMPLES
@given(_NAMES | _TEXT | st.just("x" * 4097) | st.just("/" * 4096))
def test_attachment_file_names(value: str) -> None:
    """A file name is accepted when its cleaned last segment is not empty, "." or ".."."""
    body = {"filename": value, "content_type": "text/plain", "size": 1}
    _agree("Filename", value, _rejects("filename", lambda: rules.parse_upload_request(body)))


@_EXAMPLES
@given(
    st.sampled_from(sorted({ct for t in rules.ALLOWED_TYPES.values() for ct in t})).flatmap(
        lambda ct: st.sampled_from([ct, ct.upper(), f" {ct}", f"{ct};x=1", ct[:-1]])
    )
    | _TEXT
)
def test_attachment_content_types(value: str) -> None:
    """Exactly the listed types."""
    body = {"filename": "a", "content_type": value, "size": 1}
    _agree("ContentType", value, _rejects("content_type", lambda: rules.parse_upload_request(body)))


@pytest.mark.parametrize(
    "query",
    [
        [],
        [("before", "5")],
        [("after", "0")],
        [("limit", "200")],
        [("before", "5"), ("after", "6")],
        [("limit", "201")],
        [("after", str(validation.SEQ_MAX))],
        [("after", str(validation.SEQ_MAX + 1))],
    ],
)
def test_history_queries(query: list[tuple[str, str]]) -> None:
    """before or after (not both), within a seq's range; limit 1-200."""
    pointer = "/paths/~1v1~1teams~1{team_id}~1messages/get/parameters/1/schema"
    validator = Draft202012Validator({"$ref": f"{_URI}#{pointer}"}, registry=_REGISTRY)
    declared = validator.is_valid({k: int(v) for k, v in query})
    try:
        validation.parse_history_query(query)
    except InvalidInput:
        accepted = False
    else:
        accepted = True
    assert declared == accepted


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=12))
def test_edit_texts(value: str) -> None:
    """An edit's text: the document's pattern and the server's rule agree on every string a
    UTF-8 document can carry (a lone surrogate, only possible through a JSON escape, is refused
    by the server and left out of the pattern)."""
    declared = re.fullmatch(TEXT_PATTERN, value) is not None
    assert declared == (text_problem(value) is None)
