"""Who is online, from the relays' presence records (DESIGN 5b "Presence")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from chatcore.presence import OFFLINE, ONLINE, PresenceBook, Transition
from chatcore.proto.chat.v1 import chat_pb2

TEAM = "t" * 32
OTHER = "o" * 32
ANN = "a" * 32
BEN = "b" * 32
CID = "c" * 32
TTL = 3000


def _entries(users: Mapping[str, Sequence[str]]) -> list[chat_pb2.PresenceEntry]:
    return [chat_pb2.PresenceEntry(user_id=u, channels=list(c)) for u, c in users.items()]


def _snapshot(
    relay: str,
    version: int,
    users: Mapping[str, Sequence[str]],
    *,
    epoch: str = "e1",
    ttl_ms: int = TTL,
) -> chat_pb2.RelayPresence:
    return chat_pb2.RelayPresence(
        relay_id=relay,
        epoch=epoch,
        version=version,
        snapshot=True,
        online=_entries(users),
        ttl_ms=ttl_ms,
    )


def _delta(
    relay: str,
    version: int,
    online: Mapping[str, Sequence[str]] | None = None,
    offline: Sequence[str] = (),
    *,
    epoch: str = "e1",
    ttl_ms: int = TTL,
) -> chat_pb2.RelayPresence:
    return chat_pb2.RelayPresence(
        relay_id=relay,
        epoch=epoch,
        version=version,
        snapshot=False,
        online=_entries(online or {}),
        offline=list(offline),
        ttl_ms=ttl_ms,
    )


def _statuses(transitions: Sequence[Transition]) -> set[tuple[str, str]]:
    return {(t.user_id, t.status) for t in transitions}


def test_a_first_socket_anywhere_brings_a_user_online_with_their_teams() -> None:
    """The first relay announcing a user makes them online, with the teams to tell and the time."""
    book = PresenceBook()
    transitions = book.apply(_delta("r1", 1, {ANN: [TEAM, OTHER]}), 100)
    assert transitions == [Transition(ANN, ONLINE, (TEAM, OTHER), 100)]
    assert book.online(ANN)
    assert not book.online(BEN)


def test_a_user_on_two_relays_goes_offline_only_when_both_dropped_them() -> None:
    """Online on A and B: leaving A changes nothing, leaving B too makes them offline."""
    book = PresenceBook()
    assert _statuses(book.apply(_delta("A", 1, {ANN: [TEAM]}), 0)) == {(ANN, ONLINE)}
    assert book.apply(_delta("B", 1, {ANN: [TEAM]}), 10) == []
    assert book.apply(_delta("A", 2, offline=[ANN]), 20) == []
    assert book.online(ANN)
    assert book.apply(_delta("B", 2, offline=[ANN]), 30) == [Transition(ANN, OFFLINE, (TEAM,), 30)]
    assert not book.online(ANN)


def test_deltas_apply_in_version_order() -> None:
    """Consecutive deltas of one relay each take effect, arrivals and departures alike."""
    book = PresenceBook()
    book.apply(_snapshot("A", 1, {ANN: [TEAM]}), 0)
    assert _statuses(book.apply(_delta("A", 2, {BEN: [TEAM]}), 10)) == {(BEN, ONLINE)}
    assert _statuses(book.apply(_delta("A", 3, {CID: [TEAM]}, [ANN]), 20)) == {
        (CID, ONLINE),
        (ANN, OFFLINE),
    }
    assert [book.online(u) for u in (ANN, BEN, CID)] == [False, True, True]


def test_after_a_gap_deltas_wait_for_the_next_snapshot_which_replaces_the_set() -> None:
    """A missed version: later deltas are ignored; the next snapshot replaces what the book knew
    of the relay, with a transition for each user that came or went."""
    book = PresenceBook()
    book.apply(_snapshot("A", 1, {ANN: [TEAM], BEN: [TEAM]}), 0)
    assert book.apply(_delta("A", 3, {CID: [TEAM]}), 10) == []  # version 2 was missed
    assert book.apply(_delta("A", 4, offline=[ANN]), 20) == []
    assert not book.online(CID)
    assert book.online(ANN)
    transitions = book.apply(_snapshot("A", 5, {BEN: [TEAM], CID: [TEAM]}), 30)
    assert _statuses(transitions) == {(ANN, OFFLINE), (CID, ONLINE)}
    assert [book.online(u) for u in (ANN, BEN, CID)] == [False, True, True]
    # In sequence again after the snapshot.
    assert _statuses(book.apply(_delta("A", 6, offline=[BEN]), 40)) == {(BEN, OFFLINE)}


def test_a_snapshot_arriving_late_changes_nothing() -> None:
    """A snapshot older than what the book has from the relay is ignored."""
    book = PresenceBook()
    book.apply(_snapshot("A", 1, {ANN: [TEAM]}), 0)
    book.apply(_delta("A", 2, {BEN: [TEAM]}), 10)
    assert book.apply(_snapshot("A", 1, {ANN: [TEAM]}), 20) == []
    assert book.online(BEN)


def test_a_restarted_relay_s_first_snapshot_replaces_the_old_epoch() -> None:
    """A new epoch's snapshot (version 1 again) replaces the old process's users: those not back
    go offline, those back never flap, newcomers come online."""
    book = PresenceBook()
    book.apply(_snapshot("A", 1, {ANN: [TEAM], BEN: [TEAM]}), 0)
    book.apply(_delta("A", 2, {CID: [TEAM]}), 10)
    transitions = book.apply(_snapshot("A", 1, {BEN: [TEAM], CID: [TEAM]}, epoch="e2"), 20)
    assert transitions == [Transition(ANN, OFFLINE, (TEAM,), 20)]
    # The new epoch's deltas continue from its snapshot.
    assert _statuses(book.apply(_delta("A", 2, offline=[CID], epoch="e2"), 30)) == {(CID, OFFLINE)}


def test_a_restarted_relay_s_next_snapshot_corrects_what_its_first_deltas_missed() -> None:
    """The new epoch's first snapshot was lost and a delta came first: the old process's users
    who did not come back go offline (a restart ends its sockets), never online forever."""
    book = PresenceBook()
    book.apply(_snapshot("A", 1, {ANN: [TEAM], BEN: [TEAM]}), 0)
    # e2's snapshot 1 never arrived
    transitions = book.apply(_delta("A", 2, {CID: [TEAM]}, epoch="e2"), 10)
    transitions += book.apply(_snapshot("A", 3, {BEN: [TEAM], CID: [TEAM]}, epoch="e2"), 20)
    assert (ANN, OFFLINE) in _statuses(transitions)
    assert book.online(BEN)
    assert not book.online(ANN)
    book.expire(10_000_000)  # the relay falls silent: nobody is left online
    assert not book.online(ANN)


def test_a_silent_relay_expires_after_its_ttl_and_its_users_go_offline() -> None:
    """Not heard from within its ttl, a relay's users leave it; those held elsewhere stay."""
    book = PresenceBook()
    book.apply(_snapshot("A", 1, {ANN: [TEAM], BEN: [TEAM]}, ttl_ms=3000), 1000)
    book.apply(_snapshot("B", 1, {BEN: [TEAM]}, ttl_ms=60_000), 1000)
    assert book.expire(3999) == []
    assert book.expire(4000) == [Transition(ANN, OFFLINE, (TEAM,), 4000)]
    assert not book.online(ANN)
    assert book.online(BEN)
    assert book.expire(5000) == []


