"""Benchmark a MongoDB-protocol server (e.g. FerretDB on SQLite or PostgreSQL).

Fills a ``messages`` collection shaped like the chat backend's (one large channel plus
noise in smaller ones), then times the history-paging queries the relay issues:
latest page, a page before a cursor in the middle, and a page after it.

Usage:
    .venv/bin/python bench/db_backends.py --url mongodb://127.0.0.1:27017/ --messages 100000

The target database (``--db``) is dropped at the start and, unless ``--keep``, at the end.
Results are printed as plain text.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import string
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

Doc = dict[str, Any]

BATCH_SIZE = 1000
PAGE_SIZE = 50
DATA_LEN = 100
TARGET_CHANNEL = "chan-target"
SENDERS = tuple(f"user-{i:03d}" for i in range(25))
T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class QuerySpec:
    name: str
    filter: Doc
    sort_dir: int


@dataclass(frozen=True)
class QueryResult:
    name: str
    samples_ms: list[float]
    returned: int


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", required=True, help="MongoDB-protocol URL, e.g. mongodb://h:27017/")
    p.add_argument("--db", default="dbbench", help="database to use (dropped first)")
    p.add_argument("--messages", type=int, default=100_000, help="messages in the big channel")
    p.add_argument("--channels", type=int, default=20, help="other (noise) channels")
    p.add_argument(
        "--noise-per-channel",
        type=int,
        default=None,
        help="messages per noise channel (default: messages // 100, at least 1)",
    )
    p.add_argument("--repeat", type=int, default=20, help="timed runs of each query")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs of each query first")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--explain", action="store_true", help="print the server's explain output")
    p.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    args = p.parse_args(argv)
    if args.messages < 2 or args.channels < 0 or args.repeat < 1 or args.warmup < 0:
        p.error("need --messages >= 2, --channels >= 0, --repeat >= 1, --warmup >= 0")
    if args.noise_per_channel is None:
        args.noise_per_channel = max(1, args.messages // 100)
    return args


def make_doc(rng: random.Random, channel_id: str, seq: int) -> Doc:
    alphabet = string.ascii_letters + string.digits + "     "
    return {
        "id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
        "channel_id": channel_id,
        "seq": seq,
        "to": "*",
        "type": "text",
        "data": "".join(rng.choices(alphabet, k=DATA_LEN)),
        "from": rng.choice(SENDERS),
        "ts": T0 + timedelta(milliseconds=seq * 250),
    }


async def insert_channel(
    coll: AsyncCollection[Doc], rng: random.Random, channel_id: str, count: int
) -> float:
    """Insert ``count`` messages (seq 1..count) in batches; return the seconds spent in I/O."""
    spent = 0.0
    for start in range(1, count + 1, BATCH_SIZE):
        stop = min(start + BATCH_SIZE, count + 1)
        batch = [make_doc(rng, channel_id, seq) for seq in range(start, stop)]
        t = time.perf_counter()
        await coll.insert_many(batch, ordered=True)
        spent += time.perf_counter() - t
    return spent


async def run_query(coll: AsyncCollection[Doc], spec: QuerySpec) -> list[Doc]:
    cursor = coll.find(spec.filter, projection={"_id": 0, "seq": 1})
    return await cursor.sort("seq", spec.sort_dir).limit(PAGE_SIZE).to_list()


def check_page(spec: QuerySpec, docs: list[Doc], expected: list[int]) -> None:
    got = [int(d["seq"]) for d in docs]
    if got != expected:
        head = f"{got[:3]}...{got[-3:]}" if got else "[]"
        raise SystemExit(f"{spec.name}: wrong page: got {len(got)} docs {head}")


async def time_query(
    coll: AsyncCollection[Doc], spec: QuerySpec, expected: list[int], repeat: int, warmup: int
) -> QueryResult:
    for _ in range(warmup):
        check_page(spec, await run_query(coll, spec), expected)
    samples: list[float] = []
    docs: list[Doc] = []
    for _ in range(repeat):
        t = time.perf_counter()
        docs = await run_query(coll, spec)
        samples.append((time.perf_counter() - t) * 1000.0)
    check_page(spec, docs, expected)
    return QueryResult(spec.name, samples, len(docs))


async def explain(db: AsyncDatabase[Doc], spec: QuerySpec) -> str:
    cmd: Doc = {
        "find": "messages",
        "filter": spec.filter,
        "sort": {"seq": spec.sort_dir},
        "limit": PAGE_SIZE,
    }
    res = await db.command("explain", cmd, verbosity="queryPlanner")
    # FerretDB reports what it pushed down to the backend; MongoDB reports a plan tree.
    keys = ("filterPushdown", "sortPushdown", "limitPushdown", "unsafeFilterPushdown")
    found = {k: res[k] for k in keys if k in res}
    if found:
        plan = res.get("queryPlanner", {})
        return f"{found} plan={plan}"
    winning = res.get("queryPlanner", {}).get("winningPlan", {})
    return f"winningPlan={winning}"


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


async def server_label(client: AsyncMongoClient[Doc]) -> str:
    info = await client.admin.command("buildInfo")
    version = info.get("version", "?")
    ferret = info.get("ferretdbVersion")
    if ferret:
        return f"FerretDB {ferret} (MongoDB compat {version})"
    return f"MongoDB {version}"


async def run(args: argparse.Namespace) -> None:
    n: int = args.messages
    mid = n // 2
    rng = random.Random(args.seed)
    client: AsyncMongoClient[Doc] = AsyncMongoClient(args.url, serverSelectionTimeoutMS=10_000)
    try:
        print(f"server: {await server_label(client)}  url={args.url}")
        db = client[args.db]
        await client.drop_database(args.db)
        coll = db["messages"]
        await coll.create_index(
            [("channel_id", ASCENDING), ("seq", ASCENDING)], unique=True, name="channel_seq"
        )
        await coll.create_index([("id", ASCENDING)], name="id")

        target_s = await insert_channel(coll, rng, TARGET_CHANNEL, n)
        noise_n = args.noise_per_channel * args.channels
        noise_s = 0.0
        for i in range(args.channels):
            noise_s += await insert_channel(coll, rng, f"chan-{i:03d}", args.noise_per_channel)
        total = await coll.estimated_document_count()
        print(
            f"insert: {n} docs into {TARGET_CHANNEL} in {target_s:.2f}s"
            f" = {n / target_s:,.0f} docs/s (insert_many x{BATCH_SIZE})"
        )
        if noise_n:
            print(
                f"insert: {noise_n} noise docs in {args.channels} channels in {noise_s:.2f}s"
                f" = {noise_n / noise_s:,.0f} docs/s; collection now holds {total} docs"
            )

        specs = [
            (
                QuerySpec(
                    "latest page (no cursor, seq desc)", {"channel_id": TARGET_CHANNEL}, DESCENDING
                ),
                list(range(n, n - PAGE_SIZE, -1)),
            ),
            (
                QuerySpec(
                    f"before mid (seq < {mid}, desc)",
                    {"channel_id": TARGET_CHANNEL, "seq": {"$lt": mid}},
                    DESCENDING,
                ),
                [s for s in range(mid - 1, mid - 1 - PAGE_SIZE, -1) if s >= 1],
            ),
            (
                QuerySpec(
                    f"after mid (seq > {mid}, asc)",
                    {"channel_id": TARGET_CHANNEL, "seq": {"$gt": mid}},
                    ASCENDING,
                ),
                [s for s in range(mid + 1, mid + 1 + PAGE_SIZE) if s <= n],
            ),
        ]

        results: list[QueryResult] = []
        for spec, expected in specs:
            if args.explain:
                print(f"explain [{spec.name}]: {await explain(db, spec)}")
            results.append(await time_query(coll, spec, expected, args.repeat, args.warmup))

        width = max(len(r.name) for r in results)
        print(f"queries: limit {PAGE_SIZE}, {args.repeat} timed runs each, latency in ms")
        print(f"  {'query':<{width}}  {'p50':>9}  {'p95':>9}  {'max':>9}  docs")
        for r in results:
            print(
                f"  {r.name:<{width}}  {percentile(r.samples_ms, 50):9.2f}"
                f"  {percentile(r.samples_ms, 95):9.2f}  {max(r.samples_ms):9.2f}  {r.returned}"
            )
        if not args.keep:
            await client.drop_database(args.db)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    asyncio.run(run(args))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
