"""The relay's presence bookkeeping (``PresenceReporter``) and how readers take its records in."""

from __future__ import annotations

from chatcore.presence import OFFLINE, ONLINE, PresenceBook, Transition
from chatcore.proto.chat.v1 import chat_pb2
from services.relay.presence import PresenceReporter

TEAM = "t" * 32
OTHER = "o" * 32
ANN = "a" * 32
BEN = "b" * 32
GRACE = 1000
TTL = 3000


def _channels_of(user_id: str) -> tuple[str, ...]:
    return (TEAM, OTHER) if user_id == ANN else (TEAM,)


def _reporter(relay: str = "r1", epoch: str = "e1") -> PresenceReporter:
    return PresenceReporter(relay, _channels_of, grace_ms=GRACE, ttl_ms=TTL, epoch=epoch)


def _online(record: chat_pb2.RelayPresence) -> list[str]:
    return [e.user_id for e in record.online]


def _due(reporter: PresenceReporter, now_ms: int) -> chat_pb2.RelayPresence:
    record = reporter.due(now_ms)
    assert record is not None
    return record


def test_a_first_greeted_socket_puts_the_user_in_the_next_delta() -> None:
    """The next tick's delta announces the user, with their teams, this relay and the ttl."""
    reporter = _reporter()
    reporter.opened(ANN)
    record = _due(reporter, 100)
    assert record.relay_id == "r1"
    assert record.epoch == "e1"
    assert record.version == 1
    assert not record.snapshot
    assert record.ttl_ms == TTL
    assert record.ts_ms == 100
    assert [(e.user_id, list(e.channels)) for e in record.online] == [(ANN, [TEAM, OTHER])]
    assert list(record.offline) == []
    assert reporter.due(200) is None


def test_a_second_socket_of_an_online_user_adds_nothing() -> None:
    """Another socket of a user already here is no news, before or after the first delta."""
    reporter = _reporter()
    reporter.opened(ANN)
    reporter.opened(ANN)
    assert _online(_due(reporter, 100)) == [ANN]
    reporter.opened(ANN)
    assert reporter.due(200) is None


def test_no_delta_without_a_change() -> None:
    """With nothing opened or closed, no delta is published."""
    assert _reporter().due(0) is None


def test_closing_one_of_two_sockets_changes_nothing() -> None:
    """A user with a socket still open stays here, however long one is closed."""
    reporter = _reporter()
    reporter.opened(ANN)
    reporter.opened(ANN)
    reporter.due(0)
    reporter.closed(ANN, 10)
    assert reporter.due(10 + GRACE * 10) is None


def test_a_close_then_reopen_within_the_grace_publishes_nothing() -> None:
    """A page reload (last socket closed, a new one greeted within the grace) is no change."""
    reporter = _reporter()
    reporter.opened(ANN)
    reporter.due(0)
    reporter.closed(ANN, 1000)
    assert reporter.due(1500) is None
    reporter.opened(ANN)
    assert reporter.due(1000 + GRACE) is None
    assert reporter.due(1000 + GRACE * 10) is None


def test_the_last_close_publishes_offline_only_after_the_grace() -> None:
    """The user leaves in the first delta due once the grace since their last close ran out."""
    reporter = _reporter()
    reporter.opened(ANN)
    reporter.opened(BEN)
    reporter.due(0)
    reporter.closed(ANN, 1000)
    assert reporter.due(1000 + GRACE - 1) is None
    record = _due(reporter, 1000 + GRACE)
    assert list(record.offline) == [ANN]
    assert _online(record) == []
    assert record.version == 2
    assert reporter.due(5000) is None


def test_open_and_close_within_one_tick_publishes_nothing() -> None:
    """A socket that came and went before anyone was told leaves no trace, now or later."""
    reporter = _reporter()
    reporter.opened(ANN)
    reporter.closed(ANN, 10)
    assert reporter.due(20) is None
    assert reporter.due(20 + GRACE * 10) is None


def test_a_snapshot_lists_everyone_here_including_those_leaving() -> None:
    """The heartbeat has every user with a socket or within their grace, and the given ttl."""
    reporter = _reporter()
    reporter.opened(ANN)
    reporter.opened(BEN)
    reporter.due(0)
    reporter.closed(BEN, 100)
    snapshot = reporter.snapshot(200)
    assert snapshot.snapshot
    assert sorted(_online(snapshot)) == [ANN, BEN]
    assert snapshot.ttl_ms == TTL
    assert [(e.user_id, list(e.channels)) for e in snapshot.online if e.user_id == ANN] == [
        (ANN, [TEAM, OTHER])
    ]
    assert reporter.snapshot(300, ttl_ms=500).ttl_ms == 500
    # The leaving user still goes once the grace ran.
    assert list(_due(reporter, 100 + GRACE).offline) == [BEN]


def test_a_snapshot_announces_users_who_have_not_been_in_a_delta_yet() -> None:
    """A user opened just before a heartbeat is in the snapshot and not announced again."""
    reporter = _reporter()
    reporter.opened(ANN)
    assert _online(reporter.snapshot(0)) == [ANN]
    assert reporter.due(10) is None


