"""Read state, mentions and unread counts (DESIGN 5b "Read state and mentions")."""

from __future__ import annotations

from chatcore.read_states import read_from_doc
from chatcore.unread import (
    DELETED_KEPT,
    MARKS_MAX,
    MENTIONS_PER_MESSAGE_MAX,
    ChannelHead,
    DeletedMark,
    ReadState,
    Unread,
    mentioned,
    unread,
    unread_all,
)

ME = "a" * 32
BOB = "b" * 32
CAROL = "c" * 32


def _user(n: int) -> str:
    return f"{n:032x}"


# --- mentioned ---------------------------------------------------------------------------------


def test_mentions_are_listed_in_order_of_appearance() -> None:
    """Each ``<@user_id>`` is reported in the order the text names them."""
    assert mentioned(f"hi <@{CAROL}> and <@{BOB}>, see <@{ME}>") == [CAROL, BOB, ME]


def test_a_user_mentioned_twice_is_listed_once() -> None:
    """Naming someone again adds no second mention."""
    assert mentioned(f"<@{BOB}> <@{CAROL}> <@{BOB}>!") == [BOB, CAROL]


def test_at_most_twenty_distinct_users_are_mentioned() -> None:
    """Beyond 20 distinct users, the later ones are ignored; repeats do not use up the cap."""
    users = [_user(n) for n in range(1, 26)]
    text = " ".join(f"<@{u}>" for u in [users[0], users[0], *users])
    assert MENTIONS_PER_MESSAGE_MAX == 20
    assert mentioned(text) == users[:20]


def test_only_32_hex_ids_in_angle_brackets_are_mentions() -> None:
    """Upper-case, short, long, non-hex ids and bare ``@id`` are not mentions."""
    texts = [
        f"<@{'A' * 32}>",
        f"<@{'a' * 31}>",
        f"<@{'a' * 33}>",
        f"<@{'g' * 32}>",
        f"@{BOB}",
        f"<{BOB}>",
        f"<@ {BOB}>",
        "<@alice>",
        "",
    ]
    for text in texts:
        assert mentioned(text) == [], text


# --- ReadState ----------------------------------------------------------------------------------


def test_advancing_moves_the_read_position_forward() -> None:
    """Reading up to a higher seq records that seq and the channel's count there."""
    state = ReadState().advanced(10, 3)
    assert (state.seq, state.count) == (10, 3)
    assert state.advanced(25, 7) == ReadState(seq=25, count=7)


def test_the_read_position_never_moves_back() -> None:
    """Marking read at or below the current position changes nothing."""
    state = ReadState(seq=10, count=3, dms=(12,), mentions=(12, 14))
    assert state.advanced(10, 9) == state
    assert state.advanced(4, 1) == state


def test_advancing_forgets_dms_and_mentions_at_or_below_the_new_position() -> None:
    """DMs and mentions read by the move stop counting; later ones still count."""
    state = ReadState(seq=1, count=0, dms=(5, 10, 15), mentions=(5, 8, 10, 15, 20))
    after = state.advanced(10, 4)
    assert after.dms == (15,)
    assert after.mentions == (15, 20)


def test_advancing_never_makes_more_team_messages_unread() -> None:
    """A forward move with a smaller count keeps the count already read."""
    head = ChannelHead(count=10, count_seq=90, last_seq=90)
    state = ReadState(seq=50, count=6)
    before = unread(head, state, ME).count
    assert unread(head, state.advanced(60, 2), ME).count <= before


def test_the_message_at_seq_0_can_be_read_unread_and_a_dm() -> None:
    """Seqs start at 0: a member who has read nothing sits before it, so the first record of a
    partition counts as a DM and a mention, and reading it moves the position to 0."""
    assert ReadState().seq == -1
    fresh = ReadState().with_dm(0)
    assert (fresh.dms, fresh.mentions) == ((0,), (0,))
    assert unread(ChannelHead(), fresh, ME) == Unread(1, 1, -1)
    assert ReadState().with_mention(0).mentions == (0,)
    read = fresh.advanced(0, 0)
    assert read == ReadState(seq=0, count=0)
    head = ChannelHead(count=1, count_seq=0, last_seq=0)
    assert unread(head, ReadState(), ME).count == 1
    assert unread(head, ReadState().advanced(0, 1), ME).count == 0


