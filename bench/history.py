"""Benchmark the history endpoint's database path on a channel of 100,000 messages.

Fills ``messages`` in a separate database (default ``chat_bench``) with one big channel (team
messages mixed with DMs among its members) plus smaller noise channels, stores the team document,
then times ``HistoryService.page`` (the management service's real store and domain code: the
membership read plus the visible-page query) for the pages clients ask for: the latest page, a page
before a cursor in the middle, a page after it, and a resume near the end.

Usage:
    .venv/bin/python bench/history.py                      # URL from CHAT_MONGO_URL or default
    .venv/bin/python bench/history.py --messages 100000 --repeat 10 --explain
    .venv/bin/python bench/history.py --dm-share 0.999 --bystander   # pages of a member who
        # is in no DM, in a channel of other members' DMs: each request reads a bounded part

The database is dropped first and, unless ``--keep``, at the end. Results are plain text; the
figures in docs/benchmarks.md come from this script.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import math
import os
import random
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient

from chatcore.buckets import BucketAllocator
from chatcore.channel_heads import MongoChannelHeads
from chatcore.mongo import INDEXES, ensure_indexes
from services.management.history import HistoryService
from services.management.history_store import PAGE_BUCKETS, MongoMessageStore
from services.management.model import Team
from services.management.store import MANAGEMENT_INDEXES, MongoTeamStore, team_to_doc
from services.management.validation import HistoryQuery

Doc = dict[str, Any]
BATCH = 1000
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", default=os.environ.get("CHAT_MONGO_URL", "mongodb://127.0.0.1:27017/"))
    p.add_argument("--db", default="chat_bench", help="database to use (dropped first)")
    p.add_argument("--messages", type=int, default=100_000, help="messages in the big channel")
    p.add_argument("--members", type=int, default=20, help="members of the big channel")
    p.add_argument("--dm-share", type=float, default=0.3, help="fraction of messages that are DMs")
    p.add_argument("--noise-channels", type=int, default=10)
    p.add_argument("--noise-per-channel", type=int, default=1000)
    p.add_argument("--limit", type=int, default=50, help="page size")
    p.add_argument("--repeat", type=int, default=10, help="timed runs of each page")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--explain", action="store_true", help="print the server's plan of one query")
    p.add_argument("--keep", action="store_true", help="do not drop the database at the end")
    p.add_argument(
        "--page-buckets",
        type=int,
        default=PAGE_BUCKETS,
        help="buckets one page may read (0: no bound, as before the bound existed)",
    )
    p.add_argument(
        "--bystander",
        action="store_true",
        help="read as a member who is in no DM (pages may then be short: the walk is bounded)",
    )
    args = p.parse_args(argv)
    if args.messages < 10 or args.members < 2 or args.repeat < 1 or not 1 <= args.limit <= 200:
        p.error("need --messages >= 10, --members >= 2, --repeat >= 1, 1 <= --limit <= 200")
    return args


def _message(rng: random.Random, channel: str, seq: int, members: list[str], dm: float) -> Doc:
    sender = rng.choice(members)
    to = "*" if rng.random() >= dm else rng.choice([m for m in members if m != sender])
    return {
        "id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
        "channel_id": channel,
        "seq": seq,
        "to": to,
        "type": "text",
        "data": "x" * rng.randint(10, 200),
        "from": sender,
        "ts": T0 + timedelta(milliseconds=seq * 100),
    }


async def fill(db: Any, args: argparse.Namespace, team: Team) -> float:
    """Insert the big channel and the noise, in buckets placed by the controller's own
    allocator; return seconds spent."""
    rng = random.Random(args.seed)
    members = [m for m in team.members if m != "e" * 32]
    buckets = BucketAllocator(MongoChannelHeads(db))

    async def insert(batch: list[Doc]) -> None:
        keys = (await buckets.assign([d["channel_id"] for d in batch])).keys
        for doc, key in zip(batch, keys, strict=True):
            doc["bucket"] = key
        await db["messages"].insert_many(batch, ordered=False)

    started = time.perf_counter()
    for start in range(1, args.messages + 1, BATCH):
        stop = min(start + BATCH, args.messages + 1)
        await insert(
            [_message(rng, team.id, s, members, args.dm_share) for s in range(start, stop)]
        )
    for c in range(args.noise_channels):
        channel = f"{c:032x}"
        batch = [
            _message(rng, channel, s, members, args.dm_share)
            for s in range(1, args.noise_per_channel + 1)
        ]
        if batch:
            await insert(batch)
    await db["teams"].insert_one(team_to_doc(team))
    return time.perf_counter() - started


@dataclasses.dataclass(frozen=True)
class Result:
    name: str
    samples_ms: list[float]
    returned: int


def percentile(samples: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


async def measure(
    history: HistoryService,
    team: Team,
    viewer: str,
    name: str,
    q: HistoryQuery,
    repeat: int,
    *,
    short_ok: bool = False,
) -> Result:
    page = await history.page(team.id, q, caller=viewer)  # warm-up, and a sanity check
    seqs = [m.seq for m in page.messages]
    if seqs != sorted(seqs) or not (len(seqs) == q.limit or page.has_more or short_ok):
        raise SystemExit(f"{name}: wrong page {seqs[:3]}...")
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await history.page(team.id, q, caller=viewer)
        samples.append((time.perf_counter() - started) * 1000)
    return Result(name, samples, len(seqs))


async def run(args: argparse.Namespace) -> None:
    client: AsyncMongoClient[Doc] = AsyncMongoClient(
        args.url, serverSelectionTimeoutMS=10_000, tz_aware=True
    )
    try:
        info = await client.admin.command("buildInfo")
        ferret = info.get("ferretdbVersion")
        label = f"FerretDB {ferret}" if ferret else f"MongoDB {info.get('version')}"
        print(f"server: {label} at {args.url}, database {args.db}")
        await client.drop_database(args.db)
        db = client[args.db]
        await ensure_indexes(db, (*INDEXES, *MANAGEMENT_INDEXES))
        members = [f"{i + 1:032x}" for i in range(args.members)]
        # A member who never sends nor receives a DM (not among those the fill draws from).
        bystander = "e" * 32
        everyone = (*members, bystander) if args.bystander else tuple(members)
        team = Team("b" * 32, "bench", "", True, (), everyone, (members[0],), members[0], T0)
        spent = await fill(db, args, team)
        total = args.messages + args.noise_channels * args.noise_per_channel
        print(
            f"filled: {args.messages} messages in the channel ({args.dm_share:.0%} DMs among "
            f"{args.members} members), {total} in the collection, in {spent:.1f}s"
        )

        history = HistoryService(
            teams=MongoTeamStore(db),
            messages=MongoMessageStore(
                db, MongoChannelHeads(db), page_buckets=args.page_buckets or 1 << 30
            ),
        )
        viewer, mid, limit = members[1], args.messages // 2, args.limit
        if args.bystander:
            viewer = bystander
        cases = [
            ("latest page (no cursor)", HistoryQuery(None, None, limit)),
            (f"before={mid}", HistoryQuery(mid, None, limit)),
            (f"after={mid}", HistoryQuery(None, mid, limit)),
            (
                f"after={args.messages - 2 * limit} (resume)",
                HistoryQuery(None, args.messages - 2 * limit, limit),
            ),
        ]
        if args.explain:
            plan = await db.command(
                "explain",
                {
                    "find": "messages",
                    "filter": {
                        "bucket": f"{team.id}/0",
                        "seq": {"$gt": mid},
                        "$or": [{"to": "*"}, {"from": viewer}, {"to": viewer}],
                    },
                    "sort": {"seq": 1},
                    "limit": limit + 1,
                },
            )
            keys = ("filterPushdown", "sortPushdown", "limitPushdown")
            print("explain:", {k: plan[k] for k in keys if k in plan} or plan.get("queryPlanner"))
        results = [
            await measure(history, team, viewer, n, q, args.repeat, short_ok=args.bystander)
            for n, q in cases
        ]
        width = max(len(r.name) for r in results)
        who = "a member in no DM" if args.bystander else "one member"
        print(f"pages of up to {limit} visible messages for {who}, {args.repeat} timed runs (ms):")
        print(f"  {'page':<{width}}  {'p50':>9}  {'p95':>9}  {'max':>9}  {'returned':>8}")
        for r in results:
            print(
                f"  {r.name:<{width}}  {percentile(r.samples_ms, 50):9.1f}"
                f"  {percentile(r.samples_ms, 95):9.1f}  {max(r.samples_ms):9.1f}  {r.returned:8}"
            )
        if not args.keep:
            await client.drop_database(args.db)
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(run(parse_args(argv)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
