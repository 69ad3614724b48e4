"""Leases and fenced writes on the real database: a paused holder cannot write after the next
holder did, a killed instance's lease expires, and concurrent guarded updates have one winner."""

from __future__ import annotations

import asyncio
import sys
import time

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore import schema
from chatcore.fencing import fenced, guarded, lost_race
from chatcore.lease_store import LEASE_INDEXES, database_leases
from chatcore.mongo import Document, ensure_indexes, is_ferretdb
from chatcore.settings import Settings

ROUNDS = 6


async def _fenced_set(db: AsyncDatabase[Document], epoch: int, value: str) -> bool:
    """One protected write: True if it landed."""
    try:
        result = await db[schema.TEAMS].update_one(
            fenced({"_id": "t"}, epoch), guarded({"$set": {"name": value}}, epoch)
        )
    except PyMongoError as exc:
        if not lost_race(exc):
            raise
        return False
    return result.modified_count == 1


async def test_a_holder_paused_past_its_lease_cannot_write(
    scratch_db: AsyncDatabase[Document],
) -> None:
    """A's lease expires while it is paused; B takes the key and writes; A's write is refused."""
    await ensure_indexes(scratch_db, LEASE_INDEXES)
    await scratch_db[schema.TEAMS].insert_one({"_id": "t", "name": "start"})
    a = database_leases(scratch_db, "team", owner="a", ttl_s=0.5, wait_s=1.0)
    b = database_leases(scratch_db, "team", owner="b", ttl_s=5.0, wait_s=3.0)
    held = a.hold("t")
    lease_a = await held.__aenter__()
    assert await _fenced_set(scratch_db, lease_a.epoch, "by a")
    async with b.hold("t") as lease_b:  # waits out A's expiry
        assert lease_b.epoch > lease_a.epoch
        assert await _fenced_set(scratch_db, lease_b.epoch, "by b")
        # A wakes up and writes with its old epoch, skipping its own deadline check.
        assert not await _fenced_set(scratch_db, lease_a.epoch, "late a")
    doc = await scratch_db[schema.TEAMS].find_one({"_id": "t"})
    assert doc is not None
    assert (doc["name"], doc["fence"]) == ("by b", lease_b.epoch)


async def test_a_killed_instances_lease_expires(
    scratch_db: AsyncDatabase[Document], settings: Settings
) -> None:
    """A process takes a lease and is killed with SIGKILL; another takes the key after the ttl."""
    await ensure_indexes(scratch_db, LEASE_INDEXES)
    script = (
        "import asyncio, sys\n"
        "from chatcore.lease_store import database_leases\n"
        "from pymongo import AsyncMongoClient\n"
        "async def main():\n"
        f"    db = AsyncMongoClient({settings.mongo_url!r})[{scratch_db.name!r}]\n"
        "    leases = database_leases(db, 'team', owner='doomed', ttl_s=1.0, wait_s=1.0)\n"
        "    async with leases.hold('t'):\n"
        "        print('held', flush=True)\n"
        "        await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"held\n"
        proc.kill()
        await proc.wait()
        survivor = database_leases(scratch_db, "team", owner="survivor", ttl_s=5.0, wait_s=5.0)
        started = time.monotonic()
        async with survivor.hold("t"):
            waited = time.monotonic() - started
        assert waited < 2.0, waited
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_concurrent_guarded_updates_have_one_winner(
    scratch_db: AsyncDatabase[Document],
) -> None:
    """Twenty compare-and-set updates at once, many rounds: exactly one lands each time (on
    FerretDB thanks to the stack's guard trigger; on MongoDB by itself)."""
    teams = scratch_db[schema.TEAMS]
    winners: list[int] = []
    for round_no in range(ROUNDS):
        await teams.insert_one({"_id": f"r{round_no}", "owner": None})

        async def claim(i: int, round_no: int = round_no) -> bool:
            try:
                doc = await teams.find_one_and_update(
                    {"_id": f"r{round_no}", "owner": None}, guarded({"$set": {"owner": i}})
                )
            except PyMongoError as exc:
                if not lost_race(exc):
                    raise
                return False
            return doc is not None

        results = await asyncio.gather(*(claim(i) for i in range(20)))
        winners.append(sum(results))
    assert winners == [1] * ROUNDS, (winners, await is_ferretdb(scratch_db))
