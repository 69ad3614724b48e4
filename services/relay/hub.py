"""Local sockets and their channels: who gets which delivery, and which channels the relay needs.

Pure bookkeeping, no I/O: the relay applies the returned ``Effects`` (subscription changes to
the controllers, grants to complete, users to disconnect) and hands rendered frames to a
``Fanout``: a delivery is rendered once, queued for every target socket, and each socket's share
of a batch is written at once when the hub flushes (at the end of every public change).

A socket is *pending* from the moment it is attached until it is *greeted* (its ``hello`` sent):
its channels count towards the relay's subscription set at once, but nothing is delivered to it.
Anything the relay receives in that window was persisted before the ``hello``, so the client's
history read after ``hello`` has it (DESIGN section 4).

A membership ``added`` event does not give a socket the channel at once: the hub answers with a
``Grant``, which the relay completes (``finish_grant``) once the controllers confirmed the
channel's subscription and the team confirmed the membership, so the ``membership`` frame never
precedes deliveries the socket would miss.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from chatcore.messages import BROADCAST, client_json
from chatcore.presence import Transition
from chatcore.proto.chat.v1 import chat_pb2
from services.relay.frames import (
    membership_frame,
    presence_frame,
    profile_frame,
    read_frame,
    team_frame,
    typing_out_frame,
    update_frame,
)
from services.relay.handshakes import ACTIVATION, Handshakes, replay

REMOVED, ADDED, DEACTIVATED, ACTIVATED = "removed", "added", "deactivated", "activated"
# What a ``team`` frame says changed; the events that change nobody's access map to theirs.
SETTINGS, ROLES, MEMBERS = "settings", "roles", "members"
TEAM_NEWS = {
    chat_pb2.MEMBERSHIP_CHANGE_SETTINGS: SETTINGS,
    chat_pb2.MEMBERSHIP_CHANGE_ROLES: ROLES,
}


@dataclass(eq=False, slots=True)
class Session:
    """One authenticated socket: its user, its channels (channel -> may send), its connection."""

    user_id: str
    conn: object
    channels: dict[str, bool] = field(default_factory=dict)
    greeted: bool = False
    # When the fan-out last wrote a batch to it (time.monotonic): its write window (fanout.py).
    written_at: float = 0.0


class Fanout(Protocol):
    def queue(self, targets: Iterable[Session], text: bytes) -> None:
        """Add ``text`` for every target socket to what the next ``flush`` writes."""

    def queue_series(
        self, texts: Sequence[bytes], targets: Iterable[tuple[Session, Sequence[int] | None]]
    ) -> None:
        """Add several frames at once: each target gets all of ``texts`` (None) or those at the
        indexes given, in order."""

    def flush(self) -> None:
        """Write what was queued, in order per socket (skipping or cutting off slow ones)."""


@dataclass(frozen=True, slots=True)
class Grant:
    """A membership ``added`` event waiting for its channel's subscription to be confirmed."""

    user_id: str
    channel_id: str
    token: int


@dataclass(slots=True)
class Effects:
    """What a change asks of the relay, beyond what the hub did itself."""

    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)
    members_changed: list[str] = field(default_factory=list)
    grants: list[Grant] = field(default_factory=list)
    disabled_users: list[str] = field(default_factory=list)
    # (user id, session id) of logins ended: their sockets are closed.
    ended_sessions: list[tuple[str, str]] = field(default_factory=list)
    # The same told as state at a controller stream's opening: sockets closed, nothing refused.
    disabled_now: list[str] = field(default_factory=list)
    ended_now: list[tuple[str, str]] = field(default_factory=list)
    # Users whose greeted sockets were given another team (their team is told they are here).
    joined: list[str] = field(default_factory=list)


