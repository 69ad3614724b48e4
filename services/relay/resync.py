"""Which sockets must be told to ``resync``, and when (DESIGN section 4).

A socket greeted while a controller was unreachable, or whose wait for a controller's
confirmation timed out, may miss what that controller fans out until the socket's channels are
in force there: it is *owed* a resync by that controller. The debt is paid at the first moment a
history read is sure to close the gap: when the controller confirms the request the socket
waited for (its stream stayed UP and was merely slow), or when its stream is UP again (it was
unreachable, or its stream broke before confirming). A controller stream that was lost (anything
but its graceful ``goodbye``) owes every greeted socket one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from services.relay.hub import Session

# Paid only when the stream is UP again: the controller was unreachable when the socket asked.
_UNTIL_UP = -1


class ResyncLedger:
    def __init__(self) -> None:
        # Per controller: each owed socket and the request id whose confirmation pays it.
        self._owed: dict[str, dict[Session, int]] = {}

    def owe(self, session: Session, controllers: Iterable[str], ticket: Mapping[str, int]) -> None:
        """``controllers`` did not confirm ``ticket`` (a ``ControllerLink.ticket``) in time."""
        for address in controllers:
            owed = self._owed.setdefault(address, {})
            wanted = ticket.get(address, _UNTIL_UP)
            before = owed.get(session)
            if before is not None:
                # Owed twice by one controller: paid when both would be.
                wanted = _UNTIL_UP if _UNTIL_UP in (before, wanted) else max(before, wanted)
            owed[session] = wanted

    def forget(self, session: Session) -> None:
        for owed in self._owed.values():
            owed.pop(session, None)

    def owed_by(self, address: str) -> int:
        return len(self._owed.get(address, ()))

    def confirmed(self, address: str, request_id: int) -> list[Session]:
        """An UP stream confirmed ``request_id``: the sockets it paid, to send ``resync`` to now."""
        owed = self._owed.get(address)
        if not owed:
            return []
        paid = [s for s, wanted in owed.items() if wanted != _UNTIL_UP and wanted <= request_id]
        for session in paid:
            del owed[session]
        return [s for s in paid if s.greeted]

    def settle(
        self,
        address: str,
        *,
        lost: bool,
        greeted: Iterable[Session],
        confirmed: int | None = None,
    ) -> list[Session]:
        """The stream to ``address`` is UP again, having confirmed ``confirmed`` (None: the
        controller left for good, every debt is due): the sockets to send ``resync`` to now.

        A socket waiting for a later request (queued while the stream was opening) stays owed
        until that request is confirmed: its channels may not be in force yet.
        """
        owed = self._owed.pop(address, {})
        later = {
            s: wanted
            for s, wanted in owed.items()
            if confirmed is not None and wanted != _UNTIL_UP and wanted > confirmed
        }
        if later:
            self._owed[address] = later
        if lost:
            return list(greeted)
        return [s for s in owed if s.greeted and s not in later]
