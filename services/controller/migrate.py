"""The one-time migration that puts messages stored before history buckets existed into buckets.

Run by every controller at start-up, before it consumes; ``chatcore.migrations`` marks it done.
Messages without a ``bucket`` are numbered downwards from -1 per channel, newest first,
``BUCKET_SIZE`` to a bucket, so they sit below every bucket a controller reserves (those count up
from 0) and keep the seq order across buckets. The numbering depends only on the stored messages, so
two controllers that run it at once write the same values, and a run cut short is simply done again.

An upgrade from a version without buckets stops the old controllers first: one of them still
running after the marker is written would store messages no page can find (rerun with
``python -m services.controller.migrate --force`` if that happened).
"""

from __future__ import annotations

import argparse
import asyncio
from collections import defaultdict
from collections.abc import Sequence

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema as s
from chatcore.buckets import BUCKET_SIZE, bucket_key
from chatcore.channel_heads import MongoChannelHeads
from chatcore.logging import get_logger
from chatcore.migrations import run_once
from chatcore.mongo import Document, database, database_unavailable, make_mongo_client
from chatcore.settings import Settings

_log = get_logger("controller.migrate")

MIGRATION = "message-buckets-v1"


def number_older(seqs_and_ids: Sequence[tuple[int, object]], size: int) -> dict[object, int]:
    """Bucket numbers for one channel's unbucketed messages: -1 for the newest ``size``, and on."""
    newest_first = sorted(seqs_and_ids, key=lambda pair: pair[0], reverse=True)
    return {doc_id: -(index // size) - 1 for index, (_, doc_id) in enumerate(newest_first)}


async def bucket_older_messages(
    db: AsyncDatabase[Document], *, force: bool = False, size: int = BUCKET_SIZE
) -> int:
    """Bucket every message stored without one, once; how many. ``Unavailable`` on failure."""

    async def migrate() -> int:
        return await _bucket(db, size)

    return await run_once(db, MIGRATION, migrate, force=force)


async def _bucket(db: AsyncDatabase[Document], size: int) -> int:
    heads = MongoChannelHeads(db)
    try:
        channels: dict[str, list[tuple[int, object]]] = defaultdict(list)
        cursor = db[s.MESSAGES].find(
            {s.MESSAGE_BUCKET: {"$exists": False}},
            {s.ID: 1, s.MESSAGE_CHANNEL_ID: 1, s.MESSAGE_SEQ: 1},
        )
        async for doc in cursor:
            channels[str(doc[s.MESSAGE_CHANNEL_ID])].append((int(doc[s.MESSAGE_SEQ]), doc[s.ID]))
        total = 0
        for channel_id, found in channels.items():
            numbers = number_older(found, size)
            by_bucket: dict[int, list[object]] = defaultdict(list)
            for doc_id, n in numbers.items():
                by_bucket[n].append(doc_id)
            # One update per bucket, never a bulk of single updates: FerretDB 1.24 runs each
            # statement of a bulk on a PostgreSQL connection of its own at once, and a bulk
            # larger than its pool (50) deadlocks the whole server.
            for n, doc_ids in sorted(by_bucket.items()):
                key = bucket_key(channel_id, n)
                await db[s.MESSAGES].update_many(
                    {s.ID: {"$in": doc_ids}}, {"$set": {s.MESSAGE_BUCKET: key}}
                )
            await heads.extend_low(channel_id, min(numbers.values()))
            total += len(numbers)
            _log.info("channel_bucketed", channel_id=channel_id, messages=len(numbers))
    except PyMongoError as exc:
        raise database_unavailable(exc) from exc
    return total


async def _main(force: bool) -> int:
    settings = Settings.from_env()
    client = make_mongo_client(settings)
    try:
        done = await bucket_older_messages(database(client, settings), force=force)
    finally:
        await client.close()
    print(f"{MIGRATION}: {done} messages bucketed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bucket messages stored without a bucket.")
    parser.add_argument("--force", action="store_true", help="run even if marked as done")
    args = parser.parse_args(argv)
    return asyncio.run(_main(args.force))


if __name__ == "__main__":
    raise SystemExit(main())