def test_versions_keep_increasing_across_deltas_and_snapshots() -> None:
    """Every record, delta or snapshot, has the next version of the epoch."""
    reporter = _reporter()
    versions = []
    reporter.opened(ANN)
    versions.append(_due(reporter, 0).version)
    versions.append(reporter.snapshot(10).version)
    reporter.opened(BEN)
    versions.append(_due(reporter, 20).version)
    versions.append(reporter.snapshot(30, ttl_ms=1).version)
    versions.append(reporter.snapshot(40).version)
    assert versions == [1, 2, 3, 4, 5]


def test_two_relays_and_a_reader_agree_on_who_is_online() -> None:
    """Records of two reporters applied to a book: arrivals, a move between relays without a
    flap, a departure after the grace, and a dead relay's users expiring."""
    book = PresenceBook()
    a = _reporter("A", "eA")
    b = _reporter("B", "eB")
    seen: list[Transition] = []

    def publish(record: chat_pb2.RelayPresence | None, now_ms: int) -> None:
        if record is not None:
            seen.extend(book.apply(record, now_ms))

    a.opened(ANN)
    a.opened(BEN)
    publish(a.snapshot(0), 0)
    publish(b.snapshot(0), 0)
    assert [(t.user_id, t.status) for t in seen] == [(ANN, ONLINE), (BEN, ONLINE)]
    assert seen[0].channels == (TEAM, OTHER)
    seen.clear()

    # Ann moves to relay B: B announces her before A lets her go.
    a.closed(ANN, 500)
    b.opened(ANN)
    publish(b.due(600), 600)
    publish(a.due(600), 600)
    publish(a.due(500 + GRACE), 500 + GRACE)
    publish(a.snapshot(2000), 2000)
    publish(b.snapshot(2000), 2000)
    assert seen == []
    assert book.online(ANN)

    # Ben closes his last socket on A: offline once the grace ran.
    a.closed(BEN, 2500)
    publish(a.due(2600), 2600)
    assert seen == []
    publish(a.due(2500 + GRACE), 2500 + GRACE)
    assert seen == [Transition(BEN, OFFLINE, (TEAM,), 2500 + GRACE)]
    seen.clear()

    # Relay B dies silently: after its ttl, Ann goes offline; A's users are unaffected.
    b.opened(BEN)
    publish(b.due(4000), 4000)
    assert [(t.user_id, t.status) for t in seen] == [(BEN, ONLINE)]
    seen.clear()
    publish(a.snapshot(4000), 4000)
    assert book.expire(4000 + TTL - 1) == []
    assert {(t.user_id, t.status) for t in book.expire(4000 + TTL)} == {
        (ANN, OFFLINE),
        (BEN, OFFLINE),
    }
    assert book.statuses([ANN, BEN], 9000) == [(ANN, False, 4000 + TTL), (BEN, False, 4000 + TTL)]


def test_a_draining_relay_s_last_snapshot_lets_only_those_who_left_go_offline() -> None:
    """After the short-ttl drain snapshot, users who reconnected elsewhere stay online and the
    others go offline when it runs out."""
    book = PresenceBook()
    a = _reporter("A", "eA")
    b = _reporter("B", "eB")
    a.opened(ANN)
    a.opened(BEN)
    book.apply(a.snapshot(0), 0)
    book.apply(a.snapshot(1000, ttl_ms=200), 1000)
    b.opened(ANN)
    record = b.due(1100)
    assert record is not None
    assert book.apply(record, 1100) == []
    assert book.expire(1199) == []
    assert book.expire(1200) == [Transition(BEN, OFFLINE, (TEAM,), 1200)]
    assert book.online(ANN)


def test_a_user_given_another_team_is_announced_again_with_it() -> None:
    """After ``joined`` the next delta lists the user again, with the teams they have now."""
    teams: dict[str, tuple[str, ...]] = {ANN: (TEAM,)}
    reporter = PresenceReporter(
        "r1", lambda u: teams.get(u, ()), grace_ms=GRACE, ttl_ms=TTL, epoch="e1"
    )
    reporter.opened(ANN)
    reporter.due(0)
    teams[ANN] = (TEAM, OTHER)
    reporter.joined(ANN)
    record = _due(reporter, 10)
    assert [(e.user_id, list(e.channels)) for e in record.online] == [(ANN, [TEAM, OTHER])]
    reporter.joined(BEN)  # nobody of that name here: no news
    assert reporter.due(20) is None


def test_a_user_given_a_team_then_gone_within_a_tick_is_still_taken_offline() -> None:
    """Announced, given a team, last socket closed before the next tick: offline after the grace
    (the re-announcement must not swallow the departure, or readers keep them online)."""
    reporter = _reporter()
    reporter.opened(ANN)
    reporter.due(0)
    reporter.joined(ANN)
    reporter.closed(ANN, 100)
    assert reporter.due(100 + GRACE - 1) is None
    record = _due(reporter, 100 + GRACE)
    assert list(record.offline) == [ANN]
    assert _online(record) == []
