"""Local fan-out rules: who receives what, and which channels the relay subscribes to."""

from __future__ import annotations

from chatcore.presence import OFFLINE, ONLINE, Transition
from chatcore.proto.chat.v1 import chat_pb2
from services.relay.hub import Hub, Session
from tests.unit.relay_fakes import RecordingFanout

TEAM, OTHER = "t" * 32, "o" * 32
ALICE, BOB, CAROL = "a" * 32, "b" * 32, "c" * 32


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


def _hub() -> tuple[Hub, RecordingFanout, dict[str, Session]]:
    rec = RecordingFanout()
    hub = Hub(rec)
    sessions = {
        "alice": Session(ALICE, object(), {TEAM: True}),
        "bob": Session(BOB, object(), {TEAM: True, OTHER: True}),
        "bob2": Session(BOB, object(), {TEAM: True}),
        "carol": Session(CAROL, object(), {OTHER: True}),
    }
    for s in sessions.values():
        hub.attach(s)
        hub.greet(s)
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
    hub.greet(extra)
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[_message(to=BOB)]))
    assert {id(x) for x, _ in rec.sent} == {id(s["alice"]), id(s["bob"]), id(s["bob2"])}
    assert rec.got(extra) == []


def test_subscription_set_is_reference_counted() -> None:
    """A channel is subscribed when its first socket arrives and dropped with its last one."""
    rec = RecordingFanout()
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
    assert rec.got(s["alice"])[0] == {"type": "team", "channel_id": TEAM, "change": "members"}
    assert [f["seq"] for f in rec.got(s["alice"])[1:]] == [2]
    assert changes.members_changed == [TEAM]
    assert changes.unsubscribe == []


def test_added_member_gets_the_channel_only_once_the_grant_is_finished() -> None:
    """'added' subscribes first; the socket gets the frame and messages only after the grant."""
    hub, rec, s = _hub()
    new = "n" * 32
    effects = hub.deliver(
        chat_pb2.DeliveryBatch(
            deliveries=[
                _event(chat_pb2.MEMBERSHIP_CHANGE_ADDED, CAROL, channel=new),
                _message(channel=new, seq=5),
            ]
        )
    )
    assert effects.subscribe == [new]
    assert [(g.user_id, g.channel_id) for g in effects.grants] == [(CAROL, new)]
    assert rec.got(s["carol"]) == []  # persisted before the grant: history has it
    done = hub.finish_grant(effects.grants[0], member=True, active=True)
    assert done.unsubscribe == []
    assert done.joined == [CAROL]  # the team hears carol is here (presence)
    assert new in hub.channels
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[_message(channel=new, seq=6)]))
    assert [f.get("event", f.get("seq")) for f in rec.got(s["carol"])] == ["added", 6]


def test_grant_overtaken_by_removal_or_refused_by_the_team_gives_nothing() -> None:
    """A removal before the grant finishes, or a team that says no, leaves no trace."""
    hub, rec, s = _hub()
    new = "n" * 32
    added = _event(chat_pb2.MEMBERSHIP_CHANGE_ADDED, CAROL, channel=new)
    removed = _event(chat_pb2.MEMBERSHIP_CHANGE_REMOVED, CAROL, channel=new)
    grant = hub.deliver(chat_pb2.DeliveryBatch(deliveries=[added])).grants[0]
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[removed]))
    overtaken = hub.finish_grant(grant, member=True, active=True)
    assert overtaken.unsubscribe == [new]
    assert overtaken.joined == []
    refused = hub.deliver(chat_pb2.DeliveryBatch(deliveries=[added])).grants[0]
    assert hub.finish_grant(refused, member=False, active=True).unsubscribe == [new]
    assert new not in s["carol"].channels
    assert rec.got(s["carol"]) == []
    assert sorted(hub.channels) == sorted([TEAM, OTHER])


def test_member_added_to_a_deactivated_team_cannot_send() -> None:
    """A grant for an inactive team gives the channel read-only."""
    hub, _rec, s = _hub()
    new = "n" * 32
    effects = hub.deliver(
        chat_pb2.DeliveryBatch(deliveries=[_event(chat_pb2.MEMBERSHIP_CHANGE_ADDED, CAROL, new)])
    )
    hub.finish_grant(effects.grants[0], member=True, active=False)
    assert s["carol"].channels[new] is False


