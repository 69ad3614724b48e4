"""The pure attachment rules: names, allowed types, sizes, keys and download headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chatcore.errors import InvalidInput, TooLarge
from services.management.attachment_rules import (
    ALLOWED_TYPES,
    EXTENSIONS,
    MAX_BYTES,
    bytes_text,
    check_size,
    clean_filename,
    content_disposition,
    kind_of,
    object_key,
    parse_upload_request,
    quota_wait,
    with_type_extension,
)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\ada\\report.pdf", "report.pdf"),
        ("  spaced name.txt  ", "spaced name.txt"),
        ("bad\x00na\nme\x1b.png", "badname.png"),
        ("gpj\u202e.exe", "gpj.exe"),
        ("cafe\u0301.jpg", "café.jpg"),
    ],
)
def test_clean_filename_drops_paths_and_control_characters(raw: str, clean: str) -> None:
    """Only the last path segment survives, without control or bidi-override characters."""
    assert clean_filename(raw) == clean


@pytest.mark.parametrize("raw", ["", "   ", ".", "..", "a/b/", "\x00\x01", "dir\\"])
def test_clean_filename_refuses_names_with_nothing_left(raw: str) -> None:
    """A name that is empty after cleaning is a 422 naming the field."""
    with pytest.raises(InvalidInput) as refused:
        clean_filename(raw)
    assert "filename" in refused.value.details


def test_clean_filename_truncates_to_255_bytes_keeping_the_extension() -> None:
    """Long names are cut to 255 UTF-8 bytes on a character boundary, extension kept."""
    name = clean_filename("é" * 300 + ".png")
    assert len(name.encode()) <= 255
    assert name.endswith(".png")
    assert set(name.removesuffix(".png")) == {"é"}
    assert len(clean_filename("x" * 400).encode()) == 255
    assert len(clean_filename("€" * 100).encode()) <= 255


def test_allowlist_maps_each_type_to_one_kind_and_never_allows_active_content() -> None:
    """Each allowed type has one kind; SVG, HTML and XML-like types are never allowed."""
    assert kind_of("image/png") == "image"
    assert kind_of("video/webm") == "video"
    assert kind_of("audio/ogg") == "audio"
    assert kind_of("application/pdf") == "file"
    every = [ct for types in ALLOWED_TYPES.values() for ct in types]
    assert len(every) == len(set(every))
    for bad in ("image/svg+xml", "text/html", "application/xhtml+xml", "text/xml", ""):
        assert kind_of(bad) is None
    assert not any("svg" in ct or "html" in ct or ct.endswith("xml") for ct in every)


@pytest.mark.parametrize(
    ("filename", "content_type", "saved"),
    [
        ("invoice.html", "text/plain", "invoice.html.txt"),
        ("setup.exe", "application/zip", "setup.exe.zip"),
        ("run.js", "text/plain", "run.js.txt"),
        ("notes.MD", "text/plain", "notes.MD"),
        ("Photo.JPEG", "image/jpeg", "Photo.JPEG"),
        ("photo.jpg", "image/png", "photo.jpg.png"),
        ("README", "text/plain", "README.txt"),
        ("report.pdf", "application/pdf", "report.pdf"),
        (".bashrc", "text/plain", ".bashrc.txt"),
    ],
)
def test_a_name_gets_its_types_extension_unless_it_has_one(
    filename: str, content_type: str, saved: str
) -> None:
    """A download saved to disk opens as the type it was checked as: an extension that does not
    suit the declared type (or none) gets the type's own added."""
    assert with_type_extension(filename, content_type) == saved
    request = parse_upload_request({"filename": filename, "content_type": content_type, "size": 1})
    assert request.filename == saved


def test_every_allowed_type_has_extensions_and_a_long_name_stays_within_255_bytes() -> None:
    """The extension table covers exactly the allowed types; adding one never passes 255 bytes
    nor splits a character."""
    every = {ct for types in ALLOWED_TYPES.values() for ct in types}
    assert set(EXTENSIONS) == every
    assert all(EXTENSIONS[ct] for ct in every)
    long = clean_filename("é" * 200 + ".html")
    saved = with_type_extension(long, "text/plain")
    assert saved.endswith(".txt")
    assert len(saved.encode()) <= 255
    saved.encode().decode()  # whole characters only


