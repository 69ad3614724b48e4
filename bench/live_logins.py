"""What counting an account's logins costs at each login (``MongoRefreshStore.live_logins``).

    make stack-up
    .venv/bin/python -m bench.live_logins --logins 3 --spent 2880 --runs 30

A login keeps every refresh token it ever used until it expires (30 days; a replayed one must
still be recognised), one per refresh: a page left open refreshes every 15 minutes, 2,880 tokens
a month. The login cap (``CHAT_LOGINS_PER_ACCOUNT``) counts the account's live logins at every
login. This stores ``--logins`` logins of one account with ``--spent`` used tokens each, among
``--others`` tokens of other accounts, in a database of its own on the stack's FerretDB, then
times the lookup. ``--without-flag`` stores the documents as before the ``live`` flag (the lookup
then reads every token of the account) to compare. Prints median and p90 in ms; drops its
database.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.pipeline import stack_settings
from chatcore.mongo import database, ensure_indexes, make_mongo_client
from services.auth.store import AUTH_INDEXES, MongoRefreshStore


def _token(family: str, user: str, created: datetime, expires: datetime, used: bool) -> Any:
    return {
        "_id": uuid.uuid4().hex * 2,
        "family": family,
        "user_id": user,
        "created_at": created,
        "expires_at": expires,
        "used_at": created if used else None,
        "revoked": False,
        "live": not used,
    }


async def run(args: argparse.Namespace) -> None:
    settings = stack_settings()
    name = f"bench_logins_{uuid.uuid4().hex[:8]}"
    client = make_mongo_client(settings)
    try:
        db = database(client, dataclasses.replace(settings, mongo_db=name))
        await ensure_indexes(db, AUTH_INDEXES)
        now = datetime.now(UTC)
        later = now + timedelta(days=30)
        user = uuid.uuid4().hex
        docs = []
        for _ in range(args.logins):
            family = uuid.uuid4().hex
            docs.append(_token(family, user, now, later, used=False))
            for j in range(args.spent):
                docs.append(
                    _token(family, user, now - timedelta(minutes=15 * (j + 1)), later, True)
                )
        for _ in range(args.others):
            docs.append(_token(uuid.uuid4().hex, uuid.uuid4().hex, now, later, used=False))
        if args.without_flag:
            for doc in docs:
                del doc["live"]
        for i in range(0, len(docs), 5000):
            await db.refresh_tokens.insert_many(docs[i : i + 5000])
        store = MongoRefreshStore(db)
        if args.without_flag:
            # The lookup as it was: every token of the account read, the live ones kept.
            async def lookup() -> int:
                query = {"user_id": user, "revoked": False, "used_at": None}
                return len(await db.refresh_tokens.find(query).to_list(length=None))
        else:

            async def lookup() -> int:
                return len(await store.live_logins(user, now))

        found = await lookup()
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            await lookup()
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        p90 = times[max(0, int(len(times) * 0.9) - 1)]
        how = "no flag" if args.without_flag else "live flag"
        print(
            f"{args.logins} logins x {args.spent} spent tokens ({how}): {found} live, "
            f"median {statistics.median(times):.2f} ms, p90 {p90:.2f} ms"
        )
    finally:
        await client.drop_database(name)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--logins", type=int, default=3)
    parser.add_argument("--spent", type=int, default=2880)
    parser.add_argument("--others", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--without-flag", action="store_true")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
