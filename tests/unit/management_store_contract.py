"""The contract of the management service's stores, written once for every implementation.

``StoreContract`` holds the tests; a test module subclasses it and supplies a ``backend`` fixture:
tests/unit/test_management_store_contract.py runs it over the in-memory fakes, and
tests/integration/test_management_store_contract.py over the MongoDB stores against the stack's
FerretDB. A fake that drifts from the database fails here first. This module holds no tests of
its own (pytest collects only the subclasses).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from chatcore.errors import Conflict
from chatcore.memberships import MembershipEntry
from chatcore.message_state import Reaction, StoredMessage
from chatcore.schema import PENDING, READY, REJECTED
from services.management.attachment_store import Attachment, AttachmentStore
from services.management.membership_index import MembershipIndex
from services.management.model import MembershipChange, OutboxEvent, Team, TeamChanges
from services.management.store import Carrier, ChangeEntry, MessageStore, TeamStore

S, A, U, V, X = (c * 32 for c in "12345")  # super_admin, admin, user, another user, stranger
T0 = datetime(2026, 3, 1, 12, 0, 0, 123000, tzinfo=UTC)
ADDED, REMOVED = MembershipChange.ADDED, MembershipChange.REMOVED
DEACTIVATED = MembershipChange.DEACTIVATED


@dataclass
class Backend:
    """One implementation of every store, and ways to put messages and changes where the
    controller would."""

    teams: TeamStore
    messages: MessageStore
    attachments: AttachmentStore
    # Messages as they stand now, in log order (after everything seeded before).
    seed_messages: Callable[[Sequence[StoredMessage]], Awaitable[None]]
    new_id: Callable[[], str]
    index: MembershipIndex
    # Applied changes in log order, each with the channel's team-message count at its seq.
    seed_changes: Callable[[Sequence[tuple[ChangeEntry, int]]], Awaitable[None]]


@dataclass(frozen=True)
class _Log:
    """A channel's log as the controller stored it (``_channel_log``)."""

    channel: str
    root: StoredMessage  # a team text with three replies, edited
    dm: StoredMessage  # U to V, with a reaction
    replies: tuple[StoredMessage, StoredMessage, StoredMessage]  # U to all, V to U, S to all
    deleted: StoredMessage  # V's team text, deleted


def _event(n: int, user_id: str = U, change: MembershipChange = ADDED) -> OutboxEvent:
    return OutboxEvent(f"{n:032x}", user_id, change, S, 1_700_000_000_000 + n, f"corr-{n}")


def _team(
    team_id: str, *, members: tuple[str, ...] = (S, A, U), tags: tuple[str, ...] = ()
) -> Team:
    return Team(team_id, "core", "", True, tags, members, (S, A), S, T0)


async def _walk_pages(
    store: MessageStore,
    channel: str,
    viewer: str,
    *,
    forward: bool,
    limit: int,
    start: int | None = None,
) -> tuple[list[int], int]:
    """Every seq the viewer's pages give, in walking order, from ``start`` (forward: 0 unless
    given; backward: the latest page), following ``resume_at`` where a walk stopped early; and
    how many pages did (shorter than ``limit``, with more beyond). Every cursor moves on."""
    seqs: list[int] = []
    cursor: int | None = (0 if start is None else start) if forward else start
    short = 0
    for _ in range(1000):
        walk = await store.page(
            channel,
            viewer,
            before=None if forward else cursor,
            after=cursor if forward else None,
            limit=limit,
        )
        seqs.extend(m.seq for m in walk.found)
        if walk.resume_at is not None:
            assert len(walk.found) < limit
            short += 1
            step = walk.resume_at
        elif len(walk.found) < limit:
            return seqs, short
        else:
            step = walk.found[-1].seq
        assert cursor is None or (step > cursor if forward else step < cursor)
        cursor = step
    raise AssertionError("the walk never ended")


def _at(seconds: int) -> datetime:
    return T0 + timedelta(seconds=seconds)


