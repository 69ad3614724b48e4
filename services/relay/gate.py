"""Authorization of chat frames: membership, team state, DM recipients, attachments.

The socket's own channel map answers membership at once (it is kept current by membership
events); member lists for DMs and attachment checks come from the controller, member lists cached
per channel until a membership event for that channel arrives.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chatcore.errors import Unavailable
from chatcore.messages import BROADCAST, TYPE_VALUES
from services.relay.controller_link import ControllerLink
from services.relay.frames import ChatFrame, FrameError, TypingFrame
from services.relay.hub import Session

_MEMBERS_TTL_S = 60.0


def check_membership(session: Session, frame: ChatFrame | TypingFrame, cmid: str = "") -> None:
    """The sender must be a member of the channel, and the team must be active."""
    active = session.channels.get(frame.channel_id)
    if active is None:
        raise FrameError("not a member of this channel", code="forbidden", client_msg_id=cmid)
    if not active:
        raise FrameError("this team is deactivated", code="forbidden", client_msg_id=cmid)


class Gate:
    def __init__(self, link: ControllerLink, clock: Callable[[], float] = time.monotonic) -> None:
        self._link = link
        self._clock = clock
        self._members: dict[str, tuple[float, frozenset[str]]] = {}

    def forget(self, channels: list[str]) -> None:
        """Drop cached member lists after membership events for these channels."""
        for channel in channels:
            self._members.pop(channel, None)

    async def _members_of(self, channel: str) -> frozenset[str]:
        cached = self._members.get(channel)
        now = self._clock()
        if cached is not None and now - cached[0] < _MEMBERS_TTL_S:
            return cached[1]
        reply = await self._link.members(channel)
        members = frozenset(reply.user_ids) if reply.found else frozenset()
        self._members[channel] = (now, members)
        return members

    async def check(self, session: Session, frame: ChatFrame | TypingFrame) -> None:
        """Raise ``FrameError`` (forbidden / invalid / unavailable) unless the frame may go out."""
        cmid = frame.client_msg_id if isinstance(frame, ChatFrame) else ""
        check_membership(session, frame, cmid)
        try:
            if frame.to != BROADCAST and frame.to not in await self._members_of(frame.channel_id):
                raise FrameError(
                    "the recipient is not a member of this team",
                    code="forbidden",
                    client_msg_id=cmid,
                )
            if isinstance(frame, ChatFrame) and frame.type != "text":
                reply = await self._link.check_attachment(
                    frame.data, frame.channel_id, TYPE_VALUES[frame.type]
                )
                if not reply.ok:
                    raise FrameError(
                        f"attachment not usable: {reply.reason or 'rejected'}", client_msg_id=cmid
                    )
        except Unavailable:
            raise FrameError(
                "authorization service unavailable, retry", code="unavailable", client_msg_id=cmid
            ) from None
