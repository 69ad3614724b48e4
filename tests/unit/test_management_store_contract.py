"""The store contract over the in-memory fakes (the same tests run against MongoDB in
tests/integration/test_management_store_contract.py)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytest

from chatcore.message_state import StoredMessage
from services.management.store import ChangeEntry
from tests.unit.management_fakes import (
    MemoryAttachmentStore,
    MemoryMembershipIndex,
    MemoryMessageStore,
    MemoryTeamStore,
)
from tests.unit.management_store_contract import Backend, StoreContract


class TestMemoryStores(StoreContract):
    @pytest.fixture
    def backend(self) -> Backend:
        """Fresh fakes per test."""
        messages = MemoryMessageStore()
        # As many records as the MongoDB store's walk reads in the contract's buckets of 4.
        messages.walk_span = 32
        counter = itertools.count(1)

        async def seed(found: Sequence[StoredMessage]) -> None:
            messages.messages.extend(found)

        async def seed_changes(found: Sequence[tuple[ChangeEntry, int]]) -> None:
            messages.change_log.extend(found)

        teams = MemoryTeamStore()
        return Backend(
            teams=teams,
            messages=messages,
            attachments=MemoryAttachmentStore(),
            seed_messages=seed,
            new_id=lambda: f"{next(counter):032x}",
            index=MemoryMembershipIndex(teams),
            seed_changes=seed_changes,
        )