def test_pending_socket_gets_nothing_until_greeted() -> None:
    """A socket's channels are subscribed at attach, but deliveries start with its greeting."""
    rec = RecordingFanout()
    hub = Hub(rec)
    pending = Session(ALICE, object(), {TEAM: True})
    assert hub.attach(pending).subscribe == [TEAM]
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[_message(seq=1), _message(to=ALICE, seq=2)]))
    assert rec.got(pending) == []
    hub.greet(pending)
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[_message(seq=3)]))
    assert [f["seq"] for f in rec.got(pending)] == [3]


def test_audit_takes_the_channel_from_non_members_and_from_everyone_of_a_gone_team() -> None:
    """The audit revokes what the team no longer grants, and whole channels of deleted teams."""
    hub, rec, s = _hub()
    hub.audit(TEAM, frozenset({ALICE}), True)
    assert TEAM not in s["bob"].channels
    assert TEAM not in s["bob2"].channels
    assert rec.got(s["bob2"]) == [{"type": "membership", "channel_id": TEAM, "event": "removed"}]
    assert TEAM in s["alice"].channels
    effects = hub.audit(OTHER, None, False)
    assert effects.unsubscribe == [OTHER]
    assert OTHER not in s["carol"].channels


def test_user_disabled_event_names_the_user_to_disconnect() -> None:
    """A user-wide 'user_disabled' event is handed to the relay, which closes their sockets."""
    hub, _rec, _s = _hub()
    event = chat_pb2.Delivery(
        membership=chat_pb2.MembershipEvent(
            user_id=BOB, change=chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED
        )
    )
    assert hub.deliver(chat_pb2.DeliveryBatch(deliveries=[event])).disabled_users == [BOB]


def test_session_ended_event_names_the_login_to_disconnect() -> None:
    """A 'session_ended' event is handed to the relay with its login; no frame is sent."""
    hub, rec, s = _hub()
    event = chat_pb2.Delivery(
        membership=chat_pb2.MembershipEvent(
            user_id=BOB, session_id="c" * 32, change=chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED
        )
    )
    effects = hub.deliver(chat_pb2.DeliveryBatch(deliveries=[event]))
    assert effects.ended_sessions == [(BOB, "c" * 32)]
    assert effects.disabled_users == []
    assert all(rec.got(session) == [] for session in s.values())


def test_deactivated_team_refuses_sends_but_keeps_sockets() -> None:
    """'deactivated' marks the channel read-only on every socket and tells them; 'activated'
    makes it writable again and tells them too."""
    hub, rec, s = _hub()
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[_event(chat_pb2.MEMBERSHIP_CHANGE_DEACTIVATED)]))
    assert s["alice"].channels[TEAM] is False
    assert rec.got(s["alice"]) == [
        {"type": "membership", "channel_id": TEAM, "event": "deactivated"}
    ]
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[_event(chat_pb2.MEMBERSHIP_CHANGE_ACTIVATED)]))
    assert s["alice"].channels[TEAM] is True
    assert rec.got(s["alice"])[-1] == {
        "type": "membership",
        "channel_id": TEAM,
        "event": "activated",
    }


def test_settings_and_roles_reach_every_socket_of_the_team_and_change_no_access() -> None:
    """A rename or a role change sends a 'team' frame to each of the team's sockets, the
    actor's included, and to nobody outside it; nobody's channels or subscriptions change."""
    hub, rec, s = _hub()
    effects = hub.deliver(
        _batch(
            _event(chat_pb2.MEMBERSHIP_CHANGE_SETTINGS),
            _event(chat_pb2.MEMBERSHIP_CHANGE_ROLES, BOB),
        )
    )
    for name in ("alice", "bob", "bob2"):
        assert rec.got(s[name]) == [
            {"type": "team", "channel_id": TEAM, "change": "settings"},
            {"type": "team", "channel_id": TEAM, "change": "roles"},
        ]
        assert s[name].channels[TEAM] is True
    assert rec.got(s["carol"]) == []
    assert (effects.subscribe, effects.unsubscribe, effects.members_changed) == ([], [], [])