def test_size_must_be_an_integer_between_one_byte_and_five_mib() -> None:
    """1 and 5 MiB pass; 0, negatives, bools and floats are 422; 5 MiB + 1 is 413."""
    assert check_size(1) == 1
    assert check_size(MAX_BYTES) == MAX_BYTES
    for bad in (0, -1, True, 1.5, "10", None):
        with pytest.raises(InvalidInput) as refused:
            check_size(bad)
        assert not isinstance(refused.value, TooLarge)
    with pytest.raises(TooLarge):
        check_size(MAX_BYTES + 1)


def test_parse_upload_request_normalizes_and_derives_the_kind() -> None:
    """A valid body yields a clean name, the type and its kind; an integral 10.0 is a size."""
    request = parse_upload_request(
        {"filename": "/home/ada/Clip.MP4", "content_type": "video/mp4", "size": 10.0}
    )
    assert (request.filename, request.content_type, request.kind, request.size) == (
        "Clip.MP4",
        "video/mp4",
        "video",
        10,
    )
    assert isinstance(request.size, int)


@pytest.mark.parametrize("content_type", [" video/mp4", "Video/MP4", "video/mp4; codecs=avc1"])
def test_content_types_are_taken_exactly_as_listed(content_type: str) -> None:
    """Only the listed lower-case types pass: what the document's enum says."""
    with pytest.raises(InvalidInput) as refused:
        parse_upload_request({"filename": "a.mp4", "content_type": content_type, "size": 10})
    assert set(refused.value.details) == {"content_type"}


def test_parse_upload_request_reports_every_bad_field() -> None:
    """Unknown fields, operator objects and bad values are all named in ``details``."""
    with pytest.raises(InvalidInput) as refused:
        parse_upload_request(
            {"filename": {"$gt": ""}, "content_type": "text/html", "size": 0, "key": "x"}
        )
    assert set(refused.value.details) == {"filename", "content_type", "size", "key"}
    with pytest.raises(TooLarge):
        parse_upload_request(
            {"filename": "a.png", "content_type": "image/png", "size": MAX_BYTES + 1}
        )


def test_object_key_is_chosen_by_the_server() -> None:
    """The key is built from ids only, never from the client's file name."""
    assert object_key("a" * 32, "b" * 32) == f"attachments/{'a' * 32}/{'b' * 32}"


@pytest.mark.parametrize(
    ("filename", "header"),
    [
        ("report.pdf", 'attachment; filename="report.pdf"'),
        (
            'say "hi"\\.txt',
            "attachment; filename=\"say _hi__.txt\"; filename*=UTF-8''say%20%22hi%22%5C.txt",
        ),
        (
            "résumé.pdf",
            "attachment; filename=\"r_sum_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf",
        ),
        ("a;b=c.txt", 'attachment; filename="a;b=c.txt"'),
    ],
)
def test_content_disposition_is_rfc_6266_safe(filename: str, header: str) -> None:
    """Quotes and backslashes never reach the quoted string; non-ASCII goes in filename*."""
    assert content_disposition(filename) == header


def test_quota_wait_counts_a_day_and_says_when_enough_has_aged_out() -> None:
    """What fits now is None; otherwise the seconds until the oldest uploads leave the window."""
    now = datetime(2026, 1, 2, tzinfo=UTC)
    hour = timedelta(hours=1)
    held = [(now - 23 * hour, 400), (now - 2 * hour, 400), (now - 25 * hour, 999)]
    assert quota_wait(held, 200, limit=1000, now=now) is None
    assert quota_wait(held, 300, limit=1000, now=now) == 3600.0  # once the 23-hour-old one is out
    assert quota_wait(held, 700, limit=1000, now=now) == 22 * 3600.0
    assert quota_wait([], 2000, limit=1000, now=now) == 86400.0  # larger than the quota itself


def test_bytes_are_written_as_people_read_them() -> None:
    """Whole units without decimals, others with one."""
    assert [bytes_text(n) for n in (12, 2048, 5 * 1024 * 1024, 1 << 30, 1536 * 1024)] == [
        "12 bytes",
        "2 KiB",
        "5 MiB",
        "1 GiB",
        "1.5 MiB",
    ]


def test_a_file_name_with_a_lone_surrogate_is_invalid_not_a_server_error() -> None:
    """JSON's "\\ud800" in a file name is a 422 on the name (it has no UTF-8 encoding to store)."""
    with pytest.raises(InvalidInput) as excinfo:
        parse_upload_request({"filename": "a\ud800.txt", "content_type": "text/plain", "size": 3})
    assert excinfo.value.details == {"filename": "must be valid Unicode text"}
