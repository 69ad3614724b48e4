"""The store contract over the MongoDB stores, against the stack's FerretDB (a database of its
own); the same tests run over the in-memory fakes in tests/unit."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from chatcore import schema
from chatcore.buckets import BucketAllocator
from chatcore.channel_heads import MongoChannelHeads
from chatcore.message_state import StoredMessage
from chatcore.mongo import INDEXES, Document, ensure_indexes, make_mongo_client
from chatcore.settings import Settings
from services.controller.lifecycle_store import change_doc, message_doc
from services.management.attachment_store import ATTACHMENT_INDEXES, MongoAttachmentStore
from services.management.history_store import MongoMessageStore
from services.management.membership_index import MEMBERSHIP_INDEXES, MongoMembershipIndex
from services.management.model import MembershipChange, OutboxEvent
from services.management.store import MANAGEMENT_INDEXES, ChangeEntry, MongoTeamStore
from tests.unit.management_store_contract import (
    T0,
    Backend,
    StoreContract,
    _team,
    _walk_pages,
)


@pytest.fixture(scope="module")
async def contract_db(settings: Settings) -> AsyncIterator[AsyncDatabase[Document]]:
    """A database used by this module alone, with the services' indexes; dropped afterwards."""
    client = make_mongo_client(settings)
    name = f"chat_test_contract_{uuid.uuid4().hex[:12]}"
    db = client[name]
    await ensure_indexes(
        db, (*INDEXES, *MANAGEMENT_INDEXES, *ATTACHMENT_INDEXES, *MEMBERSHIP_INDEXES)
    )
    try:
        yield db
    finally:
        await client.drop_database(name)
        await client.close()


class TestMongoStores(StoreContract):
    @pytest.fixture
    async def backend(self, contract_db: AsyncDatabase[Document]) -> Backend:
        """The MongoDB stores over emptied collections."""
        for collection in (
            schema.TEAMS,
            schema.MESSAGES,
            schema.ATTACHMENTS,
            schema.CHANNELS,
            schema.MEMBERSHIPS,
            schema.CHANGES,
        ):
            await contract_db[collection].delete_many({})
        heads = MongoChannelHeads(contract_db)
        # Tiny buckets, placed by the controller's own allocator, so pages cross buckets.
        buckets = BucketAllocator(heads, size=4)

        async def seed(found: Sequence[StoredMessage]) -> None:
            keys = (await buckets.assign([m.channel_id for m in found])).keys
            await contract_db[schema.MESSAGES].insert_many(
                [
                    {schema.MESSAGE_BUCKET: key, **message_doc(m)}
                    for m, key in zip(found, keys, strict=True)
                ]
            )

        async def seed_changes(found: Sequence[tuple[ChangeEntry, int]]) -> None:
            # As the controller stores them: a thread change in its reply's bucket, any other
            # change in the next place of the channel's log, like a message.
            docs = []
            for entry, count in found:
                at = {
                    schema.MESSAGE_CHANNEL_ID: entry.message.channel_id,
                    schema.MESSAGE_SEQ: entry.seq,
                }
                reply = await contract_db[schema.MESSAGES].find_one(at)
                if reply is not None:
                    bucket = str(reply[schema.MESSAGE_BUCKET])
                else:
                    (bucket,) = (await buckets.assign([entry.message.channel_id])).keys
                docs.append(change_doc(entry.change, entry.seq, bucket, count, entry.message))
            await contract_db[schema.CHANGES].insert_many(docs)

        return Backend(
            teams=MongoTeamStore(contract_db),
            messages=MongoMessageStore(contract_db, heads),
            attachments=MongoAttachmentStore(contract_db),
            seed_messages=seed,
            new_id=lambda: uuid.uuid4().hex,
            index=MongoMembershipIndex(contract_db),
            seed_changes=seed_changes,
        )

    async def test_acknowledging_a_drained_outbox_writes_nothing(
        self, backend: Backend, contract_db: AsyncDatabase[Document]
    ) -> None:
        """A flush that finds the outbox empty and the flag clear (a retry pass that listed the
        team before a request drained it) leaves the document as it was: no revision, no fence."""
        team_id = uuid.uuid4().hex
        await backend.teams.insert(
            _team(team_id), OutboxEvent("e" * 32, "", MembershipChange.ADDED, "s", 1, "")
        )
        await backend.teams.acknowledge(team_id, await backend.teams.outbox(team_id), fence=3)
        drained = await contract_db[schema.TEAMS].find_one({schema.ID: team_id})
        assert drained is not None
        assert drained[schema.TEAM_OUTBOX_PENDING] is False
        await backend.teams.acknowledge(team_id, [], fence=4)
        assert await contract_db[schema.TEAMS].find_one({schema.ID: team_id}) == drained


