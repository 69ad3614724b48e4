"""The message store behind a narrow interface, with its MongoDB implementation.

Two operations are all the batch needs: an unordered bulk insert that reports which documents were
not written (by position, with the server's error code), and a lookup of where given message ids
are stored. FerretDB reports duplicate keys by position only, without naming the index that
clashed, so the classification of duplicates happens in ``batch.py`` from the lookup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, PyMongoError

from chatcore.errors import Unavailable
from chatcore.mongo import Document, database_unavailable, each_bounded
from chatcore.schema import (
    ID,
    MESSAGE_BUCKET,
    MESSAGE_CHANNEL_ID,
    MESSAGE_ID,
    MESSAGE_SEQ,
    MESSAGES,
)

# Per-document error codes that say "the server could not do it now", not "this document is bad":
# the batch is retried instead of dead-lettering the document. (Shutdown, stepdown, not primary,
# interrupted, timeouts, network.)
_TRANSIENT_CODES = frozenset({6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436})


@dataclass(frozen=True, slots=True)
class StoredPosition:
    """Where a stored message sits: its channel and seq (and its history bucket, which does not
    take part in comparisons: the same message is at the same position in any bucket)."""

    channel_id: str
    seq: int
    bucket: str = field(default="", compare=False)


class MessageStore(Protocol):
    async def insert_unordered(self, docs: Sequence[Document]) -> dict[int, int]:
        """Insert every document it can; return ``{position: error code}`` of those not written.

        Raises ``Unavailable`` when the database cannot be reached or the write as a whole failed.
        """

    async def positions(self, ids: Sequence[str]) -> dict[str, StoredPosition]:
        """Where the messages with these ids are stored; absent ids are missing from the result."""

    async def in_bucket(self, bucket: str) -> dict[str, StoredPosition]:
        """Every message stored in one history bucket, by id (one equality query)."""


def _write_failures(details: Mapping[str, Any]) -> dict[int, int]:
    if details.get("writeConcernErrors"):
        raise Unavailable("database write concern not satisfied")
    failures: dict[int, int] = {}
    for error in details.get("writeErrors", ()):
        code = int(error.get("code", 0))
        if code in _TRANSIENT_CODES:
            raise Unavailable(f"database write failed transiently (code {code})")
        failures[int(error["index"])] = code
    return failures


# A slice smaller than this is not worth a command of its own.
_MIN_SLICE = 50


class MongoMessageStore:
    def __init__(self, db: AsyncDatabase[Document], *, parallel: int = 1) -> None:
        self._messages = db[MESSAGES]
        self._parallel = max(1, parallel)

    async def insert_unordered(self, docs: Sequence[Document]) -> dict[int, int]:
        if not docs:
            return {}
        # Contiguous slices inserted at once: one insert command is served by one database
        # connection, i.e. one core of FerretDB and PostgreSQL.
        size = max(_MIN_SLICE, -(-len(docs) // self._parallel))
        starts = range(0, len(docs), size)
        results = await asyncio.gather(*(self._insert(docs[i : i + size]) for i in starts))
        return {
            start + position: code
            for start, failures in zip(starts, results, strict=True)
            for position, code in failures.items()
        }

    async def _insert(self, docs: Sequence[Document]) -> dict[int, int]:
        # Copies: pymongo adds an ``_id`` to what it inserts, and a retried batch must not carry
        # the ids of a failed attempt.
        try:
            await self._messages.insert_many([dict(doc) for doc in docs], ordered=False)
        except BulkWriteError as exc:
            return _write_failures(exc.details)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return {}

    async def in_bucket(self, bucket: str) -> dict[str, StoredPosition]:
        try:
            docs = await self._messages.find({MESSAGE_BUCKET: bucket}, _POSITION).to_list(None)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return dict(_position(doc) for doc in docs)

    async def positions(self, ids: Sequence[str]) -> dict[str, StoredPosition]:
        if not ids:
            return {}

        # One equality query per id, not one ``$in``: FerretDB 1.24 pushes equality down to
        # PostgreSQL but evaluates ``$in`` itself over the whole collection (measured: 22 s at
        # 257k messages, past the socket timeout, so a batch with duplicates never completed;
        # 0.13 s per equality query). MongoDB serves both from the unique index.
        async def lookup(message_id: str) -> Document | None:
            return await self._messages.find_one({MESSAGE_ID: message_id}, _POSITION)

        try:
            found = await each_bounded(lookup, dict.fromkeys(ids))
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return dict(_position(doc) for doc in found if doc is not None)


_POSITION = {ID: 0, MESSAGE_ID: 1, MESSAGE_CHANNEL_ID: 1, MESSAGE_SEQ: 1, MESSAGE_BUCKET: 1}


def _position(doc: Document) -> tuple[str, StoredPosition]:
    position = StoredPosition(
        str(doc[MESSAGE_CHANNEL_ID]), int(doc[MESSAGE_SEQ]), str(doc.get(MESSAGE_BUCKET) or "")
    )
    return str(doc[MESSAGE_ID]), position
