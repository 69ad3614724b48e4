"""MongoDB-protocol client factory and the indexes every collection needs.

Works on FerretDB (local) and MongoDB (production): no transactions, change streams, $lookup or TTL
indexes are used anywhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pymongo import ASCENDING, AsyncMongoClient, IndexModel, ReplaceOne, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.errors import Unavailable
from chatcore.settings import Settings

Document = dict[str, Any]

K = TypeVar("K")
T = TypeVar("T")

# How many queries one call keeps in flight at once, and how writes of many documents are sent.
# FerretDB 1.24 has one pool of 50 PostgreSQL connections, and an update of an existing document
# holds its read's connection while it takes a second one to write; inside one `update` command
# it keeps every statement's read connection until the command ends. So about 50 updates in
# flight at once, or one command of about 50 statements, take every connection and wait for ever:
# the whole database stops answering until FerretDB restarts. Reads hold one connection, but a
# thousand of them still starve every other client. Commands of 4 writes, 4 commands in flight,
# hold at most 20 connections and still write in parallel. MongoDB is not bothered by any of it.
DB_CONCURRENCY = 12
WRITES_PER_COMMAND = 4
WRITE_COMMANDS_IN_FLIGHT = 4


async def each_bounded(
    fn: Callable[[K], Awaitable[T]], keys: Iterable[K], limit: int = DB_CONCURRENCY
) -> list[T]:
    """``fn`` over ``keys`` with at most ``limit`` awaiting at once; results in ``keys``' order.

    Use it, not a bare ``asyncio.gather``, for per-key queries; writes go through
    ``bulk_write_chunked``."""
    slots = asyncio.Semaphore(limit)

    async def one(key: K) -> T:
        async with slots:
            return await fn(key)

    return list(await asyncio.gather(*(one(k) for k in keys)))


async def each_keyed(
    fn: Callable[[K], Awaitable[T]], keys: Iterable[K], limit: int = DB_CONCURRENCY
) -> dict[K, T]:
    """``each_bounded`` over the distinct keys, answered as a mapping key -> result."""
    distinct = list(dict.fromkeys(keys))
    return dict(zip(distinct, await each_bounded(fn, distinct, limit), strict=True))


async def bulk_write_chunked(
    collection: AsyncCollection[Document],
    requests: Sequence[UpdateOne | ReplaceOne[Document]],
    in_flight: int = WRITE_COMMANDS_IN_FLIGHT,
) -> None:
    """``bulk_write`` (unordered) in commands of ``WRITES_PER_COMMAND``, at most ``in_flight`` at
    once: for writes of distinct documents, whose order does not matter. Background writes pass
    1, so they take one database connection and leave the rest to the latency-bound ones."""
    chunks = [
        list(requests[start : start + WRITES_PER_COMMAND])
        for start in range(0, len(requests), WRITES_PER_COMMAND)
    ]

    async def send(chunk: list[UpdateOne | ReplaceOne[Document]]) -> None:
        await collection.bulk_write(chunk, ordered=False)

    await each_bounded(send, chunks, in_flight)


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
    # A thread's replies.
    IndexSpec(s.MESSAGES, ((s.MESSAGE_THREAD_ID, ASCENDING), (s.MESSAGE_SEQ, ASCENDING))),
    # The changes feed walks a channel's buckets, like history pages.
    IndexSpec(s.CHANGES, ((s.MESSAGE_BUCKET, ASCENDING), (s.CHANGE_SEQ, ASCENDING))),
    # A read position given as the seq of a change.
    IndexSpec(s.CHANGES, ((s.CHANGE_CHANNEL_ID, ASCENDING), (s.CHANGE_SEQ, ASCENDING))),
    # A member's read state in every team at once (team lists, hello).
    IndexSpec(s.READS, ((s.READ_USER_ID, ASCENDING),)),
)


def make_mongo_client(
    settings: Settings, *, long_running: bool = False
) -> AsyncMongoClient[Document]:
    """An async client with bounded timeouts so an outage surfaces as an error, not a hang.

    ``long_running``: no socket timeout, for one-time migrations whose single query may scan a
    whole collection (FerretDB answers an ``$exists`` filter only after reading every document).
    """
    return AsyncMongoClient(
        settings.mongo_url,
        serverSelectionTimeoutMS=settings.mongo_timeout_ms,
        connectTimeoutMS=settings.mongo_timeout_ms,
        socketTimeoutMS=None if long_running else max(settings.mongo_timeout_ms * 2, 10000),
        tz_aware=True,
        appname="chatstack",
    )


def database(client: AsyncMongoClient[Document], settings: Settings) -> AsyncDatabase[Document]:
    """The application database named in settings."""
    return client[settings.mongo_db]


# The server's code for a write refused by a unique index (per document in a bulk write's errors).
DUPLICATE_KEY = 11000


def stored_utc(value: datetime) -> datetime:
    """A datetime read back from the database, aware: pymongo hands back naive UTC datetimes
    unless the client is tz-aware."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


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
