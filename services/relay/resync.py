"""Which sockets must be told to ``resync``, and when (DESIGN section 4).

A socket greeted while a controller was unreachable, or whose wait for a controller's
confirmation timed out, may miss what that controller fans out until its stream is back: it is
*owed* a resync by that controller. A controller stream that was lost (anything but its graceful
``goodbye``) owes every greeted socket one. The debt is paid when the stream is UP again, which
is the first moment a history read is sure to close the gap.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.relay.hub import Session


class ResyncLedger:
    def __init__(self) -> None:
        self._owed: dict[str, set[Session]] = {}

    def owe(self, session: Session, controllers: Iterable[str]) -> None:
        for address in controllers:
            self._owed.setdefault(address, set()).add(session)

    def forget(self, session: Session) -> None:
        for owed in self._owed.values():
            owed.discard(session)

    def owed_by(self, address: str) -> int:
        return len(self._owed.get(address, ()))

    def settle(self, address: str, *, lost: bool, greeted: Iterable[Session]) -> list[Session]:
        """The stream to ``address`` is UP again: the sockets to send ``resync`` to now."""
        owed = self._owed.pop(address, set())
        if lost:
            return list(greeted)
        return [s for s in owed if s.greeted]
