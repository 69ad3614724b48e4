"""The controller's life-cycle pass over in-memory stores: changes, threads and read state are
applied once, in the channel's order, and fanned out to the right sockets (DESIGN 5b)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from chatcore.proto.chat.v1 import chat_pb2
from chatcore.unread import ChannelHead, ReadState, unread
from services.controller.batch import Outcome
from services.controller.metrics import ControllerMetrics
from tests.unit.controller_fakes import (
    FakeKafkaRecord,
    Processing,
    as_record,
    change_record,
    chat_message,
    make_processor,
    message_record,
    read_record,
)
from tests.unit.controller_fakes import (
    FakeKafkaRecord as _Record,
)

T = "t" * 32
A, B, C = "a" * 32, "b" * 32, "c" * 32
EDIT, DELETE = chat_pb2.CHANGE_KIND_EDIT, chat_pb2.CHANGE_KIND_DELETE
ADD, REMOVE = chat_pb2.CHANGE_KIND_REACTION_ADD, chat_pb2.CHANGE_KIND_REACTION_REMOVE


def _setup() -> Processing:
    processing = make_processor(ControllerMetrics.create(CollectorRegistry()), bucket_size=4)
    processing.members.members.update({(T, A), (T, B), (T, C)})
    return processing


async def _run(p: Processing, records: list[FakeKafkaRecord]) -> Outcome:
    return await p.processor.persist(p.processor.prepare([as_record(r) for r in records]))


def _kinds(outcome: Outcome) -> list[str]:
    return [str(r.delivery.WhichOneof("payload")) for r in outcome.routed]


def _updates(outcome: Outcome) -> list[chat_pb2.MessageUpdate]:
    return [r.delivery.update for r in outcome.routed if r.delivery.HasField("update")]


def _msg(offset: int, msg_id: str, **kw: str) -> _Record:
    return message_record(chat_message(T, msg_id=msg_id, **kw), offset=offset)


def _doc(p: Processing, msg_id: str) -> dict[str, object]:
    return next(d for d in p.store.docs if d["id"] == msg_id)


async def test_an_edit_is_stored_as_a_change_and_fanned_out_after_its_message() -> None:
    """A message and its edit in one batch: stored, the change document written, and the update
    follows the message in the fan-out with the new text and edited_ts."""
    p = _setup()
    outcome = await _run(
        p, [_msg(10, "m1", sender=A), change_record(T, "m1", EDIT, offset=11, actor=A, data="v2")]
    )
    assert _kinds(outcome) == ["message", "update"]
    update = _updates(outcome)[0]
    assert (update.seq, update.change) == (11, "edited")
    assert update.message.message.data == "v2"
    assert update.message.edited_ts_ms == 1_700_000_060_000
    assert _doc(p, "m1")["data"] == "v2"
    assert list(p.states.changes) == [f"{T}:11:edited"]


async def test_a_change_consumed_twice_is_applied_once_and_fanned_out_again() -> None:
    """Redelivery after a crash: the reaction is not added twice, the update goes out again."""
    p = _setup()
    await _run(p, [_msg(10, "m1", sender=A)])
    react = change_record(T, "m1", ADD, offset=11, actor=B, emoji="👍")
    first = await _run(p, [react])
    again = await _run(p, [react])
    for outcome in (first, again):
        (update,) = _updates(outcome)
        assert [(r.emoji, r.count, list(r.users)) for r in update.message.reactions] == [
            ("👍", 1, [B])
        ]
    assert _doc(p, "m1")["reactions"] == [{"emoji": "👍", "users": [B]}]


async def test_a_change_that_no_longer_applies_is_dropped_and_not_fanned_out() -> None:
    """An edit after a delete is neither stored nor delivered."""
    p = _setup()
    outcome = await _run(
        p,
        [
            _msg(10, "m1", sender=A),
            change_record(T, "m1", DELETE, offset=11, actor=A),
            change_record(T, "m1", EDIT, offset=12, actor=A, data="too late"),
        ],
    )
    assert [u.change for u in _updates(outcome)] == ["deleted"]
    doc = _doc(p, "m1")
    assert (doc["data"], doc["deleted"]) == ("", True)
    assert sorted(p.states.changes) == [f"{T}:11:deleted"]


async def test_a_dm_change_goes_to_the_dm_s_two_people_only() -> None:
    """The update carries the DM's to and from, which is what the relay routes by."""
    p = _setup()
    outcome = await _run(
        p,
        [
            _msg(10, "d1", sender=A, to=B),
            change_record(T, "d1", ADD, offset=11, actor=B, emoji=":ok:"),
        ],
    )
    (update,) = _updates(outcome)
    assert (update.message.message.to, update.message.message.sender) == (B, A)


