"""The contract of the controller's stores (messages, directory, channel heads, and what the
life-cycle pass reads and writes: message state, change documents, read state, membership),
written once for every implementation.

``ControllerStoreContract`` holds the tests; a test module subclasses it and supplies a
``backend`` fixture: tests/unit/test_controller_store_contract.py runs it over the in-memory fakes
of tests/unit/controller_fakes.py, tests/integration/test_controller_store_contract.py over the
MongoDB implementations against the stack's FerretDB. A fake that drifts from the database fails
here first. This module holds no tests of its own (pytest collects only the subclasses).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from chatcore.buckets import BucketRange, ChannelHeads, bucket_key
from chatcore.message_state import Reaction, StoredMessage
from chatcore.mongo import DUPLICATE_KEY, Document
from chatcore.unread import ChannelHead, DeletedMark, ReadState
from services.controller.directory import AttachmentView, Directory, MembershipView
from services.controller.lifecycle import ReadStore
from services.controller.lifecycle_store import Members, MessageStates, change_doc
from services.controller.store import MessageStore, StoredPosition

T1, T2, T3 = (c * 32 for c in "abc")
ALICE, BOB, CAROL = (c * 32 for c in "123")


class ReadStates(ReadStore, Protocol):
    """What the life-cycle pass uses of the read documents, and the per-user read of them."""

    async def of_user(self, user_id: str) -> dict[str, ReadState]: ...

    async def load(self, channel_id: str, users: Iterable[str]) -> dict[str, ReadState | None]: ...

    async def save(self, channel_id: str, states: Mapping[str, ReadState]) -> None: ...


class Heads(ChannelHeads, Protocol):
    """Bucket reservations, and the counters the controller's checkpoint stores."""

    async def save_counters(self, channel_id: str, head: ChannelHead) -> None: ...


@dataclass(kw_only=True)
class Backend:
    """One implementation of each interface, and ways to put in what other services write
    (``seed_*``) or to read what nothing in the controller reads back (``changes_in``)."""

    store: MessageStore
    directory: Directory
    seed_team: Callable[[str, Document], Awaitable[None]]
    seed_attachment: Callable[[AttachmentView], Awaitable[None]]
    seed_user: Callable[[str, bool], Awaitable[None]]
    heads: Heads
    range_of: Callable[[str], Awaitable[BucketRange | None]]
    # What the life-cycle pass reads and writes (over ``store``'s messages).
    states: MessageStates
    reads: ReadStates
    members: Members
    # The management service adds (True) or removes (False) a user in a team's membership.
    seed_member: Callable[[str, str, bool], Awaitable[None]]
    # The change documents stored for a channel, by seq then ``_id``.
    changes_in: Callable[[str], Awaitable[list[Document]]]


def _doc(message_id: str, channel_id: str, seq: int) -> Document:
    return {
        "id": message_id,
        "channel_id": channel_id,
        "seq": seq,
        "to": "*",
        "type": "text",
        "data": f"message {seq}",
        "from": ALICE,
        "ts": datetime(2026, 3, 1, tzinfo=UTC),
        "client_msg_id": "",
    }


def _team(members: list[str], admins: list[str], super_admin: str, active: bool) -> Document:
    return {"members": members, "admins": admins, "super_admin": super_admin, "active": active}


