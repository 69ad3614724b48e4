"""A client's view of its channels, kept gap-free by the contract's rules (DESIGN section 4).

Pure state, no I/O. Per channel:

* the **cursor** is the highest ``seq`` of the message frames applied in order; ``ack`` and other
  frames never move it;
* a **resume** (after ``hello``, a ``resync`` or a reconnect) pages history after the cursor; live
  frames that arrive meanwhile are buffered, and the cursor moves only as pages are applied;
  when the last page is in, the buffer is applied, deduplicated by message ``id``;
* every message is applied once: a message already held (same ``id``) is never applied again.

``SyncedClient`` in ``chatclient.synced`` drives this over a real socket and the REST API.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MESSAGE_TYPES = frozenset({"text", "image", "video", "audio", "file"})

Message = Mapping[str, Any]


def is_message(frame: Mapping[str, Any]) -> bool:
    """A frame is a message exactly when its type is a message type (the contract's rule)."""
    return frame.get("type") in MESSAGE_TYPES


@dataclass(slots=True)
class _Channel:
    cursor: int | None = None
    by_id: dict[str, Message] = field(default_factory=dict)
    resuming: bool = False
    buffered: list[Message] = field(default_factory=list)


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
        """What the user sees in the channel, in seq order."""
        return sorted(self._channel(channel_id).by_id.values(), key=lambda m: int(m["seq"]))

    def resuming(self, channel_id: str) -> bool:
        return self._channel(channel_id).resuming

    def _apply(self, channel: _Channel, message: Message) -> bool:
        seq = int(message["seq"])
        if channel.cursor is None or seq > channel.cursor:
            channel.cursor = seq
        if message["id"] in channel.by_id:
            return False
        channel.by_id[str(message["id"])] = message
        return True

    def live(self, frame: Message) -> list[Message]:
        """A message frame from the socket: applied now (and returned if new), or buffered."""
        if not is_message(frame):
            return []
        channel = self._channel(str(frame["channel_id"]))
        if channel.resuming:
            channel.buffered.append(frame)
            return []
        return [frame] if self._apply(channel, frame) else []

    def begin_resume(self, channel_id: str) -> int | None:
        """Start a resume: live frames are buffered from now; returns the cursor to page after.

        Calling it again while a resume is unfinished (it failed, or another resync came) keeps
        the buffer: the cursor has not moved past anything unfetched.
        """
        channel = self._channel(channel_id)
        channel.resuming = True
        return channel.cursor

    def apply_page(self, channel_id: str, page: Iterable[Message]) -> list[Message]:
        """One history page, ascending: applied in order; returns what was new."""
        channel = self._channel(channel_id)
        return [m for m in page if self._apply(channel, m)]

    def end_resume(self, channel_id: str) -> list[Message]:
        """The last page is in: apply what arrived live meanwhile (deduplicated by id)."""
        channel = self._channel(channel_id)
        channel.resuming = False
        buffered, channel.buffered = channel.buffered, []
        return [m for m in sorted(buffered, key=lambda m: int(m["seq"])) if self._apply(channel, m)]
