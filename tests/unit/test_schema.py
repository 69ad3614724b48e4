"""What ``chatcore.schema`` defines beyond names: the id and email patterns do what their
comments say, and the attachment statuses and kinds are the API's and the code's. (SPACE and
CONTROL are checked against Python in test_management_openapi.py.)"""

from __future__ import annotations

import re
import unicodedata
import uuid

import pytest

from chatcore import schema
from chatcore.messages import TYPE_NAMES
from services.management.attachment_rules import ALLOWED_TYPES
from services.management.openapi import load_openapi


def test_ids_are_uuid4_hex_and_nothing_else() -> None:
    """A uuid4 in hex matches ID_RE; its dashed or upper-case forms, other lengths, other
    characters and a trailing newline do not."""
    generated = uuid.uuid4()
    assert schema.ID_RE.fullmatch(generated.hex)
    refused = [
        str(generated),
        generated.hex.upper(),
        generated.hex[:31],
        generated.hex + "0",
        "g" * 32,
        generated.hex + "\n",
        "",
    ]
    assert [schema.ID_RE.fullmatch(value) for value in refused] == [None] * len(refused)


@pytest.mark.parametrize(
    "email",
    [
        "ada@example.com",
        " Ada@Example.COM\t",  # surrounding whitespace is trimmed later
        "\u3000a@b.co\n",
        "a" * 64 + "@example.com",
        "a.b+c@sub.example.co.uk",
        "jörg@münchen.de",
    ],
)
def test_the_email_pattern_accepts(email: str) -> None:
    """One "@", at most 64 characters before it, a dot inside the domain; any whitespace
    around."""
    assert schema.EMAIL_RE.fullmatch(email)


@pytest.mark.parametrize(
    "email",
    [
        "a" * 65 + "@example.com",
        "a@localhost",
        "a b@c.co",
        "a@b@c.co",
        "@b.co",
        "a@",
        "a@.b.co",
        "a@b..co",
        "a@b.co.",
        "a\x00@b.co",
        "a\u200b@b.co",
        "a@b\u00ad.co",
        "\ufeffa@b.co",
        "a@b.co\u202e",
    ],
)
def test_the_email_pattern_refuses(email: str) -> None:
    """Over 64 characters before the "@", no dot in the domain or an empty label, whitespace
    inside, a second or no "@", a control or an invisible character anywhere."""
    assert schema.EMAIL_RE.fullmatch(email) is None


def test_invisible_characters_are_unicode_format_characters() -> None:
    """Every character INVISIBLE keeps out of emails is a format character (Cf): none a
    visible one that a real address may hold."""
    invisible = re.compile(f"[{schema.INVISIBLE}]")
    members = {ch for ch in map(chr, range(0x110000)) if invisible.fullmatch(ch)}
    assert {"\xad", "\u200b", "\u200d", "\u202e", "\u2060", "\ufeff"} <= members
    assert {unicodedata.category(ch) for ch in members} == {"Cf"}


def test_attachment_statuses_and_kinds_are_the_apis() -> None:
    """The statuses are the ones the API shows (withdrawn is not one: it answers 404); the
    kinds are the message types other than text, the ones uploads are sorted into, and the API's."""
    schemas = load_openapi()[0]["components"]["schemas"]
    for name in ("Attachment", "AttachmentUpload", "AttachmentDownload"):
        properties = schemas[name]["properties"]
        assert tuple(properties["status"]["enum"]) == schema.ATTACHMENT_STATUSES
        assert tuple(properties["kind"]["enum"]) == schema.ATTACHMENT_KINDS
    assert schema.WITHDRAWN not in schema.ATTACHMENT_STATUSES
    assert sorted(TYPE_NAMES.values()) == sorted([schema.TEXT, *schema.ATTACHMENT_KINDS])
    assert sorted(schemas["Message"]["properties"]["type"]["enum"]) == sorted(TYPE_NAMES.values())
    assert set(ALLOWED_TYPES) == set(schema.ATTACHMENT_KINDS)