class Hub:
    def __init__(self, fanout: Fanout) -> None:
        self._fanout = fanout
        self._by_user: dict[str, set[Session]] = {}
        # Greeted sockets per channel: the fan-out targets.
        self._by_channel: dict[str, set[Session]] = {}
        self._pending: set[Session] = set()
        # Why the relay needs each channel: one count per socket holding it, plus open grants.
        self._wants: dict[str, int] = {}
        self._granting: dict[tuple[str, str], int] = {}
        self._next_token = 1
        self._handshakes = Handshakes()

    @property
    def channels(self) -> list[str]:
        """Every channel the relay needs from the controllers: its subscription set."""
        return list(self._wants)

    def sessions(self) -> list[Session]:
        return [s for group in self._by_user.values() for s in group]

    def greeted_sessions(self) -> list[Session]:
        return [s for group in self._by_user.values() for s in group if s.greeted]

    def sessions_of(self, user_id: str) -> list[Session]:
        return list(self._by_user.get(user_id, ()))

    def in_channel(self, channel_id: str) -> list[Session]:
        """Every socket holding the channel, greeted or not."""
        greeted = self._by_channel.get(channel_id, set())
        return [*greeted, *(s for s in self._pending if channel_id in s.channels)]

    # -- wants: the reference-counted subscription set --

    def _want(self, channel: str, effects: Effects) -> None:
        count = self._wants.get(channel, 0)
        self._wants[channel] = count + 1
        if count == 0:
            effects.subscribe.append(channel)

    def _unwant(self, channel: str, effects: Effects) -> None:
        count = self._wants.get(channel, 0)
        if count <= 1:
            if self._wants.pop(channel, None) is not None:
                effects.unsubscribe.append(channel)
        else:
            self._wants[channel] = count - 1

    def _add_channel(self, session: Session, channel: str, active: bool, effects: Effects) -> None:
        session.channels[channel] = active
        self._want(channel, effects)
        if session.greeted:
            self._by_channel.setdefault(channel, set()).add(session)

    def _drop_channel(self, session: Session, channel: str, effects: Effects) -> bool:
        if session.channels.pop(channel, None) is None:
            return False
        group = self._by_channel.get(channel)
        if group is not None:
            group.discard(session)
            if not group:
                del self._by_channel[channel]
        self._unwant(channel, effects)
        return True

    # -- sockets --

    def expect(self, user_id: str) -> None:
        """A socket of ``user_id`` starts its membership lookup: membership events from now on
        are kept for it (``handshakes.py``) until ``attach`` or ``abandon``."""
        self._handshakes.begin(user_id)

    def abandon(self, user_id: str) -> None:
        """That socket's lookup failed or the socket went: nothing to attach."""
        self._handshakes.end(user_id)

    def attach(self, session: Session) -> Effects:
        """A new socket (after ``expect``), pending until ``greet``: its channels join the
        subscription set now, and membership events seen during its lookup apply to it."""
        effects = Effects()
        # On this socket's channel map only, before anything is wanted: the user's other
        # sockets took these events when they came, and a channel removed here is never
        # subscribed for it.
        added = replay(session.channels, self._handshakes.end(session.user_id))
        self._by_user.setdefault(session.user_id, set()).add(session)
        self._pending.add(session)
        for channel in session.channels:
            self._want(channel, effects)
        for channel in added:
            self._begin_grant(session.user_id, channel, effects)
        return effects

    def greet(self, session: Session) -> None:
        """The socket's ``hello`` is going out: from now on it receives deliveries."""
        if session not in self._pending:
            return
        self._pending.discard(session)
        session.greeted = True
        for channel in session.channels:
            self._by_channel.setdefault(channel, set()).add(session)

    def detach(self, session: Session) -> Effects:
        effects = Effects()
        group = self._by_user.get(session.user_id)
        if group is None or session not in group:
            return effects
        group.discard(session)
        if not group:
            del self._by_user[session.user_id]
        self._pending.discard(session)
        for channel in list(session.channels):
            self._drop_channel(session, channel, effects)
        return effects

    # -- deliveries --

    def deliver(self, batch: chat_pb2.DeliveryBatch) -> Effects:
        """Fan a batch out to greeted sockets, in order; membership events change state first."""
        effects = Effects()
        for delivery in batch.deliveries:
            kind = delivery.WhichOneof("payload")
            if kind == "message":
                self._message(delivery.message)
            elif kind == "signal":
                self._signal(delivery.signal)
            elif kind == "membership":
                self._membership(delivery.membership, effects)
            elif kind == "update":
                self._update(delivery.update)
            elif kind == "read":
                self._read(delivery.read)
        self._fanout.flush()
        return effects

    def _targets(self, channel: str, to: str, sender: str) -> Iterable[Session]:
        if to == BROADCAST:
            return self._by_channel.get(channel, ())
        # A DM reaches only the recipient's and the sender's sockets in that channel: look them
        # up by user rather than scanning the channel.
        users = (to,) if to == sender else (to, sender)
        return [
            s
            for user in users
            for s in self._by_user.get(user, ())
            if s.greeted and channel in s.channels
        ]

    def _message(self, persisted: chat_pb2.PersistedMessage) -> None:
        m = persisted.message
        targets = self._targets(m.channel_id, m.to, m.sender)
        if targets:
            self._fanout.queue(targets, client_json(persisted))

    def _update(self, update: chat_pb2.MessageUpdate) -> None:
        # Exactly the sockets that may see the message: a DM's change reaches its two people.
        m = update.message.message
        targets = self._targets(m.channel_id, m.to, m.sender)
        if targets:
            self._fanout.queue(targets, update_frame(update))

    def _read(self, read: chat_pb2.ReadUpdate) -> None:
        targets = [
            s
            for s in self._by_user.get(read.user_id, ())
            if s.greeted and read.channel_id in s.channels
        ]
        if targets:
            self._fanout.queue(targets, read_frame(read.channel_id, read.seq))

    def presence(self, transitions: Iterable[Transition]) -> None:
        """Tell the sockets of each team a user is in that they came online or went offline
        (not the user's own sockets).

        A team's mass arrival is a tick's worth of transitions to a thousand sockets: the frames
        of one team are queued to each socket as one series, so the Python work is per socket,
        not per socket and transition."""
        told: dict[str, list[Transition]] = {}
        for t in transitions:
            for channel in t.channels:
                told.setdefault(channel, []).append(t)
        for channel, changes in told.items():
            sockets = self._by_channel.get(channel)
            if not sockets:
                continue
            texts = [presence_frame(channel, t.user_id, t.status) for t in changes]
            users = {t.user_id for t in changes}

            def others(user: str, changes: list[Transition] = changes) -> list[int]:
                return [i for i, t in enumerate(changes) if t.user_id != user]

            self._fanout.queue_series(
                texts, [(s, others(s.user_id) if s.user_id in users else None) for s in sockets]
            )
        self._fanout.flush()

    def channels_of(self, user_id: str) -> tuple[str, ...]:
        """The teams of a user's greeted sockets here."""
        return tuple(
            sorted({c for s in self._by_user.get(user_id, ()) if s.greeted for c in s.channels})
        )

    def _signal(self, signal: chat_pb2.Signal) -> None:
        targets = [
            s
            for s in self._targets(signal.channel_id, signal.to, signal.sender)
            if s.user_id != signal.sender
        ]
        if targets:
            text = typing_out_frame(signal)
            self._fanout.queue(targets, text)

    def _membership(self, event: chat_pb2.MembershipEvent, effects: Effects) -> None:
        channel, change = event.channel_id, event.change
        if change == chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED:
            (effects.disabled_now if event.restated else effects.disabled_users).append(
                event.user_id
            )
            return
        if change == chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED:
            (effects.ended_now if event.restated else effects.ended_sessions).append(
                (event.user_id, event.session_id)
            )
            return
        if (news := TEAM_NEWS.get(change)) is not None:
            self._tell_team(channel, news)
            return
        if change == chat_pb2.MEMBERSHIP_CHANGE_PROFILE:
            if sockets := self._by_channel.get(channel):
                self._fanout.queue(sockets, profile_frame(channel, event.user_id, event.user_name))
            return
        effects.members_changed.append(channel)
        if self._handshakes:
            self._handshakes.note(event.user_id, channel, change)
        if change == chat_pb2.MEMBERSHIP_CHANGE_ADDED:
            self._begin_grant(event.user_id, channel, effects)
            self._tell_team(channel, MEMBERS, besides=event.user_id)
        elif change == chat_pb2.MEMBERSHIP_CHANGE_REMOVED:
            self.revoke(channel, [event.user_id], effects)
            self._tell_team(channel, MEMBERS, besides=event.user_id)
        elif change in ACTIVATION:
            self.set_active(channel, change == chat_pb2.MEMBERSHIP_CHANGE_ACTIVATED)

    def _tell_team(self, channel: str, change: str, *, besides: str = "") -> None:
        """A ``team`` frame to the channel's greeted sockets (not to ``besides``, whose own
        ``added`` or ``removed`` frame says more)."""
        targets = [s for s in self._by_channel.get(channel, ()) if s.user_id != besides]
        if targets:
            self._fanout.queue(targets, team_frame(channel, change))

    # -- membership changes --

    def _begin_grant(self, user_id: str, channel: str, effects: Effects) -> None:
        key = (user_id, channel)
        if key in self._granting or user_id not in self._by_user:
            return  # already on its way, or no socket of that user here
        token = self._next_token
        self._next_token += 1
        self._granting[key] = token
        self._want(channel, effects)  # held until the grant finishes
        effects.grants.append(Grant(user_id, channel, token))

    def finish_grant(self, grant: Grant, *, member: bool, active: bool) -> Effects:
        """Complete a grant once its subscription is confirmed: ``member`` as the team says now.

        A grant overtaken by a removal (or by the user's last socket closing) gives nothing.
        """
        effects = Effects()
        key = (grant.user_id, grant.channel_id)
        current = self._granting.get(key) == grant.token
        if current:
            del self._granting[key]
        if current and member:
            told = []
            for session in self._by_user.get(grant.user_id, ()):
                if grant.channel_id not in session.channels:
                    self._add_channel(session, grant.channel_id, active, effects)
                    if session.greeted:
                        told.append(session)
            if told:
                self._fanout.queue(told, membership_frame(grant.channel_id, ADDED))
                self._fanout.flush()
                effects.joined.append(grant.user_id)
        self._unwant(grant.channel_id, effects)
        return effects

    def revoke(self, channel: str, users: Iterable[str], effects: Effects | None = None) -> Effects:
        """Take the channel from these users' sockets at once; greeted ones get ``removed``."""
        effects = effects if effects is not None else Effects()
        told = []
        for user in users:
            self._granting.pop((user, channel), None)
            for session in list(self._by_user.get(user, ())):
                if self._drop_channel(session, channel, effects) and session.greeted:
                    told.append(session)
        if told:
            # Removed at once: nothing of this channel reaches these sockets after this frame
            # (anything of the channel queued before it is written before it).
            self._fanout.queue(told, membership_frame(channel, REMOVED))
            self._fanout.flush()
        return effects

    def set_active(self, channel: str, active: bool) -> None:
        """A team (de)activated: its sockets may (not) send; greeted ones are told."""
        changed = []
        for session in self.in_channel(channel):
            if session.channels.get(channel) != active:
                session.channels[channel] = active
                if session.greeted:
                    changed.append(session)
        if changed:
            # Both ways: a page that showed the team read-only offers writing again.
            self._fanout.queue(
                changed, membership_frame(channel, ACTIVATED if active else DEACTIVATED)
            )
            self._fanout.flush()

    def audit(self, channel: str, members: frozenset[str] | None, active: bool) -> Effects:
        """Align the channel's sockets with the team as read now (None: the team is gone)."""
        holders = {s.user_id for s in self.in_channel(channel)}
        gone = holders if members is None else holders - members
        effects = self.revoke(channel, sorted(gone))
        if members is not None:
            self.set_active(channel, active)
        return effects
