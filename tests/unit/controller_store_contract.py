"""The contract of the controller's message store and directory, written once for every
implementation.

``ControllerStoreContract`` holds the tests; a test module subclasses it and supplies a
``backend`` fixture: tests/unit/test_controller_store_contract.py runs it over the in-memory fakes
of tests/unit/controller_fakes.py, tests/integration/test_controller_store_contract.py over the
MongoDB implementations against the stack's FerretDB. A fake that drifts from the database fails
here first. This module holds no tests of its own (pytest collects only the subclasses).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from chatcore.buckets import BucketRange, ChannelHeads
from chatcore.mongo import Document
from services.controller.directory import AttachmentView, Directory, MembershipView
from services.controller.store import DUPLICATE_KEY, MessageStore, StoredPosition

T1, T2, T3 = (c * 32 for c in "abc")
ALICE, BOB, CAROL = (c * 32 for c in "123")


@dataclass
class Backend:
    """One implementation of each interface, and ways to put in what other services write."""

    store: MessageStore
    directory: Directory
    seed_team: Callable[[str, Document], Awaitable[None]]
    seed_attachment: Callable[[AttachmentView], Awaitable[None]]
    seed_user: Callable[[str, bool], Awaitable[None]]
    heads: ChannelHeads
    range_of: Callable[[str], Awaitable[BucketRange | None]]


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
        assert [await backend.heads.reserve(T1) for _ in range(3)] == [0, 1, 2]
        assert await backend.heads.reserve(T2) == 0
        assert await backend.range_of(T1) == BucketRange(0, 3)
        assert await backend.range_of(T2) == BucketRange(0, 1)