async def test_a_reply_bumps_its_root_s_thread_at_the_reply_s_seq_once() -> None:
    """The root's thread summary counts each stored reply once, even when the reply's batch is
    consumed again."""
    p = _setup()
    await _run(p, [_msg(10, "root", sender=A)])
    reply = chat_message(T, msg_id="r1", sender=B)
    reply.thread_id = "root"
    batch = [message_record(reply, offset=11)]
    first = await _run(p, batch)
    again = await _run(p, batch)
    assert _kinds(first) == ["message", "update"]
    (update,) = _updates(first)
    assert (update.seq, update.change, update.message.thread.replies) == (11, "thread", 1)
    assert _updates(again)[0].message.thread.replies == 1
    assert _doc(p, "root")["thread"] == {"replies": 1, "last_reply_ts": _doc(p, "r1")["ts"]}


async def test_a_deleted_reply_is_taken_off_its_root_s_thread_once() -> None:
    """Deleting a reply updates the reply, then its root with one reply fewer at the delete's
    seq; the delete consumed again takes nothing more off; the last reply gone leaves none."""
    p = _setup()
    await _run(p, [_msg(10, "root", sender=A)])
    replies = []
    for offset, msg_id in ((11, "r1"), (12, "r2")):
        reply = chat_message(T, msg_id=msg_id, sender=B)
        reply.thread_id = "root"
        replies.append(message_record(reply, offset=offset))
    await _run(p, replies)
    delete = [change_record(T, "r1", DELETE, offset=13, actor=B)]
    first = await _run(p, delete)
    again = await _run(p, delete)
    for outcome in (first, again):
        assert [(u.seq, u.change) for u in _updates(outcome)] == [(13, "deleted"), (13, "thread")]
        assert _updates(outcome)[1].message.thread.replies == 1
    assert _doc(p, "root")["thread"] == {"replies": 1, "last_reply_ts": _doc(p, "r2")["ts"]}
    assert f"{T}:13:thread" in p.states.changes
    last = await _run(p, [change_record(T, "r2", DELETE, offset=14, actor=A)])
    assert _updates(last)[1].message.thread.replies == 0
    assert not _doc(p, "root").get("thread")


async def test_unread_counts_others_messages_dms_and_mentions_and_skips_own() -> None:
    """Three team messages (one mentions C), a DM to C and C's own message: C's read position
    moves to their own message, so only what came after counts."""
    p = _setup()
    await _run(
        p,
        [
            _msg(10, "m1", sender=A),
            _msg(11, "m2", sender=C),  # C posts: C has read up to here
            _msg(12, "m3", sender=A, text=f"hey <@{C}>"),
            _msg(13, "d1", sender=B, to=C),
            _msg(14, "m4", sender=B),
        ],
    )
    head = p.heads.counters[T]
    read = p.reads.states[(T, C)]
    assert (head.count, read.seq, read.count) == (4, 11, 2)
    assert unread(head, read, C).count == 3  # m3, d1, m4
    assert unread(head, read, C).mentions == 2  # m3 names C, d1 is a DM to C
    assert (T, A) in p.reads.states  # A's own messages moved A's position too


async def test_posting_in_the_team_conversation_leaves_an_unread_dm_unread() -> None:
    """A DM to C, then team messages and C's own team message: the DM stays unread (and a
    mention), the position stays below it, and C's own message does not count; C's DM to A
    then passes nothing unread of the team either. Consumed again, the same."""
    p = _setup()
    batch = [
        _msg(10, "m1", sender=A),
        _msg(11, "d1", sender=B, to=C),
        _msg(12, "m2", sender=A),
        _msg(13, "m3", sender=C),  # C writes in the team conversation, the DM not opened
    ]
    await _run(p, batch)
    head, read = p.heads.counters[T], p.reads.states[(T, C)]
    assert (unread(head, read, C).count, unread(head, read, C).mentions) == (3, 1)
    assert read.seq < 11
    await _run(p, batch)
    assert unread(p.heads.counters[T], p.reads.states[(T, C)], C).count == 3
    await _run(p, [_msg(14, "d2", sender=C, to=A)])  # C answers someone else's DM
    head, read = p.heads.counters[T], p.reads.states[(T, C)]
    assert unread(head, read, C).count == 3
    await _run(p, [_msg(15, "m4", sender=B)])
    assert unread(p.heads.counters[T], p.reads.states[(T, C)], C).count == 4


