"""History paging over an in-memory message store: visibility, order, cursors, has_more."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from chatcore.errors import NotFound
from chatcore.message_state import StoredMessage
from services.management.history import HistoryService
from services.management.model import Team
from services.management.validation import HistoryQuery
from tests.unit.management_fakes import MemoryMessageStore, MemoryTeamStore

T = "a" * 32
S, U, V, X = (c * 32 for c in "1234")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _message(seq: int) -> StoredMessage:
    # Every third message is a DM: S->U, U->V, V->S in turn.
    if seq % 3:
        to, sender = "*", (S, U, V)[seq % 3]
    else:
        sender, to = ((S, U), (U, V), (V, S))[(seq // 3) % 3]
    return StoredMessage(
        f"m{seq}", seq, T, to, "text", f"hello {seq}", sender, T0 + timedelta(seconds=seq)
    )


def _history(walk_span: int | None = None) -> HistoryService:
    teams = MemoryTeamStore()
    teams.teams[T] = Team(T, "t", "", True, (), (S, U, V), (S,), S, T0)
    messages = MemoryMessageStore([_message(i) for i in range(1, 101)])
    messages.walk_span = walk_span
    return HistoryService(teams=teams, messages=messages)


@pytest.fixture
async def history() -> HistoryService:
    """A team of S, U, V with 100 messages (seq 1..100), a third of them DMs."""
    return _history()


def _visible(user: str) -> list[int]:
    return [m.seq for m in map(_message, range(1, 101)) if m.to == "*" or user in (m.to, m.sender)]


async def _walk_forward(history: HistoryService, user: str, limit: int) -> list[int]:
    seen: list[int] = []
    cursor = 0
    while True:
        page = await history.page(T, HistoryQuery(None, cursor, limit), caller=user)
        seen += [m.seq for m in page.messages]
        assert page.direction == "forward"
        cursor = page.next_cursor if page.next_cursor is not None else cursor
        if not page.has_more:
            return seen


async def _walk_backward(history: HistoryService, user: str, limit: int) -> list[int]:
    seen: list[int] = []
    before: int | None = None
    while True:
        page = await history.page(T, HistoryQuery(before, None, limit), caller=user)
        seqs = [m.seq for m in page.messages]
        assert seqs == sorted(seqs), "every page is ascending"
        seen = seqs + seen
        if not page.has_more:
            return seen
        before = page.next_cursor


@pytest.mark.parametrize("user", [S, U, V])
@pytest.mark.parametrize("limit", [1, 7, 50, 200])
async def test_walks_see_exactly_the_visible_set(
    history: HistoryService, user: str, limit: int
) -> None:
    """Forward and backward walks each yield the user's visible messages once, in order."""
    assert await _walk_forward(history, user, limit) == _visible(user)
    assert await _walk_backward(history, user, limit) == _visible(user)


@pytest.mark.parametrize("span", [1, 2, 5])
@pytest.mark.parametrize("user", [S, U, V])
async def test_walks_stopped_by_their_bound_go_on_from_where_they_stopped(
    user: str, span: int
) -> None:
    """A store that reads only a few records per request gives short pages, even empty ones,
    that say there is more and where it goes on; both walks still yield the visible set once."""
    history = _history(walk_span=span)
    assert await _walk_forward(history, user, 50) == _visible(user)
    assert await _walk_backward(history, user, 50) == _visible(user)
    first = await history.page(T, HistoryQuery(None, 0, 50), caller=user)
    assert len(first.messages) <= span
    assert first.has_more
    assert first.next_cursor == span  # the last record read, seen by the caller or not
    latest = await history.page(T, HistoryQuery(None, None, 50), caller=user)
    assert latest.has_more
    assert latest.next_cursor == 101 - span


async def test_latest_page_and_meta(history: HistoryService) -> None:
    """No cursor gives the newest page, ascending, with the cursor to go further back."""
    page = await history.page(T, HistoryQuery(None, None, 5), caller=S)
    assert [m.seq for m in page.messages] == _visible(S)[-5:]
    assert page.meta() == {
        "direction": "backward",
        "has_more": True,
        "next_cursor": page.messages[0].seq,
        "count": 5,
    }


async def test_resume_after_the_last_seq_is_empty_and_keeps_the_cursor(
    history: HistoryService,
) -> None:
    """after=<last seq> returns nothing more, and the cursor stays put for the next poll."""
    page = await history.page(T, HistoryQuery(None, 100, 50), caller=U)
    assert (page.messages, page.has_more, page.next_cursor) == ((), False, 100)


async def test_non_members_get_404(history: HistoryService) -> None:
    """A stranger reading a team's history is told the team does not exist."""
    with pytest.raises(NotFound):
        await history.page(T, HistoryQuery(None, None, 50), caller=X)
    with pytest.raises(NotFound):
        await history.page("b" * 32, HistoryQuery(None, None, 50), caller=S)


def test_message_json_has_exactly_the_contract_fields() -> None:
    """A message serializes to the contract's fields (DESIGN 5 and 5b), ts in ISO-8601 UTC ms;
    ``thread`` appears only on a thread root."""
    out = _message(3).public()
    assert list(out) == [
        "id",
        "seq",
        "channel_id",
        "to",
        "type",
        "data",
        "from",
        "ts",
        "thread_id",
        "edited_ts",
        "deleted",
        "reactions",
    ]
    assert out["ts"] == "2026-01-01T00:00:03.000Z"
    assert out["from"] == _message(3).sender
