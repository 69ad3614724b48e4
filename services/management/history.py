"""StoredMessage history pages: what a member may read of their team's channel, in seq order.

Visible to a member: team messages (``to == "*"``) and DMs they sent or received. Pages are always
returned ascending by ``seq``; the cursor says where the next page starts:

* ``after=<seq>`` walks forward (a reconnecting client resumes here); ``next_cursor`` is the last
  seq of the page, to pass as the next ``after``.
* ``before=<seq>``, or no cursor (the latest page), walks backward; ``next_cursor`` is the first
  seq of the page, to pass as the next ``before``.

``has_more`` says whether another visible message exists beyond the page in its direction; one
extra message is fetched to know it without a count. A page reads a bounded part of the channel
(``MessageStore.page``): when that ends before the page is full, ``has_more`` is true and
``next_cursor`` is where the part read ends, so a page can be short, even empty, with more beyond.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatcore.message_state import StoredMessage
from services.management import roles
from services.management.store import MessageStore, TeamStore
from services.management.validation import HistoryQuery


@dataclass(frozen=True, slots=True)
class HistoryPage:
    messages: tuple[StoredMessage, ...]
    direction: str  # "forward" (after=) or "backward" (before= or latest)
    has_more: bool
    next_cursor: int | None

    def meta(self) -> dict[str, object]:
        """The ``meta`` object of the response."""
        return {
            "direction": self.direction,
            "has_more": self.has_more,
            "next_cursor": self.next_cursor,
            "count": len(self.messages),
        }


class HistoryService:
    def __init__(self, *, teams: TeamStore, messages: MessageStore) -> None:
        self._teams = teams
        self._messages = messages

    async def page(self, team_id: str, query: HistoryQuery, *, caller: str) -> HistoryPage:
        """One page of the caller's visible history of a team (404 for non-members)."""
        roles.member_team(await self._teams.get(team_id), caller)
        walk = await self._messages.page(
            team_id, caller, before=query.before, after=query.after, limit=query.limit + 1
        )
        # A walk stopped by its bound found fewer than the page: nothing is cut off then.
        resume_at = walk.resume_at
        has_more = len(walk.found) > query.limit or resume_at is not None
        found = walk.found[: query.limit]
        if query.after is not None:
            # An empty forward page keeps the client's cursor: polling resumes where it was.
            cursor = found[-1].seq if found else query.after
            if resume_at is not None:
                cursor = resume_at
            return HistoryPage(tuple(found), "forward", has_more, cursor)
        found.reverse()
        if resume_at is not None:
            return HistoryPage(tuple(found), "backward", has_more, resume_at)
        return HistoryPage(tuple(found), "backward", has_more, found[0].seq if found else None)