async def test_an_edit_recounts_mentions_by_its_new_text_for_members_who_have_not_read_it() -> None:
    """A mention edited out is no longer counted, one edited in counts for a member who has not
    read the message yet, and not for one who has, nor for someone outside the team; a delete
    then takes back what the last edit left."""
    p = _setup()
    d = "d" * 32  # not a member
    await _run(p, [_msg(10, "m1", sender=A, text=f"ping <@{C}>")])

    def head() -> ChannelHead:
        return p.heads.counters[T]

    def mentions(user: str) -> int:
        return unread(head(), p.reads.states.get((T, user), ReadState()), user).mentions

    assert (mentions(B), mentions(C)) == (0, 1)

    await _run(p, [change_record(T, "m1", EDIT, offset=11, actor=A, data="never mind")])
    assert (mentions(B), mentions(C)) == (0, 0)
    assert unread(head(), p.reads.states[(T, C)], C).count == 1  # still unread, not a mention

    await _run(p, [read_record(T, C, 10, 1, offset=12)])  # C reads m1
    edit = f"now <@{B}>, <@{C}> and <@{d}>"
    await _run(p, [change_record(T, "m1", EDIT, offset=13, actor=A, data=edit)])
    assert (mentions(B), mentions(C)) == (1, 0)
    assert (T, d) not in p.reads.states
    assert _doc(p, "m1")["mentions"] == [B, C, d]
    assert _doc(p, "m1")["unmentioned"] == []  # C, dropped by the first edit, is named again

    # Dropping C and the outsider: only C, whose mention counted, is kept as taken away.
    await _run(p, [change_record(T, "m1", EDIT, offset=14, actor=A, data=f"only <@{B}>")])
    assert (mentions(B), mentions(C)) == (1, 0)
    assert _doc(p, "m1")["unmentioned"] == [C]

    await _run(p, [change_record(T, "m1", DELETE, offset=15, actor=A)])
    assert (mentions(B), mentions(C)) == (0, 0)
    assert unread(head(), p.reads.states[(T, B)], B).count == 0


async def test_the_first_record_of_a_partition_counts_like_any_other() -> None:
    """Offset 0 is a real seq: a team message there is counted and moves its sender's position
    to 0; a DM there is unread and a mention for its recipient, who can then read it."""
    p = _setup()
    await _run(p, [_msg(0, "m0", sender=A)])
    head = p.heads.counters[T]
    assert (head.count, head.count_seq, head.last_seq) == (1, 0, 0)
    assert p.reads.states[(T, A)] == ReadState(seq=0, count=1)
    assert unread(head, ReadState(), B).count == 1
    assert unread(head, p.reads.states[(T, A)], A).count == 0

    dm = _setup()
    await _run(dm, [_msg(0, "d0", sender=A, to=B)])
    read = dm.reads.states[(T, B)]
    assert (read.dms, read.mentions) == ((0,), (0,))
    assert unread(dm.heads.counters[T], read, B).count == 1
    outcome = await _run(dm, [read_record(T, B, 0, 0, offset=1)])
    assert _kinds(outcome) == ["read"]
    assert dm.reads.states[(T, B)] == ReadState(seq=0, count=0)
    assert unread(dm.heads.counters[T], dm.reads.states[(T, B)], B).count == 0


async def test_a_read_marker_moves_the_position_forward_and_tells_the_member_s_sockets() -> None:
    """A marker below the position changes nothing; a joined marker is not announced."""
    p = _setup()
    await _run(p, [_msg(10, "m1", sender=A), _msg(11, "d1", sender=A, to=B)])
    outcome = await _run(p, [read_record(T, B, 11, 1, offset=12)])
    assert _kinds(outcome) == ["read"]
    assert (outcome.routed[0].delivery.read.user_id, outcome.routed[0].delivery.read.seq) == (B, 11)
    assert p.reads.states[(T, B)] == ReadState(seq=11, count=1)
    await _run(p, [read_record(T, B, 5, 0, offset=13)])
    assert p.reads.states[(T, B)].seq == 11
    joined = await _run(p, [read_record(T, C, 11, 1, offset=14, joined=True)])
    assert _kinds(joined) == []
    assert p.reads.states[(T, C)].seq == 11