async def _channel_log(backend: Backend) -> _Log:
    """A channel's log at seqs 10 to 100 (sparse, as on a partition shared with other
    channels): a root, a DM, three replies (one a DM) each with the root's ``thread`` change at
    its seq, an edit, a reaction and a delete; and a message of another channel. Messages are
    stored as they stand now, changes with the message as they left it."""
    channel, new_id = backend.new_id(), backend.new_id

    def message(
        seq: int, to: str, sender: str, count: int, thread_id: str | None = None
    ) -> StoredMessage:
        text = f"m{seq}"
        return StoredMessage(
            new_id(), seq, channel, to, "text", text, sender, _at(seq), thread_id, count=count
        )

    root_0 = message(10, "*", S, 1)
    dm_0 = message(20, V, U, 1)
    first = message(30, "*", U, 2, thread_id=root_0.id)
    root_1 = dataclasses.replace(
        root_0, thread_replies=1, thread_last_reply_ts=_at(30), last_change=30
    )
    root_2 = dataclasses.replace(root_1, data="edited", edited_ts=_at(40), last_change=40)
    second = message(50, U, V, 2, thread_id=root_0.id)
    root_3 = dataclasses.replace(
        root_2, thread_replies=2, thread_last_reply_ts=_at(50), last_change=50
    )
    doomed_0 = message(60, "*", V, 3)
    dm_1 = dataclasses.replace(dm_0, reactions=(Reaction("👍", (V,)),), last_change=70)
    third = message(80, "*", S, 4, thread_id=root_0.id)
    root_4 = dataclasses.replace(
        root_3, thread_replies=3, thread_last_reply_ts=_at(80), last_change=80
    )
    doomed_1 = dataclasses.replace(doomed_0, data="", deleted=True, last_change=90)
    last = message(100, "*", A, 5)
    records: list[StoredMessage | tuple[ChangeEntry, int]] = [
        root_4,
        dm_1,
        first,
        (ChangeEntry(30, "thread", root_1), 2),
        (ChangeEntry(40, "edited", root_2), 2),
        second,
        (ChangeEntry(50, "thread", root_3), 2),
        doomed_1,
        (ChangeEntry(70, "reaction", dm_1), 3),
        third,
        (ChangeEntry(80, "thread", root_4), 4),
        (ChangeEntry(90, "deleted", doomed_1), 4),
        last,
        StoredMessage(new_id(), 60, new_id(), "*", "text", "elsewhere", S, T0),
    ]
    # Consecutive messages, or changes, in one call; the calls in the log's order.
    for are_messages, run in itertools.groupby(records, lambda r: isinstance(r, StoredMessage)):
        group = list(run)
        if are_messages:
            await backend.seed_messages([r for r in group if isinstance(r, StoredMessage)])
        else:
            await backend.seed_changes([r for r in group if not isinstance(r, StoredMessage)])
    return _Log(channel, root_4, dm_1, (first, second, third), doomed_1)


