"""Local fan-out rules: who receives what, and which channels the relay subscribes to."""

from __future__ import annotations

import json
from collections.abc import Iterable

from chatcore.proto.chat.v1 import chat_pb2
from services.relay.hub import Hub, Session

TEAM, OTHER = "t" * 32, "o" * 32
ALICE, BOB, CAROL = "a" * 32, "b" * 32, "c" * 32


class _Recorder:
    """A Fanout that records which session got which frame, and counts renders."""

    def __init__(self) -> None:
        self.sent: list[tuple[Session, dict[str, object]]] = []
        self.renders = 0

    def send(self, targets: Iterable[Session], text: str) -> None:
        self.renders += 1
        frame = json.loads(text)
        self.sent.extend((s, frame) for s in targets)

    def got(self, session: Session) -> list[dict[str, object]]:
        return [f for s, f in self.sent if s is session]


def _message(
    to: str = "*", sender: str = ALICE, channel: str = TEAM, seq: int = 1
) -> chat_pb2.Delivery:
    return chat_pb2.Delivery(
        message=chat_pb2.PersistedMessage(
            message=chat_pb2.ChatMessage(
                id=f"m{seq}",
                channel_id=channel,
                to=to,
                type=chat_pb2.MESSAGE_TYPE_TEXT,
                data="hi",
                sender=sender,
                ts_ms=1,
            ),
            seq=seq,
        )
    )


def _event(
    change: chat_pb2.MembershipChange.ValueType, user: str = "", channel: str = TEAM
) -> chat_pb2.Delivery:
    return chat_pb2.Delivery(
        membership=chat_pb2.MembershipEvent(channel_id=channel, user_id=user, change=change)
    )


def _hub() -> tuple[Hub, _Recorder, dict[str, Session]]:
    rec = _Recorder()
    hub = Hub(rec)
    sessions = {
        "alice": Session(ALICE, object(), {TEAM: True}),
        "bob": Session(BOB, object(), {TEAM: True, OTHER: True}),
        "bob2": Session(BOB, object(), {TEAM: True}),
        "carol": Session(CAROL, object(), {OTHER: True}),
    }
    for s in sessions.values():
        hub.attach(s)
    return hub, rec, sessions


def test_team_message_reaches_every_member_socket_rendered_once() -> None:
    """A team message goes to each socket in the channel, rendered a single time."""
    hub, rec, s = _hub()
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[_message()]))
    assert rec.renders == 1
    assert {id(x) for x, _ in rec.sent} == {id(s["alice"]), id(s["bob"]), id(s["bob2"])}
    assert rec.got(s["bob"])[0]["seq"] == 1


def test_dm_reaches_only_recipient_and_sender() -> None:
    """A DM from Alice to Bob reaches Bob's two sockets and Alice, nobody else."""
    hub, rec, s = _hub()
    extra = Session(CAROL, object(), {TEAM: True})
    hub.attach(extra)
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[_message(to=BOB)]))
    assert {id(x) for x, _ in rec.sent} == {id(s["alice"]), id(s["bob"]), id(s["bob2"])}
    assert rec.got(extra) == []


def test_subscription_set_is_reference_counted() -> None:
    """A channel is subscribed when its first socket arrives and dropped with its last one."""
    rec = _Recorder()
    hub = Hub(rec)
    first, second = Session(ALICE, object(), {TEAM: True}), Session(BOB, object(), {TEAM: True})
    assert hub.attach(first).subscribe == [TEAM]
    assert hub.attach(second).subscribe == []
    assert hub.detach(first).unsubscribe == []
    assert hub.detach(second).unsubscribe == [TEAM]
    assert hub.channels == []


def test_removed_member_gets_a_frame_and_then_nothing() -> None:
    """After 'removed', the user's sockets get the membership frame and no later message."""
    hub, rec, s = _hub()
    changes = hub.deliver(
        chat_pb2.DeliveryBatch(
            deliveries=[_event(chat_pb2.MEMBERSHIP_CHANGE_REMOVED, BOB), _message(seq=2)]
        )
    )
    assert rec.got(s["bob"]) == [{"type": "membership", "channel_id": TEAM, "event": "removed"}]
    assert TEAM not in s["bob"].channels
    assert [f["seq"] for f in rec.got(s["alice"])] == [2]
    assert changes.members_changed == [TEAM]
    assert changes.unsubscribe == []


def test_added_member_starts_receiving_without_reconnecting() -> None:
    """An 'added' event joins the user's sockets to the channel and subscribes if needed."""
    hub, rec, s = _hub()
    changes = hub.deliver(
        chat_pb2.DeliveryBatch(
            deliveries=[
                _event(chat_pb2.MEMBERSHIP_CHANGE_ADDED, CAROL, channel="n" * 32),
                _message(channel="n" * 32, seq=5),
            ]
        )
    )
    assert changes.subscribe == ["n" * 32]
    assert [f.get("event", f.get("seq")) for f in rec.got(s["carol"])] == ["added", 5]


def test_deactivated_team_refuses_sends_but_keeps_sockets() -> None:
    """'deactivated' marks the channel read-only on every socket and tells them."""
    hub, rec, s = _hub()
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[_event(chat_pb2.MEMBERSHIP_CHANGE_DEACTIVATED)]))
    assert s["alice"].channels[TEAM] is False
    assert rec.got(s["alice"]) == [
        {"type": "membership", "channel_id": TEAM, "event": "deactivated"}
    ]
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[_event(chat_pb2.MEMBERSHIP_CHANGE_ACTIVATED)]))
    assert s["alice"].channels[TEAM] is True


def test_typing_is_not_echoed_to_the_typist() -> None:
    """A typing signal reaches the other members' sockets, not the sender's."""
    hub, rec, s = _hub()
    signal = chat_pb2.Signal(
        kind=chat_pb2.SIGNAL_KIND_TYPING, channel_id=TEAM, to="*", sender=BOB, ts_ms=5
    )
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[chat_pb2.Delivery(signal=signal)]))
    assert [id(x) for x, _ in rec.sent] == [id(s["alice"])]
    assert rec.got(s["alice"])[0] == {
        "type": "typing",
        "channel_id": TEAM,
        "to": "*",
        "from": BOB,
        "ts": "1970-01-01T00:00:00.005Z",
    }