async def test_a_walk_goes_on_through_buckets_reserved_and_never_filled(
    contract_db: AsyncDatabase[Document],
) -> None:
    """A channel whose first record (seq 0) is followed by 20 buckets a dead controller reserved
    and never filled, then more messages: every page walk, forward from -1 or 0 and backward,
    ends, gives each message once in order, and no cursor it hands out stands still."""
    heads = MongoChannelHeads(contract_db)
    buckets = BucketAllocator(heads, size=4)
    store = MongoMessageStore(contract_db, heads, page_buckets=2)
    channel = uuid.uuid4().hex

    def message(seq: int) -> StoredMessage:
        return StoredMessage(uuid.uuid4().hex, seq, channel, "*", "text", f"m{seq}", "1" * 32, T0)

    async def store_all(found: Sequence[StoredMessage]) -> None:
        keys = (await buckets.assign([m.channel_id for m in found])).keys
        docs = [
            {schema.MESSAGE_BUCKET: k, **message_doc(m)} for m, k in zip(found, keys, strict=True)
        ]
        await contract_db[schema.MESSAGES].insert_many(docs)

    await store_all([message(0)])
    # The rest of seq 0's bucket and 20 more: reserved, never written.
    await buckets.assign([channel] * (3 + 4 * 20))
    later = [message(seq) for seq in range(100, 106)]
    await store_all(later)
    expected = [0, *(m.seq for m in later)]

    for start in (-1, 0):
        seqs, _short = await _walk_pages(
            store, channel, "2" * 32, forward=True, limit=3, start=start
        )
        assert seqs == [s for s in expected if s > start]
    back, _short = await _walk_pages(store, channel, "2" * 32, forward=False, limit=3)
    assert back == sorted(expected, reverse=True)
    # The changes feed from seq 0 passes the empty buckets and stops after two with messages.
    fed = await store.changes(channel, "2" * 32, after=0, limit=10)
    assert ([e.seq for e in fed.found], fed.resume_at) == ([100, 101, 102, 103], 103)
    rest = await store.changes(channel, "2" * 32, after=103, limit=10)
    assert ([e.seq for e in rest.found], rest.resume_at) == ([104, 105], None)


async def test_a_history_walk_counts_buckets_of_edits_and_reactions_toward_its_share(
    contract_db: AsyncDatabase[Document],
) -> None:
    """Eight buckets holding only changes (edits of the first message) between two messages: a
    history page reads its share of them and says where to go on, rather than read them all in
    one request; following the cursors gives both messages once."""
    heads = MongoChannelHeads(contract_db)
    buckets = BucketAllocator(heads, size=4)
    store = MongoMessageStore(contract_db, heads, page_buckets=2)
    channel = uuid.uuid4().hex
    first = StoredMessage(uuid.uuid4().hex, 1, channel, "*", "text", "m1", "1" * 32, T0)
    last = StoredMessage(uuid.uuid4().hex, 100, channel, "*", "text", "m100", "1" * 32, T0)
    (key,) = (await buckets.assign([channel])).keys
    await contract_db[schema.MESSAGES].insert_one(
        {schema.MESSAGE_BUCKET: key, **message_doc(first)}
    )
    await buckets.assign([channel] * 3)  # the rest of the first bucket
    edits = range(10, 42)
    keys = (await buckets.assign([channel] * len(edits))).keys
    await contract_db[schema.CHANGES].insert_many(
        [change_doc("edited", seq, k, 1, first) for seq, k in zip(edits, keys, strict=True)]
    )
    (key,) = (await buckets.assign([channel])).keys
    await contract_db[schema.MESSAGES].insert_one({schema.MESSAGE_BUCKET: key, **message_doc(last)})
    seqs, short = await _walk_pages(store, channel, "2" * 32, forward=True, limit=5)
    assert seqs == [1, 100]
    assert short >= 3  # eight buckets of changes, two a request: four pages at least
