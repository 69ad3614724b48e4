"""The controller's store contract over the MongoDB implementations, against the stack's
FerretDB (a database of its own); the same tests run over the in-memory fakes in tests/unit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from chatcore import schema
from chatcore.channel_heads import MongoChannelHeads
from chatcore.mongo import INDEXES, Document, ensure_indexes, make_mongo_client
from chatcore.read_states import MongoReadStates
from chatcore.settings import Settings
from chatcore.unread import ChannelHead, ReadState
from services.controller.directory import AttachmentView, MongoDirectory
from services.controller.lifecycle_store import MongoMembers, MongoMessageStates
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
            schema.CHANGES,
            schema.READS,
        ):
            await contract_db[collection].delete_many({})

        index = MongoMembershipIndex(contract_db)

        async def seed_member(team_id: str, user_id: str, present: bool) -> None:
            # As the management service does: an outbox event applied to the membership index.
            change = MembershipChange.ADDED if present else MembershipChange.REMOVED
            await index.apply(team_id, OutboxEvent(uuid.uuid4().hex, user_id, change, "", 0, ""))

        async def seed_team(team_id: str, doc: Document) -> None:
            # The team, then its members added to the membership index.
            await contract_db[schema.TEAMS].insert_one({schema.ID: team_id, **doc})
            for user_id in doc["members"]:
                await seed_member(team_id, user_id, True)

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

        async def changes_in(channel_id: str) -> list[Document]:
            found = contract_db[schema.CHANGES].find({schema.CHANGE_CHANNEL_ID: channel_id})
            docs = await found.to_list()
            return sorted(docs, key=lambda d: (d[schema.CHANGE_SEQ], d[schema.ID]))

        heads = MongoChannelHeads(contract_db)
        return Backend(
            store=MongoMessageStore(contract_db),
            directory=MongoDirectory(contract_db),
            seed_team=seed_team,
            seed_attachment=seed_attachment,
            seed_user=seed_user,
            heads=heads,
            range_of=heads.range,
            states=MongoMessageStates(contract_db),
            reads=MongoReadStates(contract_db),
            members=MongoMembers(contract_db),
            seed_member=seed_member,
            changes_in=changes_in,
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


async def test_hundreds_of_read_states_and_counters_at_once_leave_ferretdb_answering(
    contract_db: AsyncDatabase[Document],
) -> None:
    """300 members' read states and 300 channels' counters saved in one pass complete, and the
    database answers afterwards (sent as 300 concurrent updates they took every one of
    FerretDB's 50 PostgreSQL connections and hung it until restarted)."""
    reads, heads = MongoReadStates(contract_db), MongoChannelHeads(contract_db)
    team = uuid.uuid4().hex
    users = [uuid.uuid4().hex for _ in range(300)]
    channels = [uuid.uuid4().hex for _ in range(300)]
    await asyncio.wait_for(reads.save(team, dict.fromkeys(users, ReadState(5, 3))), 60)
    counters = ChannelHead(count=1, count_seq=1, last_seq=1)
    await asyncio.wait_for(heads.save_counters_many(dict.fromkeys(channels, counters)), 60)
    loaded = await asyncio.wait_for(reads.load_many({team: users}), 60)
    assert loaded == {team: dict.fromkeys(users, ReadState(5, 3))}
    assert await asyncio.wait_for(heads.heads(channels), 60) == dict.fromkeys(channels, counters)
    assert await contract_db[schema.READS].count_documents({schema.READ_CHANNEL_ID: team}) == 300


async def test_shut_outs_name_recent_disables_read_now_and_live_ended_logins(
    contract_db: AsyncDatabase[Document],
) -> None:
    """What a relay stream opens with: accounts disabled within a token's lifetime and still
    disabled (not older ones, not one enabled again), and the ended logins whose tokens live."""
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    recent, old, enabled, unstamped = (uuid.uuid4().hex for _ in range(4))
    users = contract_db[schema.USERS]
    await users.insert_many(
        [
            {schema.ID: recent, schema.USER_DISABLED: True, schema.USER_DISABLED_AT: now},
            {
                schema.ID: old,
                schema.USER_DISABLED: True,
                schema.USER_DISABLED_AT: now - timedelta(hours=1),
            },
            {schema.ID: enabled, schema.USER_DISABLED: False, schema.USER_DISABLED_AT: now},
            {schema.ID: unstamped, schema.USER_DISABLED: True},
        ]
    )
    live, expired = uuid.uuid4().hex, uuid.uuid4().hex
    await contract_db[schema.ENDED_SESSIONS].insert_many(
        [
            {
                schema.ID: live,
                schema.ENDED_USER_ID: old,
                schema.ENDED_UNTIL: datetime.now(UTC) + timedelta(minutes=10),
            },
            {
                schema.ID: expired,
                schema.ENDED_USER_ID: old,
                schema.ENDED_UNTIL: datetime.now(UTC) - timedelta(minutes=1),
            },
        ]
    )
    directory = MongoDirectory(
        contract_db, token_lifetime_s=905, wall_clock=lambda: now + timedelta(seconds=60)
    )
    state = await directory.shut_out()
    assert state.disabled == {recent}
    assert state.ended == {old: (live,)}
