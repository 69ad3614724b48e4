"""The membership audit: revocation fails closed even when a membership event never arrives.

Events on ``chat.events.v1`` revoke access at once; this is the safety net behind them. After
every controller-stream reconnect (events fanned out meanwhile may be lost) and at least every
``interval_s``, the relay re-reads each of its channels' member lists — one read per channel, not
per socket — and takes the channel from sockets whose user is no longer a member (and updates
whether the team is active).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from chatcore.errors import Unavailable
from chatcore.logging import get_logger
from services.relay.gate import Authority, Gate
from services.relay.hub import Effects, Hub

_log = get_logger("relay.audit")


class MembershipAudit:
    def __init__(
        self,
        hub: Hub,
        gate: Gate,
        authority: Authority,
        apply: Callable[[Effects], None],
        *,
        interval_s: float,
        concurrency: int = 8,
    ) -> None:
        self._hub = hub
        self._gate = gate
        self._authority = authority
        self._apply = apply
        self._interval_s = interval_s
        self._concurrency = asyncio.Semaphore(concurrency)
        self._wake = asyncio.Event()
        self.rounds = 0

    def trigger(self) -> None:
        """Audit again soon (a controller stream came back)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
            try:
                await self.audit_all()
            except Exception:
                _log.exception("membership_audit_failed")

    async def audit_all(self) -> int:
        """One round over every channel the relay holds; returns the sockets' channels revoked."""
        channels = self._hub.channels
        results = await asyncio.gather(*(self._audit(c) for c in channels))
        self.rounds += 1
        revoked = sum(results)
        if revoked:
            _log.warning("membership_audit_revoked", channels=len(channels), revoked=revoked)
        return revoked

    async def _audit(self, channel: str) -> int:
        async with self._concurrency:
            generation = self._gate.generation(channel)
            try:
                reply = await self._authority.members(channel)
            except Unavailable:
                return 0  # the next round tries again
        if self._gate.generation(channel) != generation:
            # A membership event overtook the read: the event acted already, and this list may
            # predate it (a member just added would lose the team). The next round reads again.
            return 0
        members = frozenset(reply.user_ids) if reply.found else None
        self._gate.remember(channel, members or frozenset(), generation)
        before = len(self._hub.in_channel(channel))
        effects = self._hub.audit(channel, members, reply.active)
        self._apply(effects)
        return before - len(self._hub.in_channel(channel))