async def test_deleting_messages_takes_them_out_of_every_count() -> None:
    """A deleted team message no longer counts as unread; a deleted DM no longer counts as
    unread or as a mention."""
    p = _setup()
    await _run(
        p,
        [
            _msg(10, "m0", sender=C),
            _msg(11, "m1", sender=A),
            _msg(12, "d1", sender=A, to=C),
            change_record(T, "m1", DELETE, offset=13, actor=A),
            change_record(T, "d1", DELETE, offset=14, actor=A),
        ],
    )
    head, read = p.heads.counters[T], p.reads.states[(T, C)]
    assert unread(head, read, C).count == 0
    assert unread(head, read, C).mentions == 0
    assert head == ChannelHead(count=2, count_seq=11, last_seq=14, deleted=head.deleted)
    assert [d.seq for d in head.deleted] == [11]


async def test_unknown_record_kinds_are_dead_lettered_and_the_batch_goes_on() -> None:
    """A record kind this controller does not know goes to the DLQ; the rest is processed."""
    p = _setup()
    odd = FakeKafkaRecord("chat.messages.v1", 0, 11, T.encode(), b"x", (("kind", b"poll"),))
    outcome = await _run(p, [_msg(10, "m1", sender=A), odd])
    assert outcome.dead_letters == 1
    assert _kinds(outcome) == ["message"]


async def test_read_states_are_looked_up_once_until_partitions_move() -> None:
    """The owning controller reads a member's read state once and then uses what it wrote;
    after its partitions move it reads again, and a state written elsewhere meanwhile counts."""
    p = _setup()
    await _run(p, [_msg(10, "d1", sender=A, to=B)])
    assert sorted(p.reads.loaded) == [(T, A), (T, B)]
    await _run(p, [_msg(11, "d2", sender=A, to=B), _msg(12, "d3", sender=B, to=A)])
    assert len(p.reads.loaded) == 2  # both held since the first batch
    assert p.reads.states[(T, B)].seq == 12
    p.reads.states[(T, B)] = ReadState(seq=20, count=0)  # another owner, after a move
    p.processor.partitions_moved()
    await _run(p, [_msg(21, "d4", sender=A, to=B)])
    assert sorted(p.reads.loaded[2:]) == [(T, A), (T, B)]
    assert p.reads.states[(T, B)].seq == 20  # kept the other owner's position
    assert p.reads.states[(T, B)].dms == (21,)


async def test_a_taken_over_channel_counts_on_from_its_stored_head_without_a_lookup() -> None:
    """After partitions move, a channel's counters come from its bucket reservation (no head
    query of their own) and its next team message counts on from the other owner's count."""
    p = _setup()
    await _run(p, [_msg(10, "m1", sender=A), _msg(11, "m2", sender=B)])
    assert p.heads.lookups == []  # a new channel's head came with its first reservation
    p.heads.counters[T] = ChannelHead(count=7, count_seq=30, last_seq=30)  # the other owner
    p.processor.partitions_moved()
    await _run(p, [_msg(31, "m3", sender=A)])
    assert p.heads.lookups == []
    assert p.heads.counters[T] == ChannelHead(count=8, count_seq=31, last_seq=31)
    assert _doc(p, "m3")["n"] == 8


async def test_a_head_waiting_to_be_written_wins_over_the_one_a_reservation_reads() -> None:
    """A head held by the write-behind buffer is newer than the stored one: after partitions
    move (the buffer kept), counting goes on from it, not from the stale stored document."""
    p = make_processor(ControllerMetrics.create(CollectorRegistry()), bucket_size=4, held=True)
    assert p.held is not None
    await _run(p, [_msg(10, "m1", sender=A), _msg(11, "m2", sender=B)])
    assert p.heads.counters == {}  # still held, not flushed
    p.processor.partitions_moved()
    await _run(p, [_msg(12, "m3", sender=A)])
    assert _doc(p, "m3")["n"] == 3
    await p.held.flush()
    assert p.heads.counters[T].count == 3
    assert p.heads.lookups == []


async def test_an_own_dm_is_not_held_by_a_team_message_deleted_since() -> None:
    """C has read nothing; B's team message, deleted since, is not unread to C, so C's DM to A
    moves C's position to it."""
    p = _setup()
    batch = [
        _msg(10, "m1", sender=B),
        change_record(T, "m1", DELETE, offset=11, actor=B),
        _msg(12, "d1", sender=C, to=A),
    ]
    await _run(p, batch)
    read = p.reads.states[(T, C)]
    assert read.seq == 12
    assert unread(p.heads.counters[T], read, C).count == 0
