"""Which sockets a relay refuses at the handshake although their token verified.

The controllers' answer to a handshake lookup says whether the account is disabled and which of
the user's logins ended, from sets they read at most once a second (controller/directory.py). A
socket opened in that second after a ``user_disabled`` or ``session_ended`` event would slip
through, so the relay goes on refusing what a live event named for a while (``hold_s``, far longer
than that second).

Events a controller restates at a stream's opening (``MembershipEvent.restated``) arm nothing:
they are not news, the lookups already know them, and an account enabled again meanwhile must not
be refused on their word.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from chatcore.proto.chat.v1 import chat_pb2
from chatcore.tokens import AccessClaims
from services.relay.hub import Effects

HOLD_S = 60.0


class Refusals:
    def __init__(self, *, hold_s: float = HOLD_S, clock: Callable[[], float] = time.monotonic):
        self._hold_s = hold_s
        self._clock = clock
        self._disabled_until: dict[str, float] = {}
        self._ended_until: dict[str, float] = {}

    def heard(self, effects: Effects) -> None:
        """Refuse the accounts and logins the live events of a batch named, for ``hold_s``."""
        if not (effects.disabled_users or effects.ended_sessions):
            return
        now = self._clock()
        for refused in (self._disabled_until, self._ended_until):
            for key, until in list(refused.items()):
                if until <= now:
                    del refused[key]
        for user_id in effects.disabled_users:
            self._disabled_until[user_id] = now + self._hold_s
        for _, session_id in effects.ended_sessions:
            self._ended_until[session_id] = now + self._hold_s

    def reason(self, claims: AccessClaims, reply: chat_pb2.GetMembershipsReply) -> str | None:
        """Why a socket whose token verified may still not open (a 1008 reason), or None."""
        now = self._clock()
        if reply.disabled or self._disabled_until.get(claims.sub, 0.0) > now:
            return "account disabled"
        if claims.sid and (
            claims.sid in reply.ended_sessions or self._ended_until.get(claims.sid, 0.0) > now
        ):
            return "session ended"
        return None
