"""WebSocket frames of the public contract: parsing client frames and rendering server frames.

Pure functions, no I/O. Parsing is strict: a frame is a JSON object of known fields with values
of the right type and size; ``id``, ``seq``, ``from`` and ``ts`` sent by a client are ignored (the
relay stamps them); anything else unknown is refused with an ``error`` frame, never a closed socket.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from chatcore.errors import (
    ChatError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    TooLarge,
    Unauthorized,
    Unavailable,
)
from chatcore.message_state import public_from_proto
from chatcore.messages import (
    BROADCAST,
    ID_RE,
    MAX_TEXT_CHARS,
    TYPE_VALUES,
    iso_ms,
    text_problem,
)
from chatcore.proto.chat.v1 import chat_pb2

MAX_CLIENT_MSG_ID = 64
_IGNORED = frozenset({"id", "seq", "from", "ts"})
_CHAT_FIELDS = (
    frozenset({"channel_id", "to", "type", "data", "client_msg_id", "thread_id"}) | _IGNORED
)
_TYPING_FIELDS = frozenset({"type", "channel_id", "to", "thread_id"}) | _IGNORED
# Unicode category Cc is exactly U+0000-U+001F and U+007F-U+009F; text may hold newline and tab.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class FrameError(InvalidInput):
    """A client frame that does not parse; answered with an ``error`` frame, the socket stays open.

    It carries the frame's ``client_msg_id`` when one could be read, so the client can match the
    error to its send.
    """

    def __init__(self, message: str, *, code: str = "invalid", client_msg_id: str = "") -> None:
        super().__init__(message)
        self.frame_code = code
        self.client_msg_id = client_msg_id


# The error frame's ``code`` for each error family: the one place the relay translates them.
_FRAME_CODES: tuple[tuple[type[ChatError], str], ...] = (
    (RateLimited, "rate_limited"),
    (TooLarge, "too_large"),
    (Conflict, "conflict"),
    (Forbidden, "forbidden"),
    (Unauthorized, "forbidden"),
    (NotFound, "forbidden"),
    (InvalidInput, "invalid"),
    (Unavailable, "unavailable"),
)


def frame_code(exc: ChatError) -> str:
    """The ``error`` frame code for a refused frame (a bug elsewhere counts as unavailable)."""
    if isinstance(exc, FrameError):
        return exc.frame_code
    for family, code in _FRAME_CODES:
        if isinstance(exc, family):
            return code
    return "unavailable"


@dataclass(frozen=True, slots=True)
class ChatFrame:
    channel_id: str
    to: str
    type: str
    data: str
    client_msg_id: str
    # A thread reply: the message it answers ("" for none); the gate resolves it to the root.
    thread_id: str = ""


@dataclass(frozen=True, slots=True)
class TypingFrame:
    channel_id: str
    to: str
    # Typing in a thread's reply box (its root's id), so pages show it there, not in the channel.
    thread_id: str = ""


def _id_field(obj: dict[str, Any], name: str, cmid: str, *, allow_broadcast: bool = False) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise FrameError(f"{name} must be a string", client_msg_id=cmid)
    if allow_broadcast and value == BROADCAST:
        return value
    if not ID_RE.fullmatch(value):
        raise FrameError(f"{name} is not a valid id", client_msg_id=cmid)
    return value


def _optional_id(obj: dict[str, Any], name: str, cmid: str) -> str:
    """An id field that may be absent or null (""), else checked as ``_id_field`` checks it."""
    return _id_field(obj, name, cmid) if obj.get(name) is not None else ""


def _check_text(data: str, cmid: str) -> None:
    problem = text_problem(data)
    if problem is not None:
        code = "too_large" if len(data) > MAX_TEXT_CHARS else "invalid"
        raise FrameError(problem, code=code, client_msg_id=cmid)


def parse_frame(raw: str | bytes) -> ChatFrame | TypingFrame:
    """A client frame, or ``FrameError`` saying what is wrong with it."""
    if isinstance(raw, bytes):
        raise FrameError("frames must be JSON text, not binary")
    try:
        obj = orjson.loads(raw)
    except (ValueError, RecursionError):
        # orjson refuses deep nesting, integers beyond 64 bits and lone surrogates (which no
        # store could take) as invalid JSON: all of it is one invalid frame, the socket stays.
        raise FrameError("frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise FrameError("frame must be a JSON object")
    raw_cmid = obj.get("client_msg_id", "")
    cmid = raw_cmid if isinstance(raw_cmid, str) and len(raw_cmid) <= MAX_CLIENT_MSG_ID else ""
    kind = obj.get("type")
    if kind == "typing":
        unknown = set(obj) - _TYPING_FIELDS
        if unknown:
            raise FrameError(f"unknown field {sorted(unknown)[0][:32]!r}")
        return TypingFrame(
            channel_id=_id_field(obj, "channel_id", ""),
            to=_id_field(obj, "to", "", allow_broadcast=True),
            thread_id=_optional_id(obj, "thread_id", ""),
        )
    if not isinstance(kind, str) or kind not in TYPE_VALUES:
        raise FrameError("unknown frame type", client_msg_id=cmid)
    unknown = set(obj) - _CHAT_FIELDS
    if unknown:
        raise FrameError(f"unknown field {sorted(unknown)[0][:32]!r}", client_msg_id=cmid)
    if "client_msg_id" in obj:
        if not isinstance(raw_cmid, str) or not 1 <= len(raw_cmid) <= MAX_CLIENT_MSG_ID:
            raise FrameError(f"client_msg_id must be 1 to {MAX_CLIENT_MSG_ID} characters")
        if _CONTROL.search(raw_cmid):
            raise FrameError("client_msg_id contains control characters")
    channel_id = _id_field(obj, "channel_id", cmid)
    to = _id_field(obj, "to", cmid, allow_broadcast=True)
    data = obj.get("data")
    if not isinstance(data, str):
        raise FrameError("data must be a string", client_msg_id=cmid)
    if kind == "text":
        _check_text(data, cmid)
    elif not ID_RE.fullmatch(data):
        raise FrameError(f"data of a {kind} message must be an attachment id", client_msg_id=cmid)
    thread_id = _optional_id(obj, "thread_id", cmid)
    return ChatFrame(
        channel_id=channel_id,
        to=to,
        type=kind,
        data=data,
        client_msg_id=cmid,
        thread_id=thread_id,
    )


def _dump(obj: dict[str, Any]) -> bytes:
    return orjson.dumps(obj)


def hello_frame(
    user_id: str,
    channels: list[str],
    relay_id: str,
    heartbeat_s: int,
    unread: dict[str, dict[str, int]] | None = None,
    edit_window_s: int = 300,
) -> bytes:
    # The edit window is the operator's (CHAT_EDIT_WINDOW_S): a client shows "edit" only within it.
    return _dump(
        {
            "type": "hello",
            "user_id": user_id,
            "channels": channels,
            "relay": relay_id,
            "heartbeat_s": heartbeat_s,
            "unread": unread or {},
            "edit_window_s": edit_window_s,
        }
    )


def ack_frame(client_msg_id: str, message_id: str, seq: int, ts_ms: int) -> bytes:
    return _dump(
        {
            "type": "ack",
            "client_msg_id": client_msg_id,
            "id": message_id,
            "seq": seq,
            "ts": iso_ms(ts_ms),
        }
    )


def error_frame(code: str, message: str, client_msg_id: str = "") -> bytes:
    return _dump(
        {"type": "error", "code": code, "message": message, "client_msg_id": client_msg_id}
    )


RESYNC_FRAME = _dump({"type": "resync"})


def membership_frame(channel_id: str, event: str) -> bytes:
    return _dump({"type": "membership", "channel_id": channel_id, "event": event})


def team_frame(channel_id: str, change: str) -> bytes:
    """``{"type":"team","channel_id","change"}``: the team changed (settings, roles, members)."""
    return _dump({"type": "team", "channel_id": channel_id, "change": change})


def profile_frame(channel_id: str, user_id: str, name: str) -> bytes:
    """``{"type":"profile","channel_id","user_id","name"}``: a member of the team renamed
    themselves (one frame per team the socket shares with them)."""
    return _dump({"type": "profile", "channel_id": channel_id, "user_id": user_id, "name": name})


def typing_out_frame(signal: chat_pb2.Signal) -> bytes:
    """``{"type":"typing","channel_id","to","from","ts"}``, and ``thread_id`` for a thread's box."""
    frame = {
        "type": "typing",
        "channel_id": signal.channel_id,
        "to": signal.to,
        "from": signal.sender,
        "ts": iso_ms(signal.ts_ms),
    }
    if signal.thread_id:
        frame["thread_id"] = signal.thread_id
    return _dump(frame)


def update_frame(update: chat_pb2.MessageUpdate) -> bytes:
    """``{"type":"update","seq","channel_id","change","message"}`` (DESIGN 5b)."""
    return _dump(
        {
            "type": "update",
            "seq": update.seq,
            "channel_id": update.message.message.channel_id,
            "change": update.change,
            "message": public_from_proto(update.message),
        }
    )


def read_frame(channel_id: str, seq: int) -> bytes:
    return _dump({"type": "read", "channel_id": channel_id, "seq": seq})


def presence_frame(channel_id: str, user_id: str, status: str) -> bytes:
    return _dump(
        {"type": "presence", "channel_id": channel_id, "user_id": user_id, "status": status}
    )
