"""The rules of attachments, as pure functions: names, types, sizes, keys, download headers.

No I/O. Everything a client sends for an upload passes through ``parse_upload_request`` before it
reaches S3 or the database; what comes back out (the object key, the ``Content-Disposition`` of a
download) is built here from values that already passed these checks. docs/openapi.json declares
the same rules (``FILENAME_*_PATTERN``, the type list, the size range); a unit test keeps them
equal.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from chatcore.errors import InvalidInput, TooLarge
from chatcore.http import json_integer
from chatcore.schema import CONTROL, SPACE, SURROGATE_RE

MAX_BYTES = 5 * 1024 * 1024
FILENAME_MAX_BYTES = 255
# Longer "extensions" are part of the name: truncation keeps at most this much suffix.
_EXTENSION_MAX_BYTES = 16

# Per message type, the content types a client may declare. Never SVG or HTML (or anything else a
# browser would render as a document with scripts): downloads are served from the S3 origin.
ALLOWED_TYPES: Mapping[str, frozenset[str]] = {
    "image": frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"}),
    "video": frozenset({"video/mp4", "video/webm"}),
    "audio": frozenset({"audio/mpeg", "audio/ogg", "audio/wav"}),
    "file": frozenset(
        {
            "application/pdf",
            "text/plain",
            "application/zip",
            "application/msword",
            "application/vnd.ms-excel",
            "application/vnd.ms-powerpoint",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            "application/vnd.oasis.opendocument.text",
            "application/vnd.oasis.opendocument.spreadsheet",
            "application/vnd.oasis.opendocument.presentation",
        }
    ),
}
_KIND_OF: Mapping[str, str] = {ct: kind for kind, types in ALLOWED_TYPES.items() for ct in types}

# The extensions a saved file of each type may keep, the first being the one added to any other
# name: "invoice.html" declared text/plain is stored as "invoice.html.txt", so a download saved to
# disk opens as what was checked, not as a page or a program. Plain text keeps only extensions
# that no desktop opens as a script or a document with scripts.
EXTENSIONS: Mapping[str, tuple[str, ...]] = {
    "image/png": ("png",),
    "image/jpeg": ("jpg", "jpeg", "jpe", "jfif"),
    "image/gif": ("gif",),
    "image/webp": ("webp",),
    "video/mp4": ("mp4", "m4v"),
    "video/webm": ("webm",),
    "audio/mpeg": ("mp3", "mpga"),
    "audio/ogg": ("ogg", "oga", "opus"),
    "audio/wav": ("wav",),
    "application/pdf": ("pdf",),
    "text/plain": (
        *("txt", "text", "log", "md", "markdown", "rst", "csv", "tsv", "json", "yaml", "yml"),
        *("toml", "ini", "cfg", "conf", "diff", "patch", "srt", "vtt"),
    ),
    "application/zip": ("zip",),
    "application/msword": ("doc",),
    "application/vnd.ms-excel": ("xls",),
    "application/vnd.ms-powerpoint": ("ppt",),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ("docx",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ("xlsx",),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ("pptx",),
    "application/vnd.oasis.opendocument.text": ("odt",),
    "application/vnd.oasis.opendocument.spreadsheet": ("ods",),
    "application/vnd.oasis.opendocument.presentation": ("odp",),
}

_UPLOAD_FIELDS = frozenset({"filename", "content_type", "size"})
FILENAME_RAW_MAX = 4096

# What ``clean_filename`` removes (Unicode Cc and Cf, Python 3.11 / Unicode 14), as characters.
IGNORED = CONTROL + (
    "\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
    "\U000e0020-\U000e007f"
)
# ``clean_filename`` accepts a name exactly when its last segment holds a character that is no
# separator, not removed and no whitespace (this pattern matches), and is not "." or ".." once the
# removed characters and surrounding whitespace are gone (the second pattern does not match).
FILENAME_PATTERN = f"[^/\\\\{IGNORED}{SPACE}][^/\\\\]*$"
FILENAME_DOTS_PATTERN = (
    f"(?:^|[/\\\\])[{IGNORED}{SPACE}]*\\.(?:[{IGNORED}]*\\.)?[{IGNORED}{SPACE}]*$"
)


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """A validated upload request: a clean name, an allowed type and its kind, a size in range."""

    filename: str
    content_type: str
    kind: str
    size: int


def _is_invisible_control(ch: str) -> bool:
    # Cc: C0/C1 controls (NUL, newline, ESC...). Cf: format characters such as U+202E (RIGHT-TO-
    # LEFT OVERRIDE), which make "gpj.exe" display as "exe.jpg". Neither belongs in a file name.
    return unicodedata.category(ch) in ("Cc", "Cf")


def _truncate_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 encoding fits ``limit`` bytes (whole chars)."""
    return text.encode()[:limit].decode(errors="ignore")


def clean_filename(raw: str) -> str:
    """The last path segment of ``raw`` without control characters, at most 255 UTF-8 bytes.

    Raises ``InvalidInput`` when nothing usable remains ("", ".", "..", only separators).
    """
    name = unicodedata.normalize("NFC", raw)
    # Both separators: a Windows client sends C:\\Users\\x\\photo.png.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if not _is_invisible_control(ch)).strip()
    if name in ("", ".", ".."):
        raise InvalidInput("invalid file name", details={"filename": "no usable file name"})
    if len(name.encode()) <= FILENAME_MAX_BYTES:
        return name
    stem, dot, ext = name.rpartition(".")
    if dot and stem and 0 < len(ext.encode()) < _EXTENSION_MAX_BYTES:
        suffix = "." + ext
        return _truncate_utf8(stem, FILENAME_MAX_BYTES - len(suffix.encode())) + suffix
    return _truncate_utf8(name, FILENAME_MAX_BYTES)