def test_every_record_extends_the_relay_s_life() -> None:
    """A delta (or a late snapshot) heard within the ttl keeps the relay's users online."""
    book = PresenceBook()
    book.apply(_snapshot("A", 2, {ANN: [TEAM]}, ttl_ms=3000), 0)
    book.apply(_delta("A", 3, {BEN: [TEAM]}, ttl_ms=3000), 2000)
    assert book.expire(4000) == []
    book.apply(_snapshot("A", 1, {}, ttl_ms=3000), 4500)  # old, ignored, but a sign of life
    assert book.expire(7000) == []
    assert _statuses(book.expire(7500)) == {(ANN, OFFLINE), (BEN, OFFLINE)}


def test_a_user_moving_from_one_relay_to_another_never_flaps() -> None:
    """B announces the user before A's entry goes (by a delta or by expiry): no transition."""
    for a_lets_go_by_delta in (True, False):
        book = PresenceBook()
        assert _statuses(book.apply(_snapshot("A", 1, {ANN: [TEAM]}), 0)) == {(ANN, ONLINE)}
        assert book.apply(_delta("B", 1, {ANN: [TEAM]}), 500) == []
        if a_lets_go_by_delta:
            assert book.apply(_delta("A", 2, offline=[ANN]), 1000) == []
        else:
            assert book.expire(TTL) == []
        assert book.online(ANN)


def test_last_seen_is_now_for_online_users_and_the_time_they_left_otherwise() -> None:
    """Unknown users have no last seen; online ones are seen now; offline ones when they left."""
    book = PresenceBook()
    assert book.last_seen_ms(ANN, 50) is None
    book.apply(_delta("A", 1, {ANN: [TEAM], BEN: [TEAM]}), 100)
    assert book.last_seen_ms(ANN, 150) == 150
    book.apply(_delta("A", 2, offline=[ANN]), 200)
    assert book.last_seen_ms(ANN, 9000) == 200
    assert book.statuses([ANN, BEN, CID], 9000) == [
        (ANN, False, 200),
        (BEN, True, 9000),
        (CID, False, None),
    ]


def test_an_online_user_listed_with_a_new_team_is_announced_to_that_team_only() -> None:
    """Joining a team while connected: the next record with that team tells it, and only it."""
    book = PresenceBook()
    book.apply(_delta("A", 1, {ANN: [TEAM]}), 0)
    assert book.apply(_delta("A", 2, {ANN: [TEAM, OTHER]}), 10) == [
        Transition(ANN, ONLINE, (OTHER,), 10)
    ]
    assert book.apply(_snapshot("A", 3, {ANN: [TEAM, OTHER]}), 20) == []
    # Known from a snapshot too, and an offline later tells every team.
    assert book.apply(_snapshot("A", 4, {ANN: [TEAM, OTHER, CID]}), 30) == [
        Transition(ANN, ONLINE, (CID,), 30)
    ]
    assert book.apply(_delta("A", 5, offline=[ANN]), 40) == [
        Transition(ANN, OFFLINE, (CID, OTHER, TEAM), 40)
    ]


def test_a_member_counts_online_in_a_team_only_once_announced_to_it() -> None:
    """Online elsewhere but not yet announced to a new team: offline there (no frame told it they
    came, so none would tell it they left); once listed, online there and told when they leave."""
    book = PresenceBook()
    book.apply(_delta("A", 1, {ANN: [TEAM]}), 0)
    assert book.online_in(ANN, TEAM)
    assert not book.online_in(ANN, OTHER)
    assert not book.online_in(BEN, TEAM)
    assert book.apply(_delta("A", 2, {ANN: [TEAM, OTHER]}), 10) == [
        Transition(ANN, ONLINE, (OTHER,), 10)
    ]
    assert book.online_in(ANN, OTHER)
    assert book.apply(_delta("A", 3, offline=[ANN]), 20) == [
        Transition(ANN, OFFLINE, (OTHER, TEAM), 20)
    ]
    assert not book.online_in(ANN, OTHER)
