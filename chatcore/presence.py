"""Who is online, derived from the relays' presence records (DESIGN 5b "Presence"): pure, no I/O.

A user is online while any of their sockets is open on any relay. Each relay publishes on
``chat.presence.v1`` (key: its id) what changed on it (users who came, users whose last socket
left) and, every heartbeat, a snapshot of everyone on it; each record says how long its users
count as online without another word from the relay (``ttl_ms``). Every reader (each relay, to
tell its sockets; each management instance, for ``GET .../presence``) keeps a ``PresenceBook``:

* A delta is applied only in sequence (same epoch, the next version); a reader that missed one
  ignores the relay's deltas until its next snapshot, which replaces what it knew of that relay.
* A relay not heard from within its ttl is taken to be dead: its users count as gone from it
  (``expire``), which is how users of a killed relay go offline within about three heartbeats.
* A user's status changes only when the count of relays holding them goes from 0 to 1 or back:
  a user who reconnects to another relay (a relay's restart, a storm of 1,000 reconnects) never
  flaps, because the new relay announces them before the old one's entry expires.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from chatcore.proto.chat.v1 import chat_pb2

ONLINE, OFFLINE = "online", "offline"


@dataclass(frozen=True, slots=True)
class Transition:
    """A user's status changed; ``channels`` are the teams to tell (as the relays knew them)."""

    user_id: str
    status: str
    channels: tuple[str, ...]
    at_ms: int


@dataclass(slots=True)
class _Relay:
    epoch: str
    version: int
    users: dict[str, tuple[str, ...]] = field(default_factory=dict)
    expires_ms: int = 0
    in_sequence: bool = True


class PresenceBook:
    def __init__(self) -> None:
        self._relays: dict[str, _Relay] = {}
        # Relays holding each online user, and the channels last known for every user seen.
        self._holders: dict[str, set[str]] = {}
        self._channels: dict[str, tuple[str, ...]] = {}
        self._last_seen: dict[str, int] = {}

    def apply(self, record: chat_pb2.RelayPresence, now_ms: int) -> list[Transition]:
        """Take one relay's record in (``now_ms``: the reader's clock when it arrived)."""
        relay = self._relays.get(record.relay_id)
        fresh = relay is None or relay.epoch != record.epoch
        if record.snapshot:
            if relay is not None and not fresh and record.version <= relay.version:
                relay.expires_ms = max(relay.expires_ms, now_ms + record.ttl_ms)
                return []  # an old snapshot arriving late
            before = dict(relay.users) if relay is not None else {}
            relay = _Relay(record.epoch, record.version)
            self._relays[record.relay_id] = relay
            relay.users = {e.user_id: tuple(e.channels) for e in record.online}
            relay.expires_ms = now_ms + record.ttl_ms
            gone = [u for u in before if u not in relay.users]
            came = [u for u in relay.users if u not in before]
            joined = [
                t
                for u, channels in relay.users.items()
                if u in before
                for t in self._joined(u, channels, now_ms)
            ]
            return (
                self._left(record.relay_id, gone, now_ms)
                + self._arrived(record.relay_id, came, relay, now_ms)
                + joined
            )
        transitions: list[Transition] = []
        if relay is None or fresh:
            # A new epoch is a restarted relay: every socket of its previous life is gone. Start
            # from this delta (a relay that just started has nobody else); if it is not the
            # epoch's first record, the next snapshot corrects what was missed.
            if relay is not None:
                transitions = self._left(record.relay_id, list(relay.users), now_ms)
            relay = _Relay(record.epoch, record.version - 1, in_sequence=record.version == 1)
            self._relays[record.relay_id] = relay
        relay.expires_ms = max(relay.expires_ms, now_ms + record.ttl_ms)
        if record.version != relay.version + 1 or not relay.in_sequence:
            relay.in_sequence = False
            return transitions  # a gap: wait for the next snapshot
        relay.version = record.version
        came = []
        for entry in record.online:
            channels = tuple(entry.channels)
            if entry.user_id not in relay.users:
                came.append(entry.user_id)
            else:
                transitions += self._joined(entry.user_id, channels, now_ms)
            relay.users[entry.user_id] = channels
        gone = [u for u in record.offline if relay.users.pop(u, None) is not None]
        return (
            transitions
            + self._arrived(record.relay_id, came, relay, now_ms)
            + self._left(record.relay_id, gone, now_ms)
        )

    def expire(self, now_ms: int) -> list[Transition]:
        """Forget relays not heard from within their ttl; their users leave them."""
        transitions: list[Transition] = []
        for relay_id, relay in list(self._relays.items()):
            if relay.expires_ms <= now_ms:
                del self._relays[relay_id]
                transitions += self._left(relay_id, list(relay.users), now_ms)
        return transitions

    def _arrived(
        self, relay_id: str, users: Iterable[str], relay: _Relay, now_ms: int
    ) -> list[Transition]:
        out = []
        for user in users:
            self._channels[user] = relay.users.get(user, ())
            holders = self._holders.setdefault(user, set())
            if not holders:
                out.append(Transition(user, ONLINE, self._channels[user], now_ms))
            holders.add(relay_id)
        return out

    def _joined(self, user: str, channels: tuple[str, ...], now_ms: int) -> list[Transition]:
        # An online user's relay lists teams not known before: the user joined them while
        # connected, and those teams have not been told the user is online.
        known = self._channels.get(user, ())
        added = tuple(c for c in channels if c not in known)
        if not added:
            return []
        self._channels[user] = tuple(sorted({*known, *added}))
        return [Transition(user, ONLINE, added, now_ms)] if self._holders.get(user) else []

    def _left(self, relay_id: str, users: Iterable[str], now_ms: int) -> list[Transition]:
        out = []
        for user in users:
            holders = self._holders.get(user)
            if holders is None or relay_id not in holders:
                continue
            holders.discard(relay_id)
            if not holders:
                del self._holders[user]
                self._last_seen[user] = now_ms
                out.append(Transition(user, OFFLINE, self._channels.get(user, ()), now_ms))
        return out

    def online(self, user_id: str) -> bool:
        return bool(self._holders.get(user_id))

    def online_in(self, user_id: str, channel_id: str) -> bool:
        """Online, and announced to this team: what the team's ``presence`` frames have said.

        A member added while connected counts as online in the new team only once a relay lists
        the team for them; until then no frame told the team they came, so none will tell it they
        left, and a snapshot saying "online" would stand for good.
        """
        return self.online(user_id) and channel_id in self._channels.get(user_id, ())

    def last_seen_ms(self, user_id: str, now_ms: int) -> int | None:
        """Now for an online user; when they went offline as far as this book saw; else None."""
        if self.online(user_id):
            return now_ms
        return self._last_seen.get(user_id)

    def statuses(self, users: Sequence[str], now_ms: int) -> list[tuple[str, bool, int | None]]:
        return [(u, self.online(u), self.last_seen_ms(u, now_ms)) for u in users]
