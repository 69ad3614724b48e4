"""The controller's store contract over the in-memory fakes (the same tests run against MongoDB
in tests/integration/test_controller_store_contract.py)."""

from __future__ import annotations

import pytest

from chatcore.mongo import Document
from services.controller.directory import AttachmentView
from tests.unit.controller_fakes import MemoryChannelHeads, MemoryDirectory, MemoryMessageStore
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

        heads = MemoryChannelHeads()
        return Backend(
            MemoryMessageStore(),
            directory,
            seed_team,
            seed_attachment,
            seed_user,
            heads,
            heads.range,
        )
