"""Client CPU per database operation: pymongo (async on asyncio and uvloop, sync) and a bare
OP_MSG round trip, against the stack's MongoDB-protocol server.

    make stack-up
    .venv/bin/python -m bench.mongo_op_cost --ops 1000 --runs 3

The controller's per-room work (a bucket reservation, a read-document lookup, checkpoint writes)
is one operation each on FerretDB, which pushes down only top-level equality (no ``$in``). This
measures what one such operation costs the calling process, apart from the server: the calling
thread's CPU per ``find_one`` by ``_id`` (nothing found, so the reply is tiny) and per
``insert_many`` of 7 small documents (a DM batch's size). The bare round trip (``bson`` encode,
one ``OP_MSG`` write, one read, decode) is the floor any driver pays for the system calls and the
wire format. Each run prints the median of ``--runs`` in microseconds. Drops its own database.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import struct
import time
from collections.abc import Callable, Coroutine
from typing import Any

import bson
import uvloop
from pymongo import AsyncMongoClient, MongoClient

from bench.pipeline import stack_settings

DB = "bench_op_cost"
_OP_MSG = 2013


def _per_op_us(started: float, ops: int) -> float:
    return (time.thread_time() - started) / ops * 1e6


async def _async_pymongo(url: str, ops: int) -> dict[str, float]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(url)
    col = client[DB]["t"]
    await col.find_one({"_id": "warm-up"})
    started = time.thread_time()
    for _ in range(ops):
        await col.find_one({"_id": "absent"})
    find = _per_op_us(started, ops)
    started = time.thread_time()
    for i in range(ops):
        await col.insert_many([{"i": i, "k": k, "b": "x" * 200} for k in range(7)], ordered=False)
    insert = _per_op_us(started, ops)
    await client.drop_database(DB)
    await client.close()
    return {"find_one": find, "insert_many_7": insert}


def _sync_pymongo(url: str, ops: int) -> dict[str, float]:
    client: MongoClient[dict[str, Any]] = MongoClient(url)
    col = client[DB]["t"]
    col.find_one({"_id": "warm-up"})
    started = time.thread_time()
    for _ in range(ops):
        col.find_one({"_id": "absent"})
    find = _per_op_us(started, ops)
    client.drop_database(DB)
    client.close()
    return {"find_one": find}


async def _bare(host: str, port: int, ops: int) -> dict[str, float]:
    reader, writer = await asyncio.open_connection(host, port)
    request_id = 0

    async def command(doc: dict[str, Any]) -> dict[str, Any]:
        nonlocal request_id
        request_id += 1
        body = bson.encode(doc)
        writer.write(
            struct.pack("<iiiiI", 21 + len(body), request_id, 0, _OP_MSG, 0) + b"\0" + body
        )
        length = struct.unpack_from("<i", await reader.readexactly(16))[0]
        return bson.decode((await reader.readexactly(length - 16))[5:])

    find = {"find": "t", "filter": {"_id": "absent"}, "limit": 1, "singleBatch": True, "$db": DB}
    await command(find)
    started = time.thread_time()
    for _ in range(ops):
        await command(find)
    result = _per_op_us(started, ops)
    writer.close()
    await writer.wait_closed()
    return {"find_one": result}


def _runs(runs: int, one: Callable[[], dict[str, float]]) -> dict[str, float]:
    results = [one() for _ in range(runs)]
    return {key: round(statistics.median(r[key] for r in results), 1) for key in results[0]}


def _on(loop: str, make: Callable[[], Coroutine[Any, Any, dict[str, float]]]) -> dict[str, float]:
    return uvloop.run(make()) if loop == "uvloop" else asyncio.run(make())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = stack_settings()
    url = settings.mongo_url
    host, _, port = url.split("://", 1)[1].split("/", 1)[0].split(",")[0].rpartition(":")
    table = {
        "pymongo async, asyncio": _runs(
            args.runs, lambda: _on("asyncio", lambda: _async_pymongo(url, args.ops))
        ),
        "pymongo async, uvloop": _runs(
            args.runs, lambda: _on("uvloop", lambda: _async_pymongo(url, args.ops))
        ),
        "pymongo sync": _runs(args.runs, lambda: _sync_pymongo(url, args.ops)),
        "bare OP_MSG, uvloop": _runs(
            args.runs, lambda: _on("uvloop", lambda: _bare(host, int(port), args.ops))
        ),
    }
    for name, figures in table.items():
        cells = ", ".join(f"{op} {us} µs" for op, us in figures.items())
        print(f"{name:24s} {cells}")


if __name__ == "__main__":
    main()
