"""Chat messages across the system: types, the stored document and the client JSON, one codec.

The relay builds ``ChatMessage`` records, the controller stores them as documents and streams them
back, and the relay and the history API render the same client object
``{"id","seq","channel_id","to","type","data","from","ts"}``. Keeping every conversion here means
the three can never disagree about a field.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from chatcore import schema
from chatcore.errors import InvalidInput
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.unread import mentioned

CORRELATION_HEADER = "correlation_id"
# Which kind of record a chat.messages.v1 value is (protos/chat/v1/chat.proto): absent or
# "message" for a ChatMessage, "change" for a MessageChange, "read" for a ReadMarker.
KIND_HEADER = "kind"
KIND_MESSAGE = "message"
KIND_CHANGE = "change"
KIND_READ = "read"
# Team, user and attachment ids on the wire: opaque short tokens (32 hex in practice). This
# alphabet can never mean anything to MongoDB: no "$", no ".", only letters, digits, "_" and "-".
ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A relay names itself to the controllers; the name goes into their logs and metrics.
_RELAY_ID_CHARS = "A-Za-z0-9._:-"
RELAY_ID_RE = re.compile(rf"^[{_RELAY_ID_CHARS}]{{1,64}}$")
# One relay-to-controller SubscribeRequest names at most this many channels (about what fits in
# gRPC's 4 MiB); a relay sends a larger set as several requests.
MAX_CHANNELS_PER_REQUEST = 100_000
_RELAY_ID_UNSAFE = re.compile(rf"[^{_RELAY_ID_CHARS}]")


def automatic_relay_id(hostname: str, port: int) -> str:
    """``<host>-<port>`` within RELAY_ID_RE: unsafe characters become ``_`` and a long host name
    (a Kubernetes pod's may have 63 characters) is cut so the port, which tells relays on one
    host apart, always fits."""
    suffix = f"-{port}"
    host = _RELAY_ID_UNSAFE.sub("_", hostname)[: 64 - len(suffix)] or "relay"
    return host + suffix


MAX_TEXT_CHARS = 4000
# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; text may hold newline and tab.
_TEXT_CONTROL_CHARS = "\x00-\x08\x0b-\x1f\x7f-\x9f"
_TEXT_CONTROL = re.compile(f"[{_TEXT_CONTROL_CHARS}]")
# A text needs one character that shows: not whitespace, not blank (``schema.BLANK``).
_TEXT_SHOWS = re.compile(f"[^{schema.SPACE}{schema.BLANK}]")
# The same rule as one regular expression (declared in docs/openapi.json for edits): at least one
# character that is neither whitespace, blank nor control, and no control character but tab and
# newline.
# Lone surrogates are left out of it: a JSON document's text is UTF-8, which cannot carry them
# (only a \u escape can), and the tools that read the document refuse them in a pattern.
TEXT_PATTERN = (
    f"^[^{_TEXT_CONTROL_CHARS}]*[^{schema.CONTROL}{schema.SPACE}{schema.BLANK}]"
    f"[^{_TEXT_CONTROL_CHARS}]*$"
)


def text_problem(data: str) -> str | None:
    """Why ``data`` cannot be a text message's (or an edit's) text; None when it can."""
    if not _TEXT_SHOWS.search(data):
        return "text must not be empty (whitespace and invisible characters alone show nothing)"
    if len(data) > MAX_TEXT_CHARS:
        return f"text exceeds {MAX_TEXT_CHARS} characters"
    if _TEXT_CONTROL.search(data):
        return "text contains control characters"
    if schema.SURROGATE_RE.search(data):
        return "text is not valid Unicode"
    return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
BROADCAST = "*"

TYPE_NAMES: dict[int, str] = {
    chat_pb2.MESSAGE_TYPE_TEXT: "text",
    chat_pb2.MESSAGE_TYPE_IMAGE: "image",
    chat_pb2.MESSAGE_TYPE_VIDEO: "video",
    chat_pb2.MESSAGE_TYPE_AUDIO: "audio",
    chat_pb2.MESSAGE_TYPE_FILE: "file",
}
TYPE_VALUES: dict[str, chat_pb2.MessageType.ValueType] = {
    name: chat_pb2.MessageType.ValueType(value) for value, name in TYPE_NAMES.items()
}


def iso_datetime(value: datetime) -> str:
    """ISO-8601 UTC with milliseconds, e.g. ``2026-11-25T10:00:00.123Z``: the API's one format."""
    utc = value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@functools.lru_cache(maxsize=256)