class StoreContract:
    """Behaviour every implementation shares; subclasses provide the ``backend`` fixture."""

    async def _stored(self, backend: Backend, **kw: tuple[str, ...]) -> Team:
        team = _team(backend.new_id(), **kw)
        await backend.teams.insert(team, _event(0, S))
        return team

    # --- teams ----------------------------------------------------------------------------

    async def test_insert_then_get_round_trips_and_duplicates_conflict(
        self, backend: Backend
    ) -> None:
        """A stored team reads back equal; its first event is pending; the id is unique."""
        team = await self._stored(backend)
        assert await backend.teams.get(team.id) == team
        assert await backend.teams.outbox(team.id) == (_event(0, S),)
        assert team.id in await backend.teams.with_pending_outbox(limit=1000)
        with pytest.raises(Conflict):
            await backend.teams.insert(team, _event(1))
        assert await backend.teams.get(backend.new_id()) is None
        assert await backend.teams.outbox(backend.new_id()) == ()

    async def test_list_for_member_pages_by_id_and_filters_by_tag(self, backend: Backend) -> None:
        """A member's teams ascending by id, after a cursor, up to a limit, optionally tagged."""
        member = backend.new_id()
        stored = [
            await self._stored(backend, members=(S, member), tags=("dev",) if i % 2 else ())
            for i in range(5)
        ]
        ids = sorted(t.id for t in stored)
        found = await backend.teams.list_for_member(member, tag=None, after_id=None, limit=10)
        assert [t.id for t in found] == ids
        page = await backend.teams.list_for_member(member, tag=None, after_id=ids[1], limit=2)
        assert [t.id for t in page] == ids[2:4]
        tagged = await backend.teams.list_for_member(member, tag="dev", after_id=None, limit=10)
        assert sorted(t.id for t in tagged) == sorted(t.id for t in stored if t.meta_tags)
        assert await backend.teams.list_for_member(X, tag=None, after_id=None, limit=10) == []

    async def test_update_settings_checks_the_actor_and_active(self, backend: Backend) -> None:
        """Admins set fields and get the team as it was; the values read and the actor are
        checked."""
        team = await self._stored(backend)
        teams = backend.teams
        changes = TeamChanges(name="renamed", meta_tags=("a", "b"))
        assert (
            await teams.update_settings(team.id, actor=U, changes=changes, as_super_admin=False)
            is None
        )
        before = await teams.update_settings(
            team.id, actor=A, changes=changes, as_super_admin=False
        )
        assert before == team
        after = await teams.get(team.id)
        assert after is not None
        assert (after.name, after.meta_tags) == ("renamed", ("a", "b"))

        # A write decided on values read: refused once the team no longer has them.
        same = TeamChanges(name="renamed")
        stale = {"name": "renamed", "meta_tags": ["a"]}
        assert (
            await teams.update_settings(
                team.id, actor=A, changes=same, as_super_admin=False, as_read=stale
            )
            is None
        )
        current = {"name": "renamed", "meta_tags": ["a", "b"], "icon": ""}
        assert (
            await teams.update_settings(
                team.id, actor=A, changes=same, as_super_admin=False, as_read=current
            )
            is not None
        )

        live, dead = {"active": True}, {"active": False}
        off = TeamChanges(name="off", active=False)
        events = (_event(1, "", MembershipChange.SETTINGS), _event(2, "", DEACTIVATED))
        assert (
            await teams.update_settings(
                team.id, actor=A, changes=off, as_super_admin=True, events=events, as_read=live
            )
            is None
        )
        assert (
            await teams.update_settings(
                team.id, actor=S, changes=off, as_super_admin=True, events=events, as_read=dead
            )
            is None
        )
        assert await teams.outbox(team.id) == (_event(0, S),)  # a refused write stores no event
        done = await teams.update_settings(
            team.id, actor=S, changes=off, as_super_admin=True, events=events, as_read=live
        )
        assert done is not None
        assert done.active is True  # the team before the change
        stored = await teams.get(team.id)
        assert stored is not None
        assert (stored.name, stored.active) == ("off", False)
        assert await teams.outbox(team.id) == (_event(0, S), *events)  # both, in order

    async def test_add_and_remove_members_follow_the_roles(self, backend: Backend) -> None:
        """Admins add non-members and remove plain members; only the super_admin removes admins."""
        team = await self._stored(backend)
        teams = backend.teams
        assert await teams.add_member(team.id, actor=U, user_id=V, event=_event(1, V)) is None
        assert await teams.add_member(team.id, actor=A, user_id=U, event=_event(1, U)) is None
        added = await teams.add_member(team.id, actor=A, user_id=V, event=_event(1, V))
        assert added is not None
        assert added.members == (S, A, U, V)

        remove = teams.remove_member
        assert (
            await remove(team.id, actor=A, user_id=S, as_super_admin=False, event=_event(2)) is None
        )
        assert (
            await remove(team.id, actor=A, user_id=A, as_super_admin=False, event=_event(2)) is None
        )
        assert (
            await remove(team.id, actor=A, user_id=X, as_super_admin=False, event=_event(2)) is None
        )
        assert (
            await remove(team.id, actor=A, user_id=A, as_super_admin=True, event=_event(2)) is None
        )
        gone = await remove(
            team.id, actor=A, user_id=V, as_super_admin=False, event=_event(2, V, REMOVED)
        )
        assert gone is not None
        assert gone.members == (S, A, U)
        admin_gone = await remove(
            team.id, actor=S, user_id=A, as_super_admin=True, event=_event(3, A, REMOVED)
        )
        assert admin_gone is not None
        assert (admin_gone.members, admin_gone.admins) == ((S, U), (S,))
        assert await teams.outbox(team.id) == (
            _event(0, S),
            _event(1, V),
            _event(2, V, REMOVED),
            _event(3, A, REMOVED),
        )

    async def test_role_changes_need_the_super_admin(self, backend: Backend) -> None:
        """Electing, dismissing and transferring: super_admin only, targets must be members."""
        team = await self._stored(backend)
        teams = backend.teams
        roles = [_event(n, U, MembershipChange.ROLES) for n in (1, 2, 3)]
        assert await teams.add_admin(team.id, actor=A, user_id=U, event=roles[0]) is None
        assert await teams.add_admin(team.id, actor=S, user_id=X, event=roles[0]) is None
        # Already an admin:
        assert await teams.add_admin(team.id, actor=S, user_id=A, event=roles[0]) is None
        elected = await teams.add_admin(team.id, actor=S, user_id=U, event=roles[0])
        assert elected is not None
        assert elected.admins == (S, A, U)
        assert await teams.remove_admin(team.id, actor=S, user_id=S, event=roles[1]) is None
        assert await teams.remove_admin(team.id, actor=A, user_id=U, event=roles[1]) is None
        dismissed = await teams.remove_admin(team.id, actor=S, user_id=U, event=roles[1])
        assert dismissed is not None
        assert dismissed.admins == (S, A)
        assert await teams.transfer_super_admin(team.id, actor=A, user_id=U, event=roles[2]) is None
        assert await teams.transfer_super_admin(team.id, actor=S, user_id=X, event=roles[2]) is None
        moved = await teams.transfer_super_admin(team.id, actor=S, user_id=U, event=roles[2])
        assert moved is not None
        assert (moved.super_admin, moved.admins) == (U, (S, A, U))
        # Each change that happened stored its event with it; the refused ones none.
        assert await teams.outbox(team.id) == (_event(0, S), *roles)

    async def test_leave_and_the_last_member_closing_the_team(self, backend: Backend) -> None:
        """Members leave, the super_admin cannot; the sole member empties the team, which goes
        once its outbox is drained."""
        team = await self._stored(backend, members=(S, A))
        teams = backend.teams
        assert not await teams.leave(team.id, user_id=S, event=_event(1, S, REMOVED))
        assert not await teams.close_if_sole_member(team.id, user_id=S, event=_event(1, S, REMOVED))
        assert await teams.leave(team.id, user_id=A, event=_event(1, A, REMOVED))
        assert not await teams.leave(team.id, user_id=A, event=_event(2, A, REMOVED))
        assert await teams.close_if_sole_member(team.id, user_id=S, event=_event(2, S, REMOVED))
        assert await teams.get(team.id) is None
        assert await teams.list_for_member(S, tag=None, after_id=None, limit=100) == []
        assert not await teams.delete_if_closed(team.id)  # events still pending
        pending = await teams.outbox(team.id)
        assert [e.id for e in pending] == [_event(n).id for n in (0, 1, 2)]
        await teams.acknowledge(team.id, pending)
        assert await teams.delete_if_closed(team.id)
        assert await teams.outbox(team.id) == ()

    async def test_acknowledge_removes_exactly_the_given_events(self, backend: Backend) -> None:
        """Acked events leave the outbox, later ones stay in order; the team is pending until
        its outbox is empty."""
        team = await self._stored(backend)
        teams = backend.teams
        for n in (1, 2, 3):
            assert await teams.add_member(
                team.id, actor=S, user_id=backend.new_id(), event=_event(n)
            )
        await teams.acknowledge(team.id, [_event(0, S), _event(2)])
        assert await teams.outbox(team.id) == (_event(1), _event(3))
        assert team.id in await teams.with_pending_outbox(limit=1000)
        await teams.acknowledge(team.id, [_event(1), _event(3)])
        assert await teams.outbox(team.id) == ()
        assert team.id not in await teams.with_pending_outbox(limit=1000)
        await teams.acknowledge(team.id, [])  # nothing to remove: still fine
        assert not await teams.delete_if_closed(team.id)  # it has members

    # --- messages -------------------------------------------------------------------------

    async def _channel(self, backend: Backend) -> tuple[str, list[StoredMessage]]:
        channel = backend.new_id()
        messages = [
            StoredMessage(
                backend.new_id(),
                seq,
                channel,
                "*" if seq % 3 else (V if seq % 2 else U),
                "text",
                f"m{seq}",
                S if seq % 3 else U,
                T0 + timedelta(seconds=seq),
            )
            for seq in range(1, 13)
        ]
        other = StoredMessage(backend.new_id(), 1, backend.new_id(), "*", "text", "x", S, T0)
        await backend.seed_messages([*messages, other])
        return channel, messages

    async def test_pages_show_team_messages_and_own_dms_in_both_directions(
        self, backend: Backend
    ) -> None:
        """Forward after a seq ascending, backward below a seq or latest descending; DMs only
        to their sender and recipient."""
        channel, messages = await self._channel(backend)

        def seqs(found: list[StoredMessage]) -> list[int]:
            return [m.seq for m in found]

        visible_to_v = [m for m in messages if m.to in ("*", V) or m.sender == V]
        latest = (await backend.messages.page(channel, V, before=None, after=None, limit=3)).found
        assert seqs(latest) == [m.seq for m in reversed(visible_to_v)][:3]
        forward = (await backend.messages.page(channel, V, before=None, after=4, limit=50)).found
        assert seqs(forward) == [m.seq for m in visible_to_v if m.seq > 4]
        backward = (await backend.messages.page(channel, V, before=7, after=None, limit=2)).found
        assert (
            seqs(backward) == sorted((m.seq for m in visible_to_v if m.seq < 7), reverse=True)[:2]
        )
        assert latest[0] == visible_to_v[-1]
        everything = (await backend.messages.page(channel, U, before=None, after=0, limit=50)).found
        assert seqs(everything) == [m.seq for m in messages if m.to in ("*", U) or m.sender == U]

    async def test_every_page_walk_over_a_long_channel_shows_each_visible_message_once(
        self, backend: Backend
    ) -> None:
        """Paging a 60-message channel backward from the latest page and forward from the start,
        and from made-up cursors, yields exactly the viewer's messages in seq order (the MongoDB
        seed stores them in buckets of 4, so every page crosses buckets)."""
        channel = backend.new_id()
        # Sparse seqs, as on a partition shared with other channels; V sees a long run of
        # nothing (U and S talking directly) in the middle.
        messages = [
            StoredMessage(
                backend.new_id(),
                7 * i + 3,
                channel,
                U if 20 <= i < 40 else ("*" if i % 4 else V),
                "text",
                f"m{i}",
                S,
                T0 + timedelta(seconds=i),
            )
            for i in range(60)
        ]
        await backend.seed_messages(messages)
        visible = [m.seq for m in messages if m.to in ("*", V)]
        page_size = 5

        backward, _ = await _walk_pages(backend.messages, channel, V, forward=False, limit=5)
        assert backward == sorted(visible, reverse=True)
        forward, _ = await _walk_pages(backend.messages, channel, V, forward=True, limit=page_size)
        assert forward == visible

        for made_up in (0, 1, 150, 151, 152, 10_000):
            later = (
                await backend.messages.page(channel, V, before=None, after=made_up, limit=3)
            ).found
            assert [m.seq for m in later] == [s for s in visible if s > made_up][:3]
            earlier = (
                await backend.messages.page(channel, V, before=made_up, after=None, limit=3)
            ).found
            assert [m.seq for m in earlier] == sorted(
                (s for s in visible if s < made_up), reverse=True
            )[:3]
        nobody = (
            await backend.messages.page(backend.new_id(), V, before=None, after=None, limit=5)
        ).found
        assert nobody == []

    async def test_a_walk_through_what_the_viewer_cannot_see_stops_early_and_resumes(
        self, backend: Backend
    ) -> None:
        """In a channel of other members' DMs (a team message every 50th), a page does not read
        the whole channel: it stops short with where to go on, and following that, both ways and
        through the changes feed, gives each of the viewer's messages once, in order."""
        channel = backend.new_id()
        messages = [
            StoredMessage(
                backend.new_id(),
                3 * i + 1,
                channel,
                "*" if i % 50 == 0 else U,
                "text",
                f"m{i}",
                S,
                T0 + timedelta(seconds=i),
            )
            for i in range(200)
        ]
        await backend.seed_messages(messages)
        visible = [m.seq for m in messages if m.to == "*"]
        forward, short = await _walk_pages(backend.messages, channel, V, forward=True, limit=10)
        assert forward == visible
        assert short  # the 49 DMs between two team messages span more than a walk reads
        backward, short = await _walk_pages(backend.messages, channel, V, forward=False, limit=10)
        assert backward == sorted(visible, reverse=True)
        assert short
        # The whole channel for whoever sees it all: pages are full, no walk stops early.
        everything, short = await _walk_pages(backend.messages, channel, U, forward=True, limit=10)
        assert everything == [m.seq for m in messages]
        assert not short
        fed: list[int] = []
        after, short = -1, False
        while True:
            walk = await backend.messages.changes(channel, V, after=after, limit=10)
            fed.extend(e.seq for e in walk.found)
            if walk.resume_at is None and len(walk.found) < 10:
                break
            short = short or walk.resume_at is not None
            after = walk.resume_at if walk.resume_at is not None else walk.found[-1].seq
        assert fed == visible
        assert short

    async def test_carrier_says_who_may_see_an_attachment(self, backend: Backend) -> None:
        """NONE until a non-text message of the channel carries the id; then VISIBLE or HIDDEN
        by that message's audience."""
        channel, attachment = backend.new_id(), backend.new_id()
        carrier = backend.messages.carrier
        await backend.seed_messages(
            [
                StoredMessage(backend.new_id(), 1, channel, "*", "text", attachment, S, T0),
                StoredMessage(
                    backend.new_id(), 1, backend.new_id(), "*", "file", attachment, S, T0
                ),
            ]
        )
        assert await carrier(channel, attachment, U) is Carrier.NONE
        await backend.seed_messages(
            [StoredMessage(backend.new_id(), 2, channel, U, "image", attachment, S, T0)]
        )
        assert await carrier(channel, attachment, U) is Carrier.VISIBLE
        assert await carrier(channel, attachment, S) is Carrier.VISIBLE
        assert await carrier(channel, attachment, V) is Carrier.HIDDEN
        await backend.seed_messages(
            [StoredMessage(backend.new_id(), 3, channel, "*", "image", attachment, S, T0)]
        )
        assert await carrier(channel, attachment, V) is Carrier.VISIBLE

    async def test_carried_besides_looks_past_one_message(self, backend: Backend) -> None:
        """Whether another non-text message of the channel than the one named carries the id:
        a text quoting it, another channel's message and the named message do not count."""
        channel, attachment = backend.new_id(), backend.new_id()
        first, second = backend.new_id(), backend.new_id()
        besides = backend.messages.carried_besides
        await backend.seed_messages(
            [
                StoredMessage(first, 1, channel, "*", "file", attachment, S, T0),
                StoredMessage(backend.new_id(), 2, channel, "*", "text", attachment, S, T0),
                StoredMessage(
                    backend.new_id(), 1, backend.new_id(), "*", "file", attachment, S, T0
                ),
            ]
        )
        assert not await besides(channel, attachment, first)
        await backend.seed_messages(
            [StoredMessage(second, 3, channel, U, "image", attachment, S, T0)]
        )
        assert await besides(channel, attachment, first)
        assert await besides(channel, attachment, second)

    async def test_message_is_found_by_id_within_its_channel(self, backend: Backend) -> None:
        """A message as it stands now, whoever it is to; None for an unknown id or for the id
        of another channel's message."""
        log = await _channel_log(backend)
        message = backend.messages.message
        assert await message(log.channel, log.root.id) == log.root
        assert await message(log.channel, log.dm.id) == log.dm
        assert await message(log.channel, log.deleted.id) == log.deleted
        assert await message(backend.new_id(), log.root.id) is None
        assert await message(log.channel, backend.new_id()) is None

    async def test_thread_lists_the_visible_replies_after_the_cursor(
        self, backend: Backend
    ) -> None:
        """Replies to the root ascending by seq, after ``after``, up to ``limit``, a DM reply
        only for its two people; nothing for a message without replies or in another channel."""
        log = await _channel_log(backend)
        first, second, third = log.replies

        async def thread(viewer: str, after: int = 0, limit: int = 10) -> list[StoredMessage]:
            return await backend.messages.thread(
                log.channel, log.root.id, viewer, after=after, limit=limit
            )

        assert await thread(U) == [first, second, third]
        assert await thread(V) == [first, second, third]
        assert await thread(S) == [first, third]
        assert await thread(U, after=30, limit=1) == [second]
        assert await thread(U, after=35) == [second, third]
        assert await thread(S, after=80) == []
        replies_to_reply = backend.messages.thread(log.channel, first.id, U, after=0, limit=10)
        assert await replies_to_reply == []
        elsewhere = backend.messages.thread(backend.new_id(), log.root.id, U, after=0, limit=10)
        assert await elsewhere == []

    async def test_changes_list_creations_and_changes_in_seq_order(self, backend: Backend) -> None:
        """Each message's creation (as it stands now) and each change (the message as it left
        it) that the viewer may see, ascending, a thread change after the reply sharing its seq;
        any cursor, a record's seq or one between records, resumes the same list."""
        log = await _channel_log(backend)
        changes = backend.messages.changes

        async def feed(viewer: str) -> list[tuple[int, str]]:
            found = (await changes(log.channel, viewer, after=0, limit=100)).found
            return [(e.seq, e.change) for e in found]

        everyone = [(10, "created"), (30, "created"), (30, "thread"), (40, "edited")]
        everyone += [(50, "thread"), (60, "created"), (80, "created"), (80, "thread")]
        everyone += [(90, "deleted"), (100, "created")]
        assert await feed(S) == everyone
        with_dms = [*everyone, (20, "created"), (50, "created"), (70, "reaction")]
        assert await feed(U) == sorted(with_dms, key=lambda e: (e[0], e[1] != "created"))
        assert await feed(V) == await feed(U)

        full = (await changes(log.channel, V, after=0, limit=100)).found
        by_record = {(e.seq, e.change): e.message for e in full}
        assert by_record[10, "created"] == log.root
        assert by_record[30, "thread"] == dataclasses.replace(
            log.root,
            data="m10",
            edited_ts=None,
            thread_replies=1,
            thread_last_reply_ts=_at(30),
            last_change=30,
        )
        assert (by_record[40, "edited"].data, by_record[40, "edited"].thread_replies) == (
            "edited",
            1,
        )
        assert by_record[70, "reaction"] == log.dm
        assert by_record[60, "created"] == by_record[90, "deleted"] == log.deleted
        for after in range(0, 110, 5):
            page = (await changes(log.channel, V, after=after, limit=3)).found
            assert page == [e for e in full if e.seq > after][:3], after
        assert (await changes(backend.new_id(), V, after=0, limit=100)).found == []

    async def test_count_at_is_the_channel_count_at_any_of_its_records(
        self, backend: Backend
    ) -> None:
        """The team-message count stored with the message, or else the change, at that seq (a
        change carries the channel's count at its own seq, not its message's); None where the
        channel has no record."""
        log = await _channel_log(backend)

        async def count_at(seq: int) -> int | None:
            return await backend.messages.count_at(log.channel, seq)

        assert [await count_at(seq) for seq in (10, 20, 30, 60, 100)] == [1, 1, 2, 3, 5]
        assert await count_at(40) == 2  # the edit of the root, whose own count is 1
        assert await count_at(90) == 4  # the delete of a message counted 3
        assert await count_at(70) == 3  # the reaction to the DM
        assert await count_at(50) == 2  # a DM reply (hidden from some: the same count)
        assert await count_at(45) is None  # no record at this seq
        assert await backend.messages.count_at(backend.new_id(), 10) is None

    async def test_count_at_for_a_viewer_passes_records_hidden_from_them(
        self, backend: Backend
    ) -> None:
        """With a viewer, a DM of two others and a reaction to it are no record (a DM reply's
        seq is its team root's thread change too, which they see); the DM's two people, and
        everyone for team records, get the count as without one."""
        log = await _channel_log(backend)

        async def count_at(seq: int, viewer: str) -> int | None:
            return await backend.messages.count_at(log.channel, seq, viewer)

        assert [await count_at(seq, S) for seq in (10, 20, 40, 50, 70, 100)] == [
            1,
            None,
            2,
            2,
            None,
            5,
        ]
        for party in (U, V):
            assert [await count_at(seq, party) for seq in (20, 50, 70)] == [1, 2, 3]
        assert await count_at(45, U) is None

    async def test_count_before_is_the_count_at_the_last_message_at_or_below(
        self, backend: Backend
    ) -> None:
        """For a seq that is no record of the channel: the count of its last message at or
        below it, whoever may see that message; 0 below the first and in an empty channel."""
        log = await _channel_log(backend)

        async def count_before(seq: int) -> int:
            return await backend.messages.count_before(log.channel, seq)

        assert [await count_before(seq) for seq in (5, 10, 15, 25, 45, 65, 95, 150)] == [
            0,
            1,
            1,
            1,
            2,
            3,
            4,
            5,
        ]
        assert await backend.messages.count_before(backend.new_id(), 50) == 0

    # --- attachments ----------------------------------------------------------------------

    def _attachment(self, backend: Backend, *, age_s: int = 0) -> Attachment:
        attachment_id = backend.new_id()
        return Attachment(
            id=attachment_id,
            team_id=backend.new_id(),
            kind="file",
            status=PENDING,
            filename="a.txt",
            content_type="text/plain",
            size=5,
            key=f"attachments/t/{attachment_id}",
            uploader=U,
            created_at=T0 - timedelta(seconds=age_s),
        )

    async def test_attachments_are_decided_once(self, backend: Backend) -> None:
        """Insert and read back; a duplicate id conflicts; only a pending record is decided."""
        item = self._attachment(backend)
        store = backend.attachments
        await store.insert(item)
        assert await store.get(item.id) == item
        with pytest.raises(Conflict):
            await store.insert(item)
        assert await store.decide(item.id, READY, at=T0)
        assert not await store.decide(item.id, REJECTED, at=T0, reason="late")
        decided = await store.get(item.id)
        assert decided is not None
        assert (decided.status, decided.reason) == (READY, "")
        assert not await store.decide(backend.new_id(), READY, at=T0)
        assert await store.get(backend.new_id()) is None

    async def test_only_stale_pending_attachments_are_swept(self, backend: Backend) -> None:
        """Pending records older than the cut-off, oldest first, up to the limit; deleting only
        while still pending."""
        store = backend.attachments
        old, older, fresh, done = (
            self._attachment(backend, age_s=100_000_000 + 10),
            self._attachment(backend, age_s=100_000_000 + 20),
            self._attachment(backend),
            self._attachment(backend, age_s=100_000_000 + 30),
        )
        for item in (old, older, fresh, done):
            await store.insert(item)
        await store.decide(done.id, REJECTED, at=T0, reason="malware")
        cutoff = T0 - timedelta(seconds=100_000_000)
        assert [i.id for i in await store.stale_pending(cutoff, limit=10)] == [older.id, old.id]
        assert [i.id for i in await store.stale_pending(cutoff, limit=1)] == [older.id]
        assert not await store.delete_pending(done.id)
        assert await store.delete_pending(old.id)
        assert not await store.delete_pending(old.id)
        assert await store.get(old.id) is None

    async def test_the_membership_index_applies_events_idempotently(self, backend: Backend) -> None:
        """Added, a replayed added, deactivated and removed leave exactly the expected entries;
        an addition to a deactivated team is indexed as inactive."""
        team, other = backend.new_id(), backend.new_id()
        await backend.teams.insert(_team(team), _event(1, S))
        await backend.teams.insert(dataclasses.replace(_team(other), active=False), _event(2, S))
        for _ in range(2):  # a replay changes nothing
            await backend.index.apply(team, _event(3, U, ADDED))
        await backend.index.apply(other, _event(4, U, ADDED))
        assert await backend.index.teams_of(U) == sorted(
            [MembershipEntry(team, True), MembershipEntry(other, False)]
        )
        await backend.index.apply(team, _event(5, "", MembershipChange.DEACTIVATED))
        assert MembershipEntry(team, False) in await backend.index.teams_of(U)
        await backend.index.apply(team, _event(6, U, MembershipChange.REMOVED))
        await backend.index.apply(team, _event(7, U, MembershipChange.REMOVED))
        assert await backend.index.teams_of(U) == [MembershipEntry(other, False)]
        assert await backend.index.teams_of(A) == []
