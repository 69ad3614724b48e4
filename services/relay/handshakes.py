"""Membership events that arrive while a socket waits for its membership lookup.

A socket's channels come from one lookup at the controllers; the hub attaches the socket when
the answer is back. A membership event for the user (or a team-wide one) that arrives in between
would find no socket of theirs to act on, and the answer may have been read before the change:
a removed member would be greeted with the team, an added one would never get it. So the hub
notes such events per user from the lookup's start, and replays them in order on the channel map
of the socket it attaches, before it wants anything (``replay``): the user's other sockets took
them when they came. Replaying is safe whatever the answer saw: a removal of a channel the map
does not hold changes nothing, an addition is a grant that reads the team again, and
(de)activations end in the state of the last one.

Pure bookkeeping, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from chatcore.proto.chat.v1 import chat_pb2

# The team-wide changes: a team (de)activated.
ACTIVATION = (chat_pb2.MEMBERSHIP_CHANGE_DEACTIVATED, chat_pb2.MEMBERSHIP_CHANGE_ACTIVATED)


@dataclass(frozen=True, slots=True)
class Noted:
    """One membership event seen during a handshake: the channel and the change."""

    channel_id: str
    change: int  # chat_pb2.MembershipChange


class Handshakes:
    def __init__(self) -> None:
        # Lookups in flight per user, and the events seen since the first of them began.
        self._open: dict[str, int] = {}
        self._noted: dict[str, list[Noted]] = {}

    def begin(self, user_id: str) -> None:
        """A socket of ``user_id`` is about to look its memberships up."""
        self._open[user_id] = self._open.get(user_id, 0) + 1
        self._noted.setdefault(user_id, [])

    def end(self, user_id: str) -> list[Noted]:
        """That lookup is over (attached or given up): the events seen since, in order."""
        noted = list(self._noted.get(user_id, ()))
        left = self._open.get(user_id, 0) - 1
        if left > 0:
            self._open[user_id] = left
        else:
            self._open.pop(user_id, None)
            self._noted.pop(user_id, None)
        return noted

    def note(self, user_id: str, channel_id: str, change: int) -> None:
        """A membership event: kept for ``user_id`` if one of their lookups is open, or for every
        open lookup when it concerns the whole team (no user)."""
        users = (user_id,) if user_id else tuple(self._noted)
        for user in users:
            noted = self._noted.get(user)
            if noted is not None:
                noted.append(Noted(channel_id, change))

    def __len__(self) -> int:
        return len(self._open)


def replay(channels: dict[str, bool], noted: Sequence[Noted]) -> list[str]:
    """Apply membership events noted during a lookup to the channel map it answered, in order;
    the channels added since, which a grant (reading the team again) gives."""
    added: list[str] = []
    for event in noted:
        channel, change = event.channel_id, event.change
        if change == chat_pb2.MEMBERSHIP_CHANGE_ADDED:
            if channel not in added:
                added.append(channel)
        elif change == chat_pb2.MEMBERSHIP_CHANGE_REMOVED:
            channels.pop(channel, None)
            if channel in added:
                added.remove(channel)
        elif change in ACTIVATION and channel in channels:
            channels[channel] = change == chat_pb2.MEMBERSHIP_CHANGE_ACTIVATED
    return added