def _iso_second(seconds: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(seconds))


def iso_ms(ts_ms: int) -> str:
    """``iso_datetime`` of a Unix time in milliseconds.

    On every delivery's path: the formatted second is cached (messages come in the same few
    seconds), only the milliseconds are formatted each time.
    """
    seconds, millis = divmod(ts_ms, 1000)
    return f"{_iso_second(seconds)}{millis:03d}Z"


def to_datetime(ts_ms: int) -> datetime:
    # Integer arithmetic: a float timestamp could turn .123 into .122999.
    return _EPOCH + timedelta(milliseconds=ts_ms)


def from_datetime(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return round(value.timestamp() * 1000)


def decode_record(value: bytes) -> chat_pb2.ChatMessage:
    """A ``chat.messages.v1`` record value; ``InvalidInput`` (dead-letter it) when it is not one."""
    message = chat_pb2.ChatMessage()
    try:
        message.ParseFromString(value)
    except Exception as exc:  # protobuf raises DecodeError, but also others on garbage
        raise InvalidInput(f"not a ChatMessage record: {type(exc).__name__}") from exc
    if not message.id or not message.channel_id or not message.sender or not message.to:
        raise InvalidInput("ChatMessage record lacks id, channel_id, sender or to")
    if message.type not in TYPE_NAMES:
        raise InvalidInput(f"ChatMessage record has unknown type {message.type}")
    return message


def to_document(
    message: chat_pb2.ChatMessage, seq: int, bucket: str, count: int = 0
) -> dict[str, Any]:
    """The MongoDB document of a persisted message, stored in history bucket ``bucket``;
    ``count``: the channel's team messages up to and including this record (chatcore.unread)."""
    doc: dict[str, Any] = {
        "id": message.id,
        "channel_id": message.channel_id,
        "seq": seq,
        "bucket": bucket,
        "to": message.to,
        "type": TYPE_NAMES[message.type],
        "data": message.data,
        "from": message.sender,
        "ts": to_datetime(message.ts_ms),
        "client_msg_id": message.client_msg_id,
        "thread_id": message.thread_id or None,
        "n": count,
    }
    if message.to == BROADCAST and message.type == chat_pb2.MESSAGE_TYPE_TEXT:
        users = mentioned(message.data)
        if users:
            doc[schema.MESSAGE_MENTIONS] = users
    return doc


def from_document(doc: dict[str, Any]) -> chat_pb2.PersistedMessage:
    """A stored document back as the wire type (history, redelivery)."""
    return chat_pb2.PersistedMessage(
        message=chat_pb2.ChatMessage(
            id=str(doc["id"]),
            channel_id=str(doc["channel_id"]),
            to=str(doc["to"]),
            type=TYPE_VALUES[str(doc["type"])],
            data=str(doc["data"]),
            sender=str(doc["from"]),
            ts_ms=from_datetime(doc["ts"]),
            client_msg_id=str(doc.get("client_msg_id", "")),
            thread_id=str(doc.get("thread_id") or ""),
        ),
        seq=int(doc["seq"]),
    )


def client_object(persisted: chat_pb2.PersistedMessage) -> dict[str, Any]:
    """The contract's message object of a new message as clients receive it live: the same keys
    as ``chatcore.message_state.StoredMessage.public`` with nothing changed yet."""
    m = persisted.message
    return {
        "id": m.id,
        "seq": persisted.seq,
        "channel_id": m.channel_id,
        "to": m.to,
        "type": TYPE_NAMES[m.type],
        "data": m.data,
        "from": m.sender,
        "ts": iso_ms(m.ts_ms),
        "thread_id": m.thread_id or None,
        "edited_ts": None,
        "deleted": False,
        "reactions": [],
    }


def client_json(persisted: chat_pb2.PersistedMessage) -> bytes:
    """``client_object`` serialized once (UTF-8 JSON); the relay sends it to every socket."""
    return orjson.dumps(client_object(persisted))
