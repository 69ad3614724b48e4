"""A client's view of its channels, kept gap-free by the contract's rules (DESIGN sections 4, 5b).

Pure state, no I/O. Per channel:

* the **cursor** is the highest ``seq`` of the message and ``update`` frames applied in order;
  ``ack``, ``read`` and other frames never move it;
* a **resume** (after ``hello``, a ``resync`` or a reconnect) pages the channel's log after the
  cursor (``changes?after=``: creations and changes alike); live frames that arrive meanwhile are
  buffered, and the cursor moves only as pages are applied; when the last page is in, the buffer
  is applied in seq order, deduplicated;
* every entry is applied once: a message already held (same ``id``) is not created again, and a
  change already applied (same seq, change and message) is not applied again. A change carries the
  whole message as it left it; it replaces the held message unless that one is already newer.

``SyncedClient`` in ``chatclient.synced`` drives this over a real socket and the REST API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MESSAGE_TYPES = frozenset({"text", "image", "video", "audio", "file"})
CREATED = "created"

Message = Mapping[str, Any]


def is_message(frame: Mapping[str, Any]) -> bool:
    """A frame is a message exactly when its type is a message type (the contract's rule)."""
    return frame.get("type") in MESSAGE_TYPES


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry of a channel's log: a message created, or a change (the message after it)."""

    seq: int
    change: str
    message: Message

    @classmethod
    def of_frame(cls, frame: Message) -> Entry | None:
        """The entry a live frame stands for (None for frames that are no entry)."""
        if is_message(frame):
            return cls(int(frame["seq"]), CREATED, frame)
        if frame.get("type") == "update":
            return cls(int(frame["seq"]), str(frame["change"]), frame["message"])
        return None

    @property
    def key(self) -> tuple[int, str, str]:
        return (self.seq, self.change, str(self.message["id"]))


@dataclass(slots=True)
class _Channel:
    cursor: int | None = None
    by_id: dict[str, Message] = field(default_factory=dict)
    # The seq of the entry each held message was last set from.
    version: dict[str, int] = field(default_factory=dict)
    applied: set[tuple[int, str, str]] = field(default_factory=set)
    resuming: bool = False
    buffered: list[Entry] = field(default_factory=list)


class Timeline:
    def __init__(self) -> None:
        self._channels: dict[str, _Channel] = {}

    def _channel(self, channel_id: str) -> _Channel:
        channel = self._channels.get(channel_id)
        if channel is None:
            channel = self._channels[channel_id] = _Channel()
        return channel

    @property
    def channels(self) -> list[str]:
        return list(self._channels)

    def cursor(self, channel_id: str) -> int | None:
        return self._channel(channel_id).cursor

    def messages(self, channel_id: str) -> list[Message]:
        """What the user sees in the channel, in seq order (changes applied)."""
        return sorted(self._channel(channel_id).by_id.values(), key=lambda m: int(m["seq"]))

    def message(self, channel_id: str, message_id: str) -> Message | None:
        return self._channel(channel_id).by_id.get(message_id)

    def resuming(self, channel_id: str) -> bool:
        return self._channel(channel_id).resuming

    def _apply(self, channel: _Channel, entry: Entry) -> bool:
        if channel.cursor is None or entry.seq > channel.cursor:
            channel.cursor = entry.seq
        if entry.key in channel.applied:
            return False
        channel.applied.add(entry.key)
        message_id = str(entry.message["id"])
        held = channel.version.get(message_id)
        if entry.change == CREATED and held is not None:
            return False  # already held (live, then in a page): never applied twice
        if held is not None and held > entry.seq:
            return False  # the held state is newer (a page overlapping what came live)
        channel.by_id[message_id] = entry.message
        channel.version[message_id] = entry.seq
        return True

    def live(self, frame: Message) -> list[Entry]:
        """A frame from the socket: applied now (returned if it changed something), or buffered
        during a resume. Frames that are no entry of the log are ignored."""
        entry = Entry.of_frame(frame)
        if entry is None:
            return []
        channel = self._channel(str(entry.message["channel_id"]))
        if channel.resuming:
            channel.buffered.append(entry)
            return []
        return [entry] if self._apply(channel, entry) else []

    def begin_resume(self, channel_id: str) -> int | None:
        """Start a resume: live frames are buffered from now; returns the cursor to page after.

        Calling it again while a resume is unfinished (it failed, or another resync came) keeps
        the buffer: the cursor has not moved past anything unfetched.
        """
        channel = self._channel(channel_id)
        channel.resuming = True
        return channel.cursor

    def apply_page(self, channel_id: str, page: Iterable[Message]) -> list[Entry]:
        """One history page (messages, ascending): applied in order; returns what was new."""
        channel = self._channel(channel_id)
        entries = [Entry(int(m["seq"]), CREATED, m) for m in page]
        return [e for e in entries if self._apply(channel, e)]

    def apply_changes(self, channel_id: str, page: Iterable[Message]) -> list[Entry]:
        """One page of the changes feed (``[{seq, change, message}]``, ascending), in order."""
        channel = self._channel(channel_id)
        entries = [Entry(int(e["seq"]), str(e["change"]), e["message"]) for e in page]
        return [e for e in entries if self._apply(channel, e)]

    def end_resume(self, channel_id: str) -> list[Entry]:
        """The last page is in: apply what arrived live meanwhile, in seq order, deduplicated."""
        channel = self._channel(channel_id)
        channel.resuming = False
        buffered, channel.buffered = channel.buffered, []
        buffered.sort(key=lambda e: (e.seq, e.change != CREATED))
        return [e for e in buffered if self._apply(channel, e)]