def test_a_member_renamed_is_told_to_each_socket_of_each_shared_team_and_changes_no_access() -> (
    None
):
    """A profile event sends a 'profile' frame with the id and the new name to every socket of
    that team (the renamed user's other sockets too), none elsewhere; access stays as it was."""
    hub, rec, s = _hub()
    renamed = chat_pb2.MembershipEvent(
        channel_id=OTHER, user_id=CAROL, change=chat_pb2.MEMBERSHIP_CHANGE_PROFILE, user_name="Cé"
    )
    effects = hub.deliver(_batch(chat_pb2.Delivery(membership=renamed)))
    told = {"type": "profile", "channel_id": OTHER, "user_id": CAROL, "name": "Cé"}
    assert rec.got(s["bob"]) == [told]
    assert rec.got(s["carol"]) == [told]
    assert rec.got(s["alice"]) == rec.got(s["bob2"]) == []
    assert s["bob"].channels == {TEAM: True, OTHER: True}
    assert (effects.subscribe, effects.unsubscribe, effects.members_changed) == ([], [], [])


def test_the_rest_of_the_team_hears_of_a_member_added_or_removed() -> None:
    """A member added or removed: the team's other sockets get a 'team' frame saying the
    members changed; the member's own sockets get only their membership frame."""
    hub, rec, s = _hub()
    effects = hub.deliver(_batch(_event(chat_pb2.MEMBERSHIP_CHANGE_ADDED, CAROL)))
    members = {"type": "team", "channel_id": TEAM, "change": "members"}
    assert rec.got(s["alice"]) == [members]
    assert rec.got(s["bob"]) == [members]
    assert rec.got(s["carol"]) == []  # hers is 'added', once the grant is finished
    hub.finish_grant(effects.grants[0], member=True, active=True)
    assert rec.got(s["carol"]) == [{"type": "membership", "channel_id": TEAM, "event": "added"}]
    hub.deliver(_batch(_event(chat_pb2.MEMBERSHIP_CHANGE_REMOVED, ALICE)))
    assert rec.got(s["alice"])[-1] == {"type": "membership", "channel_id": TEAM, "event": "removed"}
    assert rec.got(s["bob"]) == [members, members]
    assert rec.got(s["carol"])[-1] == members


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
    in_thread = chat_pb2.Signal(
        kind=chat_pb2.SIGNAL_KIND_TYPING, channel_id=TEAM, to="*", sender=BOB, thread_id="r" * 32
    )
    hub.deliver(chat_pb2.DeliveryBatch(deliveries=[chat_pb2.Delivery(signal=in_thread)]))
    assert rec.got(s["alice"])[1]["thread_id"] == "r" * 32  # shown in that thread's panel


def test_presence_reaches_each_team_socket_in_order_but_not_the_user_s_own() -> None:
    """A tick's transitions: every socket in the team gets each change in order, except a
    user's own sockets, which are not told about that user; another team hears nothing."""
    hub, rec, s = _hub()
    hub.presence(
        [
            Transition(CAROL, ONLINE, (TEAM,), 1),
            Transition(BOB, OFFLINE, (TEAM,), 2),
            Transition(CAROL, OFFLINE, (TEAM,), 3),
        ]
    )

    def told(session: Session) -> list[tuple[object, object]]:
        return [(f["user_id"], f["status"]) for f in rec.got(session) if f["type"] == "presence"]

    assert told(s["alice"]) == [(CAROL, ONLINE), (BOB, OFFLINE), (CAROL, OFFLINE)]
    assert told(s["bob"]) == told(s["bob2"]) == [(CAROL, ONLINE), (CAROL, OFFLINE)]
    assert told(s["carol"]) == []  # carol's socket is in OTHER only
    assert all(f["channel_id"] == TEAM for f in rec.got(s["alice"]))


def _batch(*deliveries: chat_pb2.Delivery) -> chat_pb2.DeliveryBatch:
    return chat_pb2.DeliveryBatch(deliveries=list(deliveries))


def test_events_during_a_socket_s_lookup_apply_to_it_when_it_attaches() -> None:
    """Removed from one team, added to another and a third deactivated while Dave's membership
    lookup was on its way (its answer predates them all): his socket is greeted without the
    first, read-only in the third, and the second comes by a grant; nothing of the first reaches
    it."""
    hub, rec, _s = _hub()
    dave, new, third = "d" * 32, "n" * 32, "x" * 32
    hub.expect(dave)
    hub.deliver(
        _batch(
            _event(chat_pb2.MEMBERSHIP_CHANGE_REMOVED, dave),
            _event(chat_pb2.MEMBERSHIP_CHANGE_ADDED, dave, channel=new),
            _event(chat_pb2.MEMBERSHIP_CHANGE_DEACTIVATED, channel=third),
        )
    )
    socket = Session(dave, object(), {TEAM: True, third: True})  # the lookup's stale answer
    effects = hub.attach(socket)
    hub.greet(socket)
    assert socket.channels == {third: False}
    assert [(g.user_id, g.channel_id) for g in effects.grants] == [(dave, new)]
    hub.finish_grant(effects.grants[0], member=True, active=True)
    assert socket.channels == {third: False, new: True}
    hub.deliver(_batch(_message(seq=9), _message(channel=new, seq=10)))
    assert [f.get("event", f.get("seq")) for f in rec.got(socket)] == ["added", 10]


