"""MongoDB-protocol round trips against the local FerretDB started by the stack."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from chatcore.mongo import (
    Document,
    IndexSpec,
    database,
    ensure_indexes,
    is_ferretdb,
    make_mongo_client,
    ping,
)
from chatcore.settings import Settings


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[AsyncMongoClient[Document]]:
    """A client for the stack's database, closed after the test."""
    mongo = make_mongo_client(settings)
    yield mongo
    await mongo.close()


def _message(channel: str, seq: int) -> Document:
    return {
        "id": uuid.uuid4().hex,
        "channel_id": channel,
        "seq": seq,
        "to": "*",
        "type": "text",
        "data": f"hello {seq}",
        "from": "user-1",
        "ts": datetime.now(UTC).replace(microsecond=0),
    }


async def test_ping_answers(client: AsyncMongoClient[Document]) -> None:
    """The readiness probe sees the database."""
    assert await ping(client)


async def test_round_trip_in_seq_order(
    client: AsyncMongoClient[Document], settings: Settings
) -> None:
    """Inserted messages come back unchanged, ordered by seq, filtered by channel."""
    db = database(client, settings)
    channel = f"ch-{uuid.uuid4().hex}"
    docs = [_message(channel, seq) for seq in (3, 1, 2)]
    await db.messages.insert_many([dict(d) for d in docs])
    await db.messages.insert_one(_message(f"other-{uuid.uuid4().hex}", 1))
    found = await db.messages.find({"channel_id": channel}, {"_id": 0}).sort("seq", 1).to_list()
    assert found == sorted(docs, key=lambda d: d["seq"])


async def test_unique_channel_seq_rejects_duplicate(
    client: AsyncMongoClient[Document], settings: Settings
) -> None:
    """The unique (channel_id, seq) index refuses a second message at the same position."""
    db = database(client, settings)
    channel = f"ch-{uuid.uuid4().hex}"
    await db.messages.insert_one(_message(channel, 7))
    with pytest.raises(DuplicateKeyError):
        await db.messages.insert_one(_message(channel, 7))
    assert await db.messages.count_documents({"channel_id": channel}) == 1


async def test_ensure_indexes_is_idempotent(
    client: AsyncMongoClient[Document], settings: Settings
) -> None:
    """Creating the indexes again (every service start does) succeeds and changes nothing."""
    db = database(client, settings)
    before = {ix["name"] async for ix in await db.messages.list_indexes()}
    await ensure_indexes(db)
    after = {ix["name"] async for ix in await db.messages.list_indexes()}
    assert before == after >= {"id_1", "channel_id_1_seq_1"}


async def test_only_unique_indexes_are_created_on_ferretdb(
    client: AsyncMongoClient[Document], settings: Settings
) -> None:
    """A team of 1,000 members can be stored: FerretDB gets no index over the members array (nor
    any other non-unique one, which it never uses); MongoDB gets it."""
    db = database(client, settings)
    spec = IndexSpec("test_teams", (("members", ASCENDING),), multikey=True)
    await ensure_indexes(db, [spec])
    members = [uuid.uuid4().hex for _ in range(1000)]
    await db.test_teams.insert_one({"_id": uuid.uuid4().hex, "members": members})
    found = await db.test_teams.find_one({"members": members[500]})
    assert found is not None
    names = {ix["name"] async for ix in await db.test_teams.list_indexes()}
    assert (spec.name in names) is not await is_ferretdb(db)