def with_type_extension(filename: str, content_type: str) -> str:
    """``filename`` when its extension (any case) suits ``content_type``, otherwise with the type's
    extension added, within 255 UTF-8 bytes."""
    _stem, dot, ext = filename.rpartition(".")
    suits = EXTENSIONS[content_type]
    if dot and ext.lower() in suits:
        return filename
    suffix = "." + suits[0]
    return _truncate_utf8(filename, FILENAME_MAX_BYTES - len(suffix)) + suffix


def kind_of(content_type: str) -> str | None:
    """The message type a content type may be sent as, or None when it is not allowed at all."""
    return _KIND_OF.get(content_type)


def check_size(size: object, max_bytes: int = MAX_BYTES) -> int:
    """``size`` when it is an integer in 1..max_bytes (a JSON bool is not an integer; 5.0 is)."""
    size = json_integer(size)
    if size is None:
        raise InvalidInput("invalid size", details={"size": "must be an integer"})
    if size < 1:
        raise InvalidInput("invalid size", details={"size": "must be at least 1 byte"})
    if size > max_bytes:
        # 413 rather than 422: the same answer as any other input over a size limit.
        raise TooLarge(
            f"attachments are limited to {max_bytes} bytes", details={"size": "too large"}
        )
    return size


def parse_upload_request(body: Mapping[str, Any], *, max_bytes: int = MAX_BYTES) -> UploadRequest:
    """``{filename, content_type, size}`` checked field by field (422 with ``details``)."""
    errors: dict[str, str] = {}
    for key in body:
        if key not in _UPLOAD_FIELDS:
            errors[str(key)[:64]] = "unknown field"
    filename = ""
    raw_name = body.get("filename")
    if not isinstance(raw_name, str) or len(raw_name) > FILENAME_RAW_MAX:
        errors["filename"] = f"must be a string of at most {FILENAME_RAW_MAX} characters"
    elif SURROGATE_RE.search(raw_name):
        errors["filename"] = "must be valid Unicode text"
    else:
        try:
            filename = clean_filename(raw_name)
        except InvalidInput as exc:
            errors.update(exc.details)
    raw_type = body.get("content_type")
    # Exactly as listed: browsers send File.type in this form, and a document can list it.
    content_type = raw_type if isinstance(raw_type, str) else ""
    kind = kind_of(content_type)
    if kind is None:
        errors["content_type"] = "not an allowed type (see the API documentation)"
    size = body.get("size")
    try:
        size = check_size(size, max_bytes)
    except TooLarge:
        if errors:  # report every field at once; the size is only one of the problems
            errors["size"] = "too large"
        else:
            raise
    except InvalidInput as exc:
        errors.update(exc.details)
    if errors:
        raise InvalidInput("invalid attachment request", details=errors)
    assert kind is not None
    assert isinstance(size, int)
    return UploadRequest(with_type_extension(filename, content_type), content_type, kind, size)


QUOTA_WINDOW = timedelta(days=1)


def bytes_text(n: int) -> str:
    """A byte count as people read it: 1 GiB, 5 MiB, 800 KiB, 12 bytes."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n} bytes"


def quota_wait(
    held: Sequence[tuple[datetime, int]], size: int, *, limit: int, now: datetime
) -> float | None:
    """Seconds until ``size`` more bytes fit in the account's daily quota, given the ``(created,
    size)`` of what it requested in the window; None when they fit now."""
    recent = sorted((at, n) for at, n in held if at > now - QUOTA_WINDOW)
    used = sum(n for _, n in recent)
    if used + size <= limit:
        return None
    for at, n in recent:  # the oldest leave the window first
        used -= n
        if used + size <= limit:
            return max(1.0, (at + QUOTA_WINDOW - now).total_seconds())
    return QUOTA_WINDOW.total_seconds()  # larger than the quota itself: never, say a day


def object_key(team_id: str, attachment_id: str) -> str:
    """Where an attachment is uploaded; chosen by the server, never from the client's name."""
    return f"attachments/{team_id}/{attachment_id}"


def scanned_key(upload_key: str) -> str:
    """Where the bytes that passed the checks are written by the service itself. No upload form
    names it, so nobody can replace them after the scan (the form for ``upload_key`` stays valid
    until it expires). A sibling, not a child: file-backed S3 servers cannot hold an object and
    a "directory" of the same name."""
    return f"{upload_key}.scanned"


def _ascii_fallback(filename: str) -> str:
    # RFC 6266 quoted-string: no quote or backslash, printable ASCII only.
    chars = (ch if 0x20 <= ord(ch) < 0x7F and ch not in '"\\' else "_" for ch in filename)
    return "".join(chars)


def content_disposition(filename: str) -> str:
    """``attachment; filename="..."`` (+ ``filename*`` UTF-8 when the name is not plain ASCII)."""
    fallback = _ascii_fallback(filename)
    header = f'attachment; filename="{fallback}"'
    if fallback != filename:
        # RFC 5987 ext-value: every byte outside attr-char percent-encoded.
        header += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return header