def test_a_deleted_message_at_seq_0_stops_counting() -> None:
    """A team message at seq 0 deleted by another member no longer counts for one who has read
    nothing."""
    head = ChannelHead(count=1, count_seq=0, last_seq=1).with_deleted(DeletedMark(0, "o" * 32))
    assert unread(head, ReadState(), ME).count == 0


def test_a_dm_is_also_a_mention() -> None:
    """A DM above the read position counts as a DM and as a mention."""
    state = ReadState(seq=10).with_dm(12)
    assert state.dms == (12,)
    assert state.mentions == (12,)


def test_a_dm_at_or_below_the_read_position_is_ignored() -> None:
    """A DM the member has already read past adds nothing."""
    state = ReadState(seq=10, count=2)
    assert state.with_dm(10) == state
    assert state.with_dm(3) == state


def test_the_same_dm_recorded_twice_counts_once() -> None:
    """Recording a DM again (a redelivered record) is idempotent."""
    once = ReadState(seq=1).with_dm(12)
    assert once.with_dm(12) == once
    assert unread(ChannelHead(), once.with_dm(12), ME) == Unread(1, 1, 1)


def test_dms_and_mentions_are_kept_in_seq_order() -> None:
    """Marks recorded out of order are held ascending, so a move prunes exactly the read ones."""
    state = ReadState().with_dm(30).with_dm(10).with_mention(20).with_mention(5)
    assert state.dms == (10, 30)
    assert state.mentions == (5, 10, 20, 30)


def test_a_mention_counts_only_as_a_mention() -> None:
    """A mention in a team text adds a mention, not a DM; at or below the position it is ignored;
    twice is once."""
    state = ReadState(seq=10).with_mention(11)
    assert state.mentions == (11,)
    assert state.dms == ()
    assert state.with_mention(11) == state
    assert state.with_mention(10) == state


def test_only_the_newest_marks_are_kept() -> None:
    """Beyond the cap the oldest DMs are forgotten (counts then say "at least")."""
    state = ReadState()
    for seq in range(1, MARKS_MAX + 6):
        state = state.with_dm(seq)
    assert len(state.dms) == MARKS_MAX
    assert state.dms[0] == 6
    assert state.dms[-1] == MARKS_MAX + 5


def test_a_deleted_message_stops_counting_as_dm_and_mention() -> None:
    """``without`` removes the deleted message's seq from DMs and mentions, nothing else."""
    state = ReadState(seq=5, count=1, dms=(7, 9), mentions=(7, 8, 9))
    after = state.without(7)
    assert after == ReadState(seq=5, count=1, dms=(9,), mentions=(8, 9))
    assert after.without(100) == after


# --- ChannelHead ---------------------------------------------------------------------------------


def test_a_deleted_message_is_remembered_once() -> None:
    """Recording the same deletion twice keeps one mark."""
    head = ChannelHead(count=3).with_deleted(DeletedMark(7, BOB))
    assert head.with_deleted(DeletedMark(7, BOB)) == head
    assert head.deleted == (DeletedMark(7, BOB),)


def test_the_head_keeps_only_the_most_recent_deletions() -> None:
    """After more than 200 deletions the head keeps the newest 200."""
    head = ChannelHead()
    for seq in range(1, DELETED_KEPT + 6):
        head = head.with_deleted(DeletedMark(seq, BOB))
    assert DELETED_KEPT == 200
    assert len(head.deleted) == DELETED_KEPT
    assert [d.seq for d in head.deleted] == list(range(6, DELETED_KEPT + 6))


# --- unread ---------------------------------------------------------------------------------------


def test_unread_counts_team_messages_since_the_read_position() -> None:
    """The channel's count minus the count at the read position; last_read_seq is the position."""
    head = ChannelHead(count=10, count_seq=100, last_seq=100)
    result = unread(head, ReadState(seq=40, count=4), ME)
    assert result == Unread(count=6, mentions=0, last_read_seq=40)
    assert result.public() == {"count": 6, "mentions": 0, "last_read_seq": 40}


