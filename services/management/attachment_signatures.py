"""Whether an upload's first bytes are what its declared type says (pure, no I/O).

Browsers show images, audio and video inline and hand the rest to another program by its type,
so a file whose bytes are not of the declared type is either broken for every member (a text file
sent as ``image/png`` shows as a broken image) or a disguise (a document or archive passed off as
a picture). ``complete`` checks the first bytes of the stored object against the type's format
signature before the malware scan and rejects what does not match, like a size mismatch.

``text/plain`` has no signature (any encoding is plain text to someone) and is not checked.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

# How many leading bytes the checks need at most.
HEAD_BYTES = 16

_ZIP = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or an empty archive
_OLE2 = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",)  # Office 97-2003 compound documents


def _starts(*prefixes: bytes) -> Callable[[bytes], bool]:
    return lambda head: head.startswith(prefixes)


def _riff(form: bytes) -> Callable[[bytes], bool]:
    return lambda head: head[:4] == b"RIFF" and head[8:12] == form


def _mp4(head: bytes) -> bool:
    # An ISO base media file starts with its size, then the ``ftyp`` box.
    return head[4:8] == b"ftyp"


def _mpeg_audio(head: bytes) -> bool:
    # An ID3v2 tag, or straight into an MPEG audio frame (11 set sync bits).
    return head.startswith(b"ID3") or (
        len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
    )


_SIGNATURES: Mapping[str, Callable[[bytes], bool]] = {
    "image/png": _starts(b"\x89PNG\r\n\x1a\n"),
    "image/jpeg": _starts(b"\xff\xd8\xff"),
    "image/gif": _starts(b"GIF87a", b"GIF89a"),
    "image/webp": _riff(b"WEBP"),
    "video/mp4": _mp4,
    "video/webm": _starts(b"\x1a\x45\xdf\xa3"),
    "audio/mpeg": _mpeg_audio,
    "audio/ogg": _starts(b"OggS"),
    "audio/wav": _riff(b"WAVE"),
    "application/pdf": _starts(b"%PDF-"),
    "application/zip": _starts(*_ZIP),
    "application/msword": _starts(*_OLE2),
    "application/vnd.ms-excel": _starts(*_OLE2),
    "application/vnd.ms-powerpoint": _starts(*_OLE2),
    # Office Open XML and OpenDocument files are zip archives.
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": _starts(*_ZIP),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": _starts(*_ZIP),
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": _starts(*_ZIP),
    "application/vnd.oasis.opendocument.text": _starts(*_ZIP),
    "application/vnd.oasis.opendocument.spreadsheet": _starts(*_ZIP),
    "application/vnd.oasis.opendocument.presentation": _starts(*_ZIP),
}

SIGNED_TYPES = frozenset(_SIGNATURES)


def content_mismatch(content_type: str, head: bytes) -> str | None:
    """Why ``head`` (the object's first bytes) is not of ``content_type``; None when it is."""
    check = _SIGNATURES.get(content_type)
    if check is None or check(head[:HEAD_BYTES]):
        return None
    return f"the content is not {content_type}"
