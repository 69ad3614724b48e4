"""Local sockets and their channels: who gets which delivery, and which channels the relay needs.

Pure bookkeeping, no I/O: the server applies the returned channel changes to its controller
subscriptions and hands the rendered frames to a ``Fanout``, which writes them to sockets. A message
is rendered once and the same string goes to every target socket.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from chatcore.messages import BROADCAST, client_json
from chatcore.proto.chat.v1 import chat_pb2
from services.relay.frames import membership_frame, typing_out_frame

_EVENT_NAMES = {
    chat_pb2.MEMBERSHIP_CHANGE_ADDED: "added",
    chat_pb2.MEMBERSHIP_CHANGE_REMOVED: "removed",
    chat_pb2.MEMBERSHIP_CHANGE_DEACTIVATED: "deactivated",
}


@dataclass(eq=False, slots=True)
class Session:
    """One authenticated socket: its user, its channels (channel -> may send), its connection."""

    user_id: str
    conn: object
    channels: dict[str, bool] = field(default_factory=dict)


class Fanout(Protocol):
    def send(self, targets: Iterable[Session], text: str) -> None:
        """Write ``text`` to every target socket (skipping or cutting off slow ones)."""


@dataclass(slots=True)
class ChannelChanges:
    """What a batch changed: channels to subscribe/unsubscribe, member lists to forget."""

    subscribe: list[str] = field(default_factory=list)
    unsubscribe: list[str] = field(default_factory=list)
    members_changed: list[str] = field(default_factory=list)


class Hub:
    def __init__(self, fanout: Fanout) -> None:
        self._fanout = fanout
        self._by_user: dict[str, set[Session]] = {}
        self._by_channel: dict[str, set[Session]] = {}

    @property
    def channels(self) -> list[str]:
        """Every channel some local socket needs: the relay's subscription set."""
        return list(self._by_channel)

    def sessions(self) -> list[Session]:
        return [s for group in self._by_user.values() for s in group]

    def count_for(self, user_id: str) -> int:
        return len(self._by_user.get(user_id, ()))

    def _join(self, session: Session, channel: str, changes: ChannelChanges) -> None:
        group = self._by_channel.get(channel)
        if group is None:
            group = self._by_channel[channel] = set()
            changes.subscribe.append(channel)
        group.add(session)

    def _leave(self, session: Session, channel: str, changes: ChannelChanges) -> None:
        group = self._by_channel.get(channel)
        if group is None:
            return
        group.discard(session)
        if not group:
            del self._by_channel[channel]
            changes.unsubscribe.append(channel)

    def attach(self, session: Session) -> ChannelChanges:
        changes = ChannelChanges()
        self._by_user.setdefault(session.user_id, set()).add(session)
        for channel in session.channels:
            self._join(session, channel, changes)
        return changes

    def detach(self, session: Session) -> ChannelChanges:
        changes = ChannelChanges()
        group = self._by_user.get(session.user_id)
        if group is not None:
            group.discard(session)
            if not group:
                del self._by_user[session.user_id]
        for channel in session.channels:
            self._leave(session, channel, changes)
        return changes

    def deliver(self, batch: chat_pb2.DeliveryBatch) -> ChannelChanges:
        """Fan a batch out to local sockets, in order; membership events update state first-hand."""
        changes = ChannelChanges()
        for delivery in batch.deliveries:
            kind = delivery.WhichOneof("payload")
            if kind == "message":
                self._message(delivery.message)
            elif kind == "signal":
                self._signal(delivery.signal)
            elif kind == "membership":
                self._membership(delivery.membership, changes)
        return changes

    def _targets(self, channel: str, to: str, sender: str) -> Iterable[Session]:
        group = self._by_channel.get(channel, set())
        if to == BROADCAST:
            return group
        # A DM reaches only the recipient's and the sender's sockets in that channel.
        return [s for s in group if s.user_id == to or s.user_id == sender]

    def _message(self, persisted: chat_pb2.PersistedMessage) -> None:
        m = persisted.message
        targets = self._targets(m.channel_id, m.to, m.sender)
        if targets:
            self._fanout.send(targets, client_json(persisted))

    def _signal(self, signal: chat_pb2.Signal) -> None:
        targets = [
            s
            for s in self._targets(signal.channel_id, signal.to, signal.sender)
            if s.user_id != signal.sender
        ]
        if targets:
            text = typing_out_frame(signal.channel_id, signal.to, signal.sender, signal.ts_ms)
            self._fanout.send(targets, text)

    def _membership(self, event: chat_pb2.MembershipEvent, changes: ChannelChanges) -> None:
        channel = event.channel_id
        changes.members_changed.append(channel)
        if event.change == chat_pb2.MEMBERSHIP_CHANGE_ADDED:
            sessions = list(self._by_user.get(event.user_id, ()))
            for s in sessions:
                if channel not in s.channels:
                    s.channels[channel] = True
                    self._join(s, channel, changes)
        elif event.change == chat_pb2.MEMBERSHIP_CHANGE_REMOVED:
            sessions = list(self._by_user.get(event.user_id, ()))
            for s in sessions:
                # Removed at once: nothing of this channel reaches the socket after this frame.
                if s.channels.pop(channel, None) is not None:
                    self._leave(s, channel, changes)
        elif event.change in (
            chat_pb2.MEMBERSHIP_CHANGE_DEACTIVATED,
            chat_pb2.MEMBERSHIP_CHANGE_ACTIVATED,
        ):
            active = event.change == chat_pb2.MEMBERSHIP_CHANGE_ACTIVATED
            sessions = list(self._by_channel.get(channel, ()))
            for s in sessions:
                s.channels[channel] = active
        else:
            return
        name = _EVENT_NAMES.get(event.change)
        if name is not None and sessions:
            self._fanout.send(sessions, membership_frame(channel, name))
