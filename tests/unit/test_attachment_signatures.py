"""The first-bytes check of an upload against its declared type."""

from __future__ import annotations

import pytest

from services.management.attachment_rules import ALLOWED_TYPES
from services.management.attachment_signatures import SIGNED_TYPES, content_mismatch

ZIP = b"PK\x03\x04\x14\x00\x00\x00"
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

# A plausible start of a real file of each type.
SAMPLES: dict[str, list[bytes]] = {
    "image/png": [b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"],
    "image/jpeg": [b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", b"\xff\xd8\xff\xe1\x00\x18Exif"],
    "image/gif": [b"GIF89a\x01\x00\x01\x00", b"GIF87a\x01\x00\x01\x00"],
    "image/webp": [b"RIFF\x24\x00\x00\x00WEBPVP8 "],
    "video/mp4": [b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00"],
    "video/webm": [b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01"],
    "audio/mpeg": [b"ID3\x04\x00\x00\x00\x00\x00\x00", b"\xff\xfb\x90\x64\x00"],
    "audio/ogg": [b"OggS\x00\x02\x00\x00"],
    "audio/wav": [b"RIFF\x24\x08\x00\x00WAVEfmt "],
    "application/pdf": [b"%PDF-1.7\n%\xe2\xe3\xcf\xd3"],
    "application/zip": [ZIP, b"PK\x05\x06" + b"\x00" * 18],
    "application/msword": [OLE2],
    "application/vnd.ms-excel": [OLE2],
    "application/vnd.ms-powerpoint": [OLE2],
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": [ZIP],
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": [ZIP],
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": [ZIP],
    "application/vnd.oasis.opendocument.text": [ZIP],
    "application/vnd.oasis.opendocument.spreadsheet": [ZIP],
    "application/vnd.oasis.opendocument.presentation": [ZIP],
}


def test_every_allowed_type_but_plain_text_has_a_signature() -> None:
    """Each allowed binary type is checked; only text/plain, which has no signature, is not."""
    allowed = frozenset().union(*ALLOWED_TYPES.values())
    assert allowed - SIGNED_TYPES == {"text/plain"}
    assert allowed >= SIGNED_TYPES
    assert set(SAMPLES) == SIGNED_TYPES


@pytest.mark.parametrize(
    ("content_type", "head"), [(t, h) for t, hs in SAMPLES.items() for h in hs]
)
def test_a_real_file_of_the_declared_type_passes(content_type: str, head: bytes) -> None:
    """The start of a genuine file of each type is accepted."""
    assert content_mismatch(content_type, head + b"rest of the file") is None


@pytest.mark.parametrize("content_type", sorted(SIGNED_TYPES))
def test_text_and_truncated_headers_are_refused(content_type: str) -> None:
    """Plain text, an empty file, or only part of the signature is not the declared type."""
    for head in (b"hello, this is text", b"", SAMPLES[content_type][0][:2]):
        assert content_mismatch(content_type, head) == f"the content is not {content_type}"


def test_a_file_of_another_allowed_type_is_refused() -> None:
    """A PDF sent as a picture, or a picture sent as a PDF, does not pass."""
    assert content_mismatch("image/png", SAMPLES["application/pdf"][0]) is not None
    assert content_mismatch("application/pdf", SAMPLES["image/png"][0]) is not None
    assert content_mismatch("image/webp", SAMPLES["audio/wav"][0]) is not None


def test_plain_text_is_not_checked() -> None:
    """text/plain has no signature: any bytes, in any encoding, pass this check."""
    for head in (b"notes", "наброски".encode("utf-16"), b"", OLE2):
        assert content_mismatch("text/plain", head) is None
