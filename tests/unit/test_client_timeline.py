"""The client's timeline: the cursor rule, buffered live frames during a resume, dedupe, and
changes (update frames and the changes feed) applied once, in order."""

from __future__ import annotations

from typing import Any

from chatclient.timeline import Entry, Timeline, is_message

TEAM = "t" * 32


def _m(seq: int, mid: str | None = None, kind: str = "text") -> dict[str, Any]:
    return {"id": mid or f"m{seq}", "seq": seq, "channel_id": TEAM, "type": kind, "data": "x"}


def _msgs(entries: list[Entry]) -> list[Any]:
    return [e.message for e in entries]


def _update(seq: int, message: dict[str, Any], change: str = "edited") -> dict[str, Any]:
    return {"type": "update", "seq": seq, "channel_id": TEAM, "change": change, "message": message}


def test_live_messages_move_the_cursor_and_control_frames_do_not() -> None:
    """Message frames set the cursor; ack, typing, membership and unknown frames never do."""
    timeline = Timeline()
    assert _msgs(timeline.live(_m(5))) == [_m(5)]
    for frame in (
        {"type": "ack", "seq": 99, "id": "a"},
        {"type": "typing", "channel_id": TEAM},
        {"type": "whatever-new", "channel_id": TEAM, "seq": 100},
        {"type": "read", "channel_id": TEAM, "seq": 100},
    ):
        assert timeline.live(frame) == []
    assert timeline.cursor(TEAM) == 5
    assert is_message(_m(1, kind="image"))
    assert not is_message({"type": "resync"})


def test_a_message_seen_twice_is_applied_once() -> None:
    """A redelivered message (same id) is not shown again."""
    timeline = Timeline()
    assert _msgs(timeline.live(_m(1))) == [_m(1)]
    assert timeline.live(_m(1)) == []
    assert _msgs(timeline.apply_page(TEAM, [_m(1), _m(2)])) == [_m(2)]
    assert [m["seq"] for m in timeline.messages(TEAM)] == [1, 2]


def test_live_frames_during_a_resume_wait_and_the_cursor_moves_only_with_pages() -> None:
    """While paging, live frames are buffered; the cursor follows the pages, then the buffer."""
    timeline = Timeline()
    timeline.live(_m(1))
    assert timeline.begin_resume(TEAM) == 1
    assert timeline.live(_m(9)) == []  # arrived live while the resume pages
    assert timeline.cursor(TEAM) == 1
    assert _msgs(timeline.apply_page(TEAM, [_m(3), _m(5)])) == [_m(3), _m(5)]
    assert timeline.cursor(TEAM) == 5
    assert _msgs(timeline.apply_page(TEAM, [_m(7), _m(9)])) == [_m(7), _m(9)]
    assert timeline.end_resume(TEAM) == []  # 9 came in the page too: deduped
    assert [m["seq"] for m in timeline.messages(TEAM)] == [1, 3, 5, 7, 9]
    assert timeline.cursor(TEAM) == 9


def test_a_failed_resume_keeps_its_buffer_for_the_retry() -> None:
    """Starting again before finishing keeps what was buffered and the unmoved cursor."""
    timeline = Timeline()
    timeline.live(_m(1))
    timeline.begin_resume(TEAM)
    timeline.live(_m(8))
    assert timeline.begin_resume(TEAM) == 1  # the first attempt failed; the cursor did not move
    timeline.apply_page(TEAM, [_m(4)])
    assert _msgs(timeline.end_resume(TEAM)) == [_m(8)]
    assert [m["seq"] for m in timeline.messages(TEAM)] == [1, 4, 8]


def test_update_frames_move_the_cursor_and_replace_the_message_once() -> None:
    """An update replaces the held message and moves the cursor; the same update again is
    ignored; a thread change at its reply's seq applies after the reply."""
    timeline = Timeline()
    timeline.live(_m(1))
    edited = {**_m(1), "data": "v2", "edited_ts": "2026-01-01T00:00:01.000Z"}
    assert _msgs(timeline.live(_update(4, edited))) == [edited]
    assert timeline.live(_update(4, edited)) == []
    assert timeline.cursor(TEAM) == 4
    reply = {**_m(6, "r"), "thread_id": "m1"}
    timeline.live(reply)
    root = {**edited, "thread": {"replies": 1, "last_reply_ts": None}}
    assert _msgs(timeline.live(_update(6, root, "thread"))) == [root]
    assert timeline.message(TEAM, "m1") == root
    assert timeline.cursor(TEAM) == 6


def test_a_resume_through_the_changes_feed_ends_at_the_same_view_as_live() -> None:
    """Changes paged after the cursor are applied in order; an older state in an overlapping
    page never replaces a newer one held; buffered live updates are deduped."""
    timeline = Timeline()
    timeline.live(_m(1))
    timeline.begin_resume(TEAM)
    deleted = {**_m(1), "data": "", "deleted": True}
    timeline.live(_update(5, deleted, "deleted"))  # live while paging: buffered
    page = [
        {"seq": 2, "change": "created", "message": _m(2)},
        {"seq": 3, "change": "edited", "message": {**_m(1), "data": "v2"}},
        {"seq": 5, "change": "deleted", "message": deleted},
    ]
    assert [e.seq for e in timeline.apply_changes(TEAM, page)] == [2, 3, 5]
    assert timeline.end_resume(TEAM) == []
    assert timeline.message(TEAM, "m1") == deleted
    assert timeline.apply_changes(TEAM, [{"seq": 3, "change": "edited", "message": _m(1)}]) == []
    assert timeline.message(TEAM, "m1") == deleted
    assert timeline.cursor(TEAM) == 5