def test_deleted_messages_of_others_since_the_read_position_do_not_count() -> None:
    """Others' deletions above the position subtract; deletions already read past do not."""
    head = ChannelHead(
        count=10,
        count_seq=100,
        last_seq=100,
        deleted=(DeletedMark(30, BOB), DeletedMark(45, BOB), DeletedMark(60, CAROL)),
    )
    assert unread(head, ReadState(seq=40, count=4), ME).count == 4


def test_own_deleted_messages_never_subtract() -> None:
    """The reader's own messages never counted, so deleting one changes nothing."""
    head = ChannelHead(count=10, count_seq=100, last_seq=100, deleted=(DeletedMark(45, ME),))
    assert unread(head, ReadState(seq=40, count=4), ME).count == 6
    assert unread(head, ReadState(seq=40, count=4), BOB).count == 5


def test_dms_add_to_the_count_and_mentions_are_counted() -> None:
    """Unread DMs add to the team messages; mentions (DMs included) are their own number."""
    head = ChannelHead(count=5, count_seq=50, last_seq=60)
    state = ReadState(seq=20, count=2).with_dm(55).with_dm(60).with_mention(45)
    assert unread(head, state, ME) == Unread(count=3 + 2, mentions=3, last_read_seq=20)


def test_the_unread_count_is_never_negative() -> None:
    """More deletions than counted messages (forgotten marks, races) floor at zero, DMs still
    count."""
    head = ChannelHead(
        count=4,
        count_seq=40,
        last_seq=40,
        deleted=(DeletedMark(35, BOB), DeletedMark(36, BOB), DeletedMark(37, CAROL)),
    )
    state = ReadState(seq=30, count=3)
    assert unread(head, state, ME).count == 0
    assert unread(head, state.with_dm(38), ME).count == 1


def test_a_head_older_than_the_read_document_never_counts_fewer_than_the_mentions() -> None:
    """A head read a moment before the mentions were stored (a hello reuses heads briefly)
    still counts each team text that mentions the reader as unread: no "@2" over "0 unread"."""
    stale = ChannelHead(count=2, count_seq=20, last_seq=20)
    state = ReadState(seq=20, count=2).with_mention(25).with_mention(27).with_dm(26)
    assert unread(stale, state, ME) == Unread(count=2 + 1, mentions=3, last_read_seq=20)
    fresh = ChannelHead(count=6, count_seq=30, last_seq=30)
    assert unread(fresh, state, ME).count == 4 + 1


def test_unread_all_defaults_to_zero_for_unknown_channels() -> None:
    """A channel without a head or read document counts from zero and reads from before the
    first seq (-1); only the channels asked for are answered."""
    heads = {"t1": ChannelHead(count=5, count_seq=50, last_seq=50), "t9": ChannelHead(count=1)}
    reads = {"t1": ReadState(seq=20, count=2), "t2": ReadState(seq=7).with_dm(9)}
    result = unread_all(heads, reads, ME, ["t1", "t2", "t3"])
    assert result == {
        "t1": Unread(3, 0, 20),
        "t2": Unread(1, 1, 7),
        "t3": Unread(0, 0, -1),
    }
    assert unread_all({"t": ChannelHead(count=4)}, {}, ME, ["t"]) == {"t": Unread(4, 0, -1)}


def test_an_own_team_message_moves_the_position_unless_a_dm_below_it_is_unread() -> None:
    """Nothing unread elsewhere: the position moves to the own message. An unread DM below it:
    the position stays, the own message is kept so that it never counts, and reading past it
    later drops it."""
    assert ReadState(seq=5, count=2).after_own(9, 5, to=None) == ReadState(seq=9, count=5)
    waiting = ReadState(seq=5, count=2, dms=(7,), mentions=(7,))
    kept = waiting.after_own(9, 5, to=None)
    assert (kept.seq, kept.own, kept.dms) == (5, (9,), (7,))
    head = ChannelHead(count=5, count_seq=9, last_seq=9)
    assert unread(head, kept, ME).count == 2 + 1  # two team messages from others, the DM
    assert kept.after_own(9, 5, to=None) == kept  # consumed again
    assert kept.advanced(9, 5) == ReadState(seq=9, count=5)


