"""MongoDB-protocol client factory and the indexes every collection needs.

Works on FerretDB (local) and MongoDB (production): no transactions, change streams, $lookup or TTL
indexes are used anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pymongo import ASCENDING, AsyncMongoClient, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.errors import Unavailable
from chatcore.settings import Settings

Document = dict[str, Any]


@dataclass(frozen=True, slots=True)
class IndexSpec:
    """One index: the collection, its ordered keys and whether it is unique."""

    collection: str
    keys: tuple[tuple[str, int], ...]
    unique: bool = False
    # An index over an array field. FerretDB 1.24 (PostgreSQL backend) builds it as one btree
    # entry holding the whole array, so a team of ~80 members already exceeds PostgreSQL's
    # btree row limit and every write to it fails; FerretDB never uses such an index anyway.
    multikey: bool = False

    @property
    def name(self) -> str:
        return "_".join(f"{field}_{direction}" for field, direction in self.keys)


# The message store's indexes; each service passes its own collections' specs to ensure_indexes.
INDEXES: tuple[IndexSpec, ...] = (
    # Exactly-once storage: a redelivered Kafka record upserts onto the same message id.
    IndexSpec(s.MESSAGES, ((s.MESSAGE_ID, ASCENDING),), unique=True),
    # One (channel, seq) slot per message; a page's cursor is looked up by it.
    IndexSpec(
        s.MESSAGES, ((s.MESSAGE_CHANNEL_ID, ASCENDING), (s.MESSAGE_SEQ, ASCENDING)), unique=True
    ),
    # History pages walk a channel's buckets (chatcore.buckets), ordered by seq inside each.
    IndexSpec(s.MESSAGES, ((s.MESSAGE_BUCKET, ASCENDING), (s.MESSAGE_SEQ, ASCENDING))),
)


def make_mongo_client(settings: Settings) -> AsyncMongoClient[Document]:
    """An async client with bounded timeouts so an outage surfaces as an error, not a hang."""
    return AsyncMongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
        socketTimeoutMS=max(settings.mongo_timeout_ms * 2, 10000),
        tz_aware=True,
        appname="chatstack",
    )


def database(client: AsyncMongoClient[Document], settings: Settings) -> AsyncDatabase[Document]:
    """The application database named in settings."""
    return client[settings.mongo_db]


def database_unavailable(exc: PyMongoError) -> Unavailable:
    """A driver error as the family that means "retry later": the type only, never the query."""
    return Unavailable(f"database error: {type(exc).__name__}")


async def is_ferretdb(db: AsyncDatabase[Document]) -> bool:
    """True when the server is FerretDB (its buildInfo names its own version)."""
    info: Mapping[str, Any] = await db.client.admin.command("buildInfo")
    return "ferretdbVersion" in info


async def ensure_indexes(db: AsyncDatabase[Document], specs: Sequence[IndexSpec] = INDEXES) -> None:
    """Create every index (idempotent: an existing identical index is left alone).

    On FerretDB only unique indexes are created, as constraints, and any other one an older start
    created is dropped: FerretDB answers every query without them (its filters reach PostgreSQL as
    containment, which its btrees cannot serve; the local stack adds GIN indexes for that,
    deploy/local/pg_indexes.py), so they only cost writes, and one over an array field
    (``IndexSpec.multikey``) breaks them. MongoDB gets them all.
    """
    try:
        if await is_ferretdb(db):
            for unused in [s for s in specs if not s.unique]:
                collection = db[unused.collection]
                existing = [ix["name"] async for ix in await collection.list_indexes()]
                if unused.name in existing:
                    await collection.drop_index(unused.name)
            specs = [s for s in specs if s.unique]
        # One index per command: FerretDB 1.24 drops the connection when a single createIndexes
        # names several indexes that all exist already.
        for spec in specs:
            model = IndexModel(list(spec.keys), name=spec.name, unique=spec.unique)
            await db[spec.collection].create_indexes([model])
    except PyMongoError as exc:
        raise Unavailable(f"creating indexes failed: {exc}") from exc


async def ping(client: AsyncMongoClient[Document]) -> bool:
    """True when the server answers a ping: the readiness probe of every database user."""
    try:
        reply: Mapping[str, Any] = await client.admin.command("ping")
    except PyMongoError:
        return False
    return bool(reply.get("ok"))