def test_events_are_kept_only_while_a_lookup_is_open() -> None:
    """An event before the lookup began, or after the socket attached, is not replayed; two
    sockets of one user looking up at once both get what came during their lookups."""
    hub, _rec, _s = _hub()
    dave = "d" * 32
    hub.deliver(_batch(_event(chat_pb2.MEMBERSHIP_CHANGE_REMOVED, dave)))
    hub.expect(dave)
    hub.expect(dave)
    first = Session(dave, object(), {TEAM: True})
    assert hub.attach(first).grants == []
    assert first.channels == {TEAM: True}
    hub.deliver(_batch(_event(chat_pb2.MEMBERSHIP_CHANGE_REMOVED, dave)))
    assert first.channels == {}  # attached: the event acted on it directly
    second = Session(dave, object(), {TEAM: True})
    hub.attach(second)
    assert second.channels == {}
    hub.expect(dave)
    hub.abandon(dave)  # a lookup that failed keeps nothing
    third = Session(dave, object(), {TEAM: True})
    hub.attach(third)
    assert third.channels == {TEAM: True}


def test_replaying_a_removal_leaves_the_user_s_other_sockets_alone() -> None:
    """Bob's greeted socket lost and regained the team while his second socket looked up: the
    second attaches without the removal touching the first (no extra frame, team kept)."""
    hub, rec, s = _hub()
    hub.expect(BOB)
    hub.deliver(_batch(_event(chat_pb2.MEMBERSHIP_CHANGE_REMOVED, BOB)))
    regrant = hub.deliver(_batch(_event(chat_pb2.MEMBERSHIP_CHANGE_ADDED, BOB))).grants[0]
    hub.finish_grant(regrant, member=True, active=True)
    frames_before = len(rec.got(s["bob"]))
    assert TEAM in s["bob"].channels
    second = Session(BOB, object(), {TEAM: True, OTHER: True})
    effects = hub.attach(second)
    assert TEAM in s["bob"].channels
    assert len(rec.got(s["bob"])) == frames_before
    assert [(g.user_id, g.channel_id) for g in effects.grants] == [(BOB, TEAM)]
    assert second.channels == {OTHER: True}


def test_a_channel_removed_during_the_lookup_is_never_subscribed_for_that_socket() -> None:
    """A user's only socket, removed from a team no other socket here holds while its lookup ran:
    attaching neither subscribes nor unsubscribes it (one request naming it both ways would leave
    it subscribed at the controller)."""
    hub, _rec, _s = _hub()
    dave, lonely = "d" * 32, "l" * 32
    hub.expect(dave)
    hub.deliver(_batch(_event(chat_pb2.MEMBERSHIP_CHANGE_REMOVED, dave, channel=lonely)))
    effects = hub.attach(Session(dave, object(), {lonely: True}))
    assert (effects.subscribe, effects.unsubscribe) == ([], [])
    assert lonely not in hub.channels


def test_restated_shut_outs_are_kept_apart_from_news() -> None:
    """Events a controller restates at a stream's opening close sockets without refusing later."""
    hub, _rec, _s = _hub()
    batch = chat_pb2.DeliveryBatch(
        deliveries=[
            chat_pb2.Delivery(
                membership=chat_pb2.MembershipEvent(
                    user_id=BOB, change=chat_pb2.MEMBERSHIP_CHANGE_USER_DISABLED, restated=True
                )
            ),
            chat_pb2.Delivery(
                membership=chat_pb2.MembershipEvent(
                    user_id=BOB,
                    session_id="c" * 32,
                    change=chat_pb2.MEMBERSHIP_CHANGE_SESSION_ENDED,
                    restated=True,
                )
            ),
        ]
    )
    effects = hub.deliver(batch)
    assert (effects.disabled_now, effects.ended_now) == ([BOB], [(BOB, "c" * 32)])
    assert (effects.disabled_users, effects.ended_sessions) == ([], [])
