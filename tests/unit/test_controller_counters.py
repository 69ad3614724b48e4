"""Counting a batch's team messages per channel: each record's ``n`` and the channel heads."""

from __future__ import annotations

from chatcore.unread import ChannelHead, DeletedMark
from services.controller.counters import Counted, count_batch


def _team(index: int, channel: str, seq: int) -> Counted:
    return Counted(index, channel, seq, team_message=True, message=True)


def _dm(index: int, channel: str, seq: int) -> Counted:
    return Counted(index, channel, seq, team_message=False, message=True)


def _change(index: int, channel: str, seq: int) -> Counted:
    return Counted(index, channel, seq, team_message=False, message=False)


BATCH = [
    _team(0, "a", 10),
    _team(1, "b", 3),
    _team(2, "a", 11),
    _dm(3, "a", 12),
    _change(4, "a", 13),
    _team(5, "a", 14),
    _change(6, "b", 4),
]


def test_team_messages_are_counted_per_channel_in_order() -> None:
    """Each team message gets its channel's count up to and including it; channels count
    separately."""
    numbers, heads = count_batch(BATCH, {})
    assert numbers[0] == 1
    assert numbers[2] == 2
    assert numbers[5] == 3
    assert numbers[1] == 1
    assert heads["a"] == ChannelHead(count=3, count_seq=14, last_seq=14)
    assert heads["b"] == ChannelHead(count=1, count_seq=3, last_seq=4)


def test_dms_and_changes_get_the_current_count_without_counting() -> None:
    """A DM or a change is numbered with the count so far and adds nothing to it."""
    numbers, _ = count_batch(BATCH, {})
    assert numbers[3] == 2
    assert numbers[4] == 2
    assert numbers[6] == 1
    assert set(numbers) == {r.index for r in BATCH}


def test_counting_continues_from_the_saved_head() -> None:
    """A channel's count goes on from its head; the head's deleted marks are kept."""
    mark = DeletedMark(5, "u" * 32)
    head = ChannelHead(count=40, count_seq=9, last_seq=9, deleted=(mark,))
    numbers, heads = count_batch(BATCH, {"a": head})
    assert [numbers[i] for i in (0, 2, 3, 4, 5)] == [41, 42, 42, 42, 43]
    assert heads["a"] == ChannelHead(count=43, count_seq=14, last_seq=14, deleted=(mark,))


def test_the_heads_given_are_not_changed() -> None:
    """The heads passed in stay as they were (a retried batch starts from them again)."""
    given = {"a": ChannelHead(count=2, count_seq=5, last_seq=5)}
    count_batch(BATCH, given)
    assert given == {"a": ChannelHead(count=2, count_seq=5, last_seq=5)}


def test_a_record_redelivered_after_the_head_was_saved_is_not_counted_again() -> None:
    """Team messages at or below ``count_seq`` leave the count alone; newer ones continue it."""
    _, saved = count_batch(BATCH[:3], {})
    assert saved["a"].count == 2
    numbers, heads = count_batch(BATCH, saved)
    assert heads["a"].count == 3
    assert heads["a"].count_seq == 14
    assert numbers[5] == 3
    assert heads["b"].count == 1
    # The whole batch again, after its head was saved: nothing counts twice.
    _, again = count_batch(BATCH, heads)
    assert again == heads


def test_a_redelivery_before_the_head_was_saved_gets_the_same_numbers() -> None:
    """Counting the same records from the same heads again numbers them identically."""
    start = {"a": ChannelHead(count=7, count_seq=9, last_seq=9)}
    first = count_batch(BATCH, start)
    assert count_batch(BATCH, start) == first


def test_an_excluded_message_takes_no_number() -> None:
    """A message left out (not stored here) is not counted: the next team message gets the number
    it would have taken, and the head counts only the others."""
    numbers, heads = count_batch(BATCH, {}, excluded={2})
    assert numbers[0] == 1
    assert numbers[5] == 2
    assert heads["a"].count == 2
    assert heads["a"].count_seq == 14


def test_last_seq_tracks_the_highest_seq_of_any_record() -> None:
    """DMs and changes move ``last_seq`` too, and it never goes back."""
    head = ChannelHead(count=1, count_seq=5, last_seq=50)
    _, heads = count_batch([_team(0, "a", 51), _dm(1, "a", 52), _change(2, "a", 53)], {"a": head})
    assert heads["a"] == ChannelHead(count=2, count_seq=51, last_seq=53)
    _, heads = count_batch([_dm(0, "c", 8)], {"c": ChannelHead(last_seq=20)})
    assert heads["c"].last_seq == 20


def test_an_empty_batch_changes_nothing() -> None:
    """No records: no numbers, the heads as given."""
    head = {"a": ChannelHead(count=3, count_seq=9, last_seq=9)}
    assert count_batch([], head) == ({}, head)


def test_a_team_message_at_seq_0_is_counted() -> None:
    """The first record of a partition (offset 0) is a message like any other: it is counted
    in a new channel, and a redelivery of it after the head was saved is not counted again."""
    numbers, heads = count_batch([_team(0, "a", 0), _team(1, "a", 1)], {})
    assert (numbers[0], numbers[1]) == (1, 2)
    assert heads["a"] == ChannelHead(count=2, count_seq=1, last_seq=1)
    saved = ChannelHead(count=1, count_seq=0, last_seq=0)
    numbers, heads = count_batch([_team(0, "a", 0)], {"a": saved})
    assert numbers[0] == 1
    assert heads["a"] == saved
