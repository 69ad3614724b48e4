"""The controller's store contract over the MongoDB implementations, against the stack's
FerretDB (a database of its own); the same tests run over the in-memory fakes in tests/unit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from chatcore import schema
from chatcore.channel_heads import MongoChannelHeads
from chatcore.mongo import INDEXES, Document, ensure_indexes, make_mongo_client
from chatcore.settings import Settings
from services.controller.directory import AttachmentView, MongoDirectory
from services.controller.store import MongoMessageStore
from services.management.membership_index import MongoMembershipIndex
from services.management.model import MembershipChange, OutboxEvent
from tests.unit.controller_store_contract import Backend, ControllerStoreContract


@pytest.fixture(scope="module")
async def contract_db(settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    """A database used by this module alone, with the services' indexes; dropped afterwards."""
    client = make_mongo_client(settings)
    name = f"chat_test_ctrl_contract_{uuid.uuid4().hex[:12]}"
    db = client[name]
    await ensure_indexes(db, INDEXES)
    try:
        yield db
    finally:
        await client.drop_database(name)
        await client.close()


class TestMongoControllerStores(ControllerStoreContract):
    @pytest.fixture
    async def backend(self, contract_db: AsyncDatabase[Document]) -> Backend:
        """The MongoDB implementations over emptied collections."""
        for collection in (
            schema.MESSAGES,
            schema.TEAMS,
            schema.ATTACHMENTS,
            schema.USERS,
            schema.CHANNELS,
            schema.MEMBERSHIPS,
        ):
            await contract_db[collection].delete_many({})

        index = MongoMembershipIndex(contract_db)

        async def seed_team(team_id: str, doc: Document) -> None:
            # As the management service writes it: the team, then its outbox's events applied
            # to the membership index.
            await contract_db[schema.TEAMS].insert_one({schema.ID: team_id, **doc})
            for user_id in doc["members"]:
                event = OutboxEvent(uuid.uuid4().hex, user_id, MembershipChange.ADDED, "", 0, "")
                await index.apply(team_id, event)

        async def seed_attachment(view: AttachmentView) -> None:
            await contract_db[schema.ATTACHMENTS].insert_one(
                {
                    schema.ID: view.attachment_id,
                    schema.ATTACHMENT_TEAM_ID: view.team_id,
                    schema.ATTACHMENT_KIND: view.kind,
                    schema.ATTACHMENT_STATUS: view.status,
                    schema.ATTACHMENT_UPLOADER: view.uploader,
                }
            )

        async def seed_user(user_id: str, disabled: bool) -> None:
            await contract_db[schema.USERS].insert_one(
                {schema.ID: user_id, schema.USER_DISABLED: disabled}
            )

        heads = MongoChannelHeads(contract_db)
        return Backend(
            MongoMessageStore(contract_db),
            MongoDirectory(contract_db),
            seed_team,
            seed_attachment,
            seed_user,
            heads,
            heads.range,
        )


async def test_parallel_slices_report_clashes_at_their_batch_positions(
    contract_db: AsyncDatabase[Document],
) -> None:
    """A batch inserted as concurrent slices reports each clash at its position in the whole
    batch, and stores everything else once."""
    await contract_db[schema.MESSAGES].delete_many({})
    store = MongoMessageStore(contract_db, parallel=3)
    channel = uuid.uuid4().hex
    docs = [
        {"id": f"p{i}", "channel_id": channel, "seq": i, "to": "*", "type": "text", "data": "x"}
        for i in range(200)
    ]
    assert await store.insert_unordered(docs[::7]) == {}
    failures = await store.insert_unordered(docs)
    assert sorted(failures) == list(range(0, 200, 7))
    assert await contract_db[schema.MESSAGES].count_documents({"channel_id": channel}) == 200
