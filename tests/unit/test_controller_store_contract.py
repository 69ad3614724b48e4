"""The controller's store contract over the in-memory fakes (the same tests run against MongoDB
in tests/integration/test_controller_store_contract.py)."""

from __future__ import annotations

import pytest

from chatcore.mongo import Document
from services.controller.directory import AttachmentView
from tests.unit.controller_fakes import (
    MemoryChannelHeads,
    MemoryDirectory,
    MemoryMembers,
    MemoryMessageStates,
    MemoryMessageStore,
    MemoryReadStates,
)
from tests.unit.controller_store_contract import Backend, ControllerStoreContract


class TestMemoryControllerStores(ControllerStoreContract):
    @pytest.fixture
    def backend(self) -> Backend:
        """Fresh fakes per test."""
        directory = MemoryDirectory()

        async def seed_team(team_id: str, doc: Document) -> None:
            directory.teams[team_id] = dict(doc)

        async def seed_attachment(view: AttachmentView) -> None:
            directory.attachments[view.attachment_id] = view

        async def seed_user(user_id: str, disabled: bool) -> None:
            if disabled:
                directory.disabled_users.add(user_id)

        members = MemoryMembers()

        async def seed_member(team_id: str, user_id: str, present: bool) -> None:
            if present:
                members.members.add((team_id, user_id))
            else:
                members.members.discard((team_id, user_id))

        store = MemoryMessageStore()
        states = MemoryMessageStates(store)

        async def changes_in(channel_id: str) -> list[Document]:
            docs = [d for d in states.changes.values() if d["channel_id"] == channel_id]
            return sorted(docs, key=lambda d: (d["seq"], d["_id"]))

        heads = MemoryChannelHeads()
        return Backend(
            store=store,
            directory=directory,
            seed_team=seed_team,
            seed_attachment=seed_attachment,
            seed_user=seed_user,
            heads=heads,
            range_of=heads.range,
            states=states,
            reads=MemoryReadStates(),
            members=members,
            seed_member=seed_member,
            changes_in=changes_in,
        )