def test_an_own_dm_moves_the_position_only_over_nothing_unread() -> None:
    """A DM of one's own passes no unread team message and no unread DM; with neither, it
    moves the position as any own message does."""
    assert ReadState(seq=5, count=2).after_own(9, 2, to=BOB).seq == 9
    team_unread = ReadState(seq=5, count=2)
    assert team_unread.after_own(9, 4, to=BOB) == team_unread
    dm_unread = ReadState(seq=5, count=2, dms=(7,), mentions=(7,))
    assert dm_unread.after_own(9, 2, to=BOB) == dm_unread
    # Own team messages above the position are no unread team messages.
    mine = ReadState(seq=5, count=2, dms=(6,), own=(8,)).without(6)
    assert mine.after_own(9, 3, to=BOB).seq == 9


def test_an_own_dm_reads_the_dms_from_its_addressee_and_no_one_else_s() -> None:
    """Answering BOB reads BOB's DMs below the answer; a DM below it from a third person,
    or from someone not recorded (a document from before senders were kept), holds it."""
    state = ReadState(seq=5, count=2).with_dm(6, BOB).with_dm(7, BOB)
    assert state.dm_from == ((6, BOB), (7, BOB))
    answered = state.after_own(9, 2, to=BOB)
    assert (answered.seq, answered.dms, answered.dm_from) == (9, (), ())
    third = state.with_dm(8, CAROL)
    assert third.after_own(9, 2, to=BOB) == third
    unknown = ReadState(seq=5, count=2, dms=(6,), mentions=(6,))
    assert unknown.after_own(9, 2, to=BOB) == unknown
    assert state.without(6).dm_from == ((7, BOB),)


def test_read_state_round_trips_through_its_document_with_own_messages() -> None:
    """``own`` and ``dm_from`` are stored and read back; a document written before them reads
    as none."""
    state = ReadState(seq=5, count=2, dms=(7,), mentions=(7,), own=(9,), dm_from=((7, BOB),))
    doc = {
        "seq": 5,
        "n": 2,
        "dms": [7],
        "mentions": [7],
        "own": [9],
        "dm_from": [{"seq": 7, "from": BOB}],
    }
    assert read_from_doc(doc) == state
    del doc["own"], doc["dm_from"]
    assert (read_from_doc(doc).own, read_from_doc(doc).dm_from) == ((), ())


def test_a_thousand_own_posts_over_an_unread_dm_move_the_position_after_all() -> None:
    """``own`` is bounded: once it holds MARKS_MAX messages, the next own team message moves
    the position (the DM is then read) rather than let the member's own messages count."""
    state = ReadState(seq=5, count=2, dms=(6,), mentions=(6,))
    for i in range(MARKS_MAX):
        state = state.after_own(10 + i, 3 + i, to=None)
    assert (state.seq, len(state.own)) == (5, MARKS_MAX)
    moved = state.after_own(10 + MARKS_MAX, 3 + MARKS_MAX, to=None)
    assert (moved.seq, moved.own, moved.dms) == (10 + MARKS_MAX, (), ())


def test_an_own_dm_passes_a_deleted_team_message_from_someone_else() -> None:
    """A team message deleted since (the head's mark) is not unread: it does not hold the
    position below one's own DM; deletions below the position or above the DM change nothing."""
    state = ReadState(seq=5, count=2)
    assert state.after_own(9, 3, to=BOB) == state  # Bob's team message at 7, unread
    assert state.after_own(9, 3, to=BOB, deleted=(DeletedMark(7, CAROL),)).seq == 9
    elsewhere = (DeletedMark(4, CAROL), DeletedMark(12, CAROL))
    assert state.after_own(9, 3, to=BOB, deleted=elsewhere) == state