class ControllerStoreContract:
    """Behaviour every implementation shares; subclasses provide the ``backend`` fixture."""

    async def test_insert_reports_exactly_the_clashing_documents(self, backend: Backend) -> None:
        """A clash on id or on (channel, seq) is reported by position; the rest is written."""
        assert await backend.store.insert_unordered([_doc("m1", T1, 1), _doc("m2", T1, 2)]) == {}
        failures = await backend.store.insert_unordered(
            [_doc("m1", T1, 9), _doc("m3", T1, 3), _doc("m4", T1, 2), _doc("m5", T2, 2)]
        )
        assert failures == {0: DUPLICATE_KEY, 2: DUPLICATE_KEY}
        stored = await backend.store.positions(["m1", "m2", "m3", "m4", "m5"])
        assert stored == {
            "m1": StoredPosition(T1, 1),
            "m2": StoredPosition(T1, 2),
            "m3": StoredPosition(T1, 3),
            "m5": StoredPosition(T2, 2),
        }

    async def test_positions_of_nothing_and_of_unknown_ids_are_empty(
        self, backend: Backend
    ) -> None:
        """No ids, or ids never stored: an empty answer, no error."""
        assert await backend.store.insert_unordered([]) == {}
        assert await backend.store.positions([]) == {}
        assert await backend.store.positions(["never", "stored"]) == {}

    async def test_a_bucket_lists_exactly_the_messages_filed_in_it(self, backend: Backend) -> None:
        """in_bucket finds every message of one bucket, by id with its position, and none of
        another bucket or channel; an empty or unknown bucket is empty."""
        docs = [
            {**_doc("m1", T1, 1), "bucket": bucket_key(T1, 0)},
            {**_doc("m2", T1, 2), "bucket": bucket_key(T1, 0)},
            {**_doc("m3", T1, 3), "bucket": bucket_key(T1, 1)},
            {**_doc("m4", T2, 1), "bucket": bucket_key(T2, 0)},
        ]
        assert await backend.store.insert_unordered(docs) == {}
        assert await backend.store.in_bucket(bucket_key(T1, 0)) == {
            "m1": StoredPosition(T1, 1),
            "m2": StoredPosition(T1, 2),
        }
        assert await backend.store.in_bucket(bucket_key(T1, 1)) == {"m3": StoredPosition(T1, 3)}
        assert await backend.store.in_bucket(bucket_key(T1, 7)) == {}

    async def test_memberships_and_members_read_what_management_wrote(
        self, backend: Backend
    ) -> None:
        """A user's teams (ordered by id) with their state, and a team's members, as the
        management service wrote them; nothing for an unknown user or team."""
        await backend.seed_team(T1, _team([ALICE, BOB], [ALICE], ALICE, True))
        await backend.seed_team(T2, _team([BOB], [], CAROL, False))
        await backend.seed_team(T3, _team([CAROL], [CAROL], CAROL, True))
        assert await backend.directory.memberships(BOB) == [
            MembershipView(T1, active=True),
            MembershipView(T2, active=False),
        ]
        assert await backend.directory.memberships(ALICE) == [MembershipView(T1, active=True)]
        members = await backend.directory.members(T1)
        assert members is not None
        assert (sorted(members.user_ids), members.active) == ([ALICE, BOB], True)
        assert await backend.directory.members("d" * 32) is None
        assert await backend.directory.memberships("9" * 32) == []

    async def test_attachments_and_disabled_accounts(self, backend: Backend) -> None:
        """An attachment reads back whole; only an account marked disabled is disabled."""
        view = AttachmentView("e" * 32, T1, "image", "ready", ALICE)
        await backend.seed_attachment(view)
        assert await backend.directory.attachment(view.attachment_id) == view
        assert await backend.directory.attachment("f" * 32) is None
        await backend.seed_user(ALICE, False)
        await backend.seed_user(BOB, True)
        assert [await backend.directory.disabled(u) for u in (ALICE, BOB, CAROL)] == [
            False,
            True,
            False,
        ]

    async def test_reserving_buckets_counts_up_from_zero_per_channel(
        self, backend: Backend
    ) -> None:
        """Each reservation hands out the channel's next number; channels count separately."""
        assert await backend.range_of(T1) is None
        assert [(await backend.heads.reserve(T1)).number for _ in range(3)] == [0, 1, 2]
        assert (await backend.heads.reserve(T2)).number == 0
        assert await backend.range_of(T1) == BucketRange(0, 3)
        assert await backend.range_of(T2) == BucketRange(0, 1)

    async def test_a_reservation_brings_the_channel_s_stored_counters(
        self, backend: Backend
    ) -> None:
        """What a reservation returns carries the head's counters as stored (zero when new)."""
        assert (await backend.heads.reserve(T1)).head == ChannelHead()
        head = ChannelHead(count=3, count_seq=8, last_seq=9, deleted=(DeletedMark(5, "u"),))
        await backend.heads.save_counters(T1, head)
        reserved = await backend.heads.reserve(T1)
        assert (reserved.number, reserved.head) == (1, head)

    # --- what the life-cycle pass reads and writes -----------------------------------------

    async def test_message_states_read_and_write_stored_messages(self, backend: Backend) -> None:
        """by_id finds stored messages (repeats and unknown ids ignored); save stores what a
        change alters, renumber the count; neither creates a message that was not stored."""
        await backend.store.insert_unordered([_doc("m1", T1, 1), _doc("m2", T2, 1)])
        found = await backend.states.by_id(["m1", "m2", "m1", "never"])
        assert found == {
            "m1": StoredMessage.from_doc(_doc("m1", T1, 1)),
            "m2": StoredMessage.from_doc(_doc("m2", T2, 1)),
        }
        changed = dataclasses.replace(
            found["m1"],
            data="edited",
            edited_ts=datetime(2026, 3, 1, 0, 5, 0, 250000, tzinfo=UTC),
            reactions=(Reaction("👍", (BOB, ALICE)), Reaction(":tada:", (CAROL,))),
            thread_replies=2,
            thread_last_reply_ts=datetime(2026, 3, 1, 0, 6, tzinfo=UTC),
            last_change=7,
        )
        await backend.states.save([changed, dataclasses.replace(changed, id="ghost")])
        await backend.states.renumber({"m2": 4, "ghost": 9})
        assert await backend.states.by_id(["m1", "m2", "ghost"]) == {
            "m1": changed,
            "m2": dataclasses.replace(found["m2"], count=4),
        }
        tombstone = dataclasses.replace(
            changed,
            data="",
            deleted=True,
            reactions=(),
            thread_replies=0,
            thread_last_reply_ts=None,
            last_change=9,
        )
        await backend.states.save([tombstone])
        assert await backend.states.by_id(["m1"]) == {"m1": tombstone}
        assert await backend.states.by_id([]) == {}

    async def test_a_change_document_is_stored_once_per_id(self, backend: Backend) -> None:
        """The first document stored under an ``_id`` stays: a change consumed again, in the same
        call or a later one, leaves it as it was; other channels keep their own."""
        root = StoredMessage.from_doc(_doc("m1", T1, 1))
        bucket = bucket_key(T1, 0)

        def edit(data: str) -> Document:
            return change_doc("edited", 5, bucket, 3, dataclasses.replace(root, data=data))

        reacted = dataclasses.replace(root, reactions=(Reaction("👍", (BOB,)),), last_change=6)
        reaction = change_doc("reaction", 6, bucket, 3, reacted)
        elsewhere = change_doc(
            "edited", 5, bucket_key(T2, 0), 1, StoredMessage.from_doc(_doc("m9", T2, 1))
        )
        await backend.states.insert_changes([])
        await backend.states.insert_changes([edit("first"), edit("second")])
        await backend.states.insert_changes([edit("third"), reaction, elsewhere])
        assert await backend.changes_in(T1) == [edit("first"), reaction]
        assert await backend.changes_in(T2) == [elsewhere]
        assert await backend.changes_in(T3) == []

    async def test_read_states_are_replaced_whole_and_listed_per_user(
        self, backend: Backend
    ) -> None:
        """A member never written loads as None; a save replaces a member's state whole (DMs,
        their senders, mentions and own messages included); a user's states are listed by
        channel."""
        reads = backend.reads
        assert await reads.load(T1, [ALICE, BOB, ALICE]) == {ALICE: None, BOB: None}
        assert await reads.load(T1, []) == {}
        assert await reads.of_user(ALICE) == {}
        first = ReadState(seq=5, count=3, dms=(7,), mentions=(7, 9), own=(8,), dm_from=((7, BOB),))
        await reads.save(T1, {ALICE: first, BOB: ReadState(2, 1)})
        await reads.save(T2, {ALICE: ReadState(4, 4)})
        assert await reads.load(T1, [ALICE, BOB, CAROL]) == {
            ALICE: first,
            BOB: ReadState(2, 1),
            CAROL: None,
        }
        moved = ReadState(seq=9, count=5)
        await reads.save(T1, {ALICE: moved})
        assert await reads.load(T1, [ALICE]) == {ALICE: moved}
        assert await reads.of_user(ALICE) == {T1: moved, T2: ReadState(4, 4)}
        assert await reads.of_user(BOB) == {T1: ReadState(2, 1)}
        assert await reads.of_user(CAROL) == {}
        # Several channels at once, as the life-cycle pass loads and saves them.
        await reads.save_many({T2: {BOB: ReadState(3, 2)}, T3: {CAROL: ReadState(1, 1)}})
        assert await reads.load_many({T1: [ALICE, CAROL], T3: [CAROL], T2: []}) == {
            T1: {ALICE: moved, CAROL: None},
            T3: {CAROL: ReadState(1, 1)},
            T2: {},
        }
        assert await reads.of_user(BOB) == {T1: ReadState(2, 1), T2: ReadState(3, 2)}

    async def test_membership_follows_additions_and_removals(self, backend: Backend) -> None:
        """A user is a member of exactly the teams they were added to and not removed from
        since."""
        await backend.seed_member(T1, ALICE, True)
        await backend.seed_member(T1, BOB, True)
        await backend.seed_member(T2, BOB, True)
        await backend.seed_member(T1, BOB, False)
        await backend.seed_member(T2, CAROL, False)  # removing a non-member changes nothing
        asked = [(T1, ALICE), (T1, BOB), (T2, BOB), (T2, ALICE), (T2, CAROL), (T3, ALICE)]
        assert [await backend.members.is_member(t, u) for t, u in asked] == [
            True,
            False,
            True,
            False,
            False,
            False,
        ]
