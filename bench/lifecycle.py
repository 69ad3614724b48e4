"""Benchmarks of the message life cycle's read paths (DESIGN 5b), on the running local stack.

    .venv/bin/python -m bench.lifecycle changes --messages 100000 --changes 10000 --repeat 20
    .venv/bin/python -m bench.lifecycle unread --teams 50 --repeat 30
    .venv/bin/python -m bench.lifecycle presence --members 1000 --toggles 5

* ``changes``: ``MessageService.changes`` (the management service's code for ``GET
  /v1/teams/{id}/changes``, minus HTTP) on one channel of ``--messages`` messages and
  ``--changes`` change documents, all placed in buckets by the controller's own allocator, in a
  database of its own (dropped after): pages of 50 after a cursor in the middle and near the end.
* ``unread``: ``GET /v1/teams?limit=<teams>`` through nginx for a member of ``--teams`` teams,
  every one with messages, unread ones and a read position (written as the controller writes
  them), timed end to end.
* ``presence``: ``--members`` raw sockets of one team on relay 1; another member connects and
  disconnects on relay 2 ``--toggles`` times; for each change, the time from the socket's hello
  (or close) until every receiver had its ``presence`` frame, and the relay's CPU per frame.
* ``team-burst``: what a ``team`` frame costs the management service in a team of ``--members``:
  every member's page reads the team once (``GET /v1/teams/{id}``, straight to management
  instance 1, as from many addresses), at moments spread evenly over ``--spread-ms`` (0: all at
  once); the answers' latency and the service's CPU, once per spread given.

    .venv/bin/python -m bench.lifecycle team-burst --members 1000 --spreads 0,800,3000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from bench.pipeline import HOME, _issuer, _team, stack_settings
from bench.proc_cpu import StackCpu
from chatclient import AuthSession, ChatClient, login, register
from chatcore import schema as s
from chatcore.buckets import BucketAllocator
from chatcore.channel_heads import MongoChannelHeads
from chatcore.mongo import INDEXES, database, ensure_indexes, make_mongo_client
from chatcore.read_states import MongoReadStates
from chatcore.unread import ChannelHead, ReadState
from deploy.local.config import StackConfig
from services.management.history_store import MongoMessageStore
from services.management.messages import MessageService
from services.management.store import MongoTeamStore
from services.management.validation import AfterQuery
from tests.team_docs import drop_team, store_team

Doc = dict[str, Any]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def _summary(name: str, samples_ms: list[float], **extra: Any) -> None:
    print(
        json.dumps(
            {
                "bench": name,
                "runs": len(samples_ms),
                "p50_ms": round(statistics.median(samples_ms), 1),
                "p95_ms": round(percentile(samples_ms, 95), 1),
                "p99_ms": round(percentile(samples_ms, 99), 1),
                "max_ms": round(max(samples_ms), 1),
                **extra,
            }
        ),
        flush=True,
    )


# --- changes ---------------------------------------------------------------------------------


async def changes(args: argparse.Namespace) -> None:
    settings = stack_settings()
    client = make_mongo_client(settings)
    name = f"chat_bench_changes_{uuid.uuid4().hex[:8]}"
    db = client[name]
    try:
        await ensure_indexes(db, INDEXES)
        members = [f"{i + 1:032x}" for i in range(20)]
        team_id = "c" * 32
        await store_team(
            db,
            {
                s.ID: team_id,
                s.TEAM_NAME: "bench",
                s.TEAM_ACTIVE: True,
                s.TEAM_MEMBERS: members,
                s.TEAM_ADMINS: members[:1],
                s.TEAM_SUPER_ADMIN: members[0],
                s.TEAM_DOC: T0,
            },
        )
        rng = random.Random(1)
        buckets = BucketAllocator(MongoChannelHeads(db))
        total = args.messages + args.changes
        change_at = set(rng.sample(range(1, total + 1), args.changes))
        messages_so_far: list[Doc] = []
        started = time.perf_counter()
        for start in range(1, total + 1, 1000):
            seqs = list(range(start, min(start + 1000, total + 1)))
            keys = (await buckets.assign([team_id] * len(seqs))).keys
            msgs: list[Doc] = []
            chgs: list[Doc] = []
            for seq, key in zip(seqs, keys, strict=True):
                sender = rng.choice(members)
                if seq in change_at and messages_so_far:
                    target = rng.choice(messages_so_far[-500:])
                    chgs.append(
                        {
                            s.ID: f"{team_id}:{seq}:reaction",
                            s.CHANGE_CHANNEL_ID: team_id,
                            s.CHANGE_SEQ: seq,
                            s.MESSAGE_BUCKET: key,
                            s.CHANGE_KIND: "reaction",
                            s.CHANGE_MESSAGE_ID: target[s.MESSAGE_ID],
                            s.MESSAGE_TO: target[s.MESSAGE_TO],
                            s.MESSAGE_FROM: target[s.MESSAGE_FROM],
                            s.MESSAGE_COUNT: 0,
                            s.CHANGE_MESSAGE: {
                                **target,
                                "reactions": [{"emoji": "👍", "users": [sender]}],
                            },
                        }
                    )
                    continue
                to = "*" if rng.random() >= 0.3 else rng.choice([m for m in members if m != sender])
                doc = {
                    s.MESSAGE_ID: uuid.UUID(int=rng.getrandbits(128), version=4).hex,
                    s.MESSAGE_CHANNEL_ID: team_id,
                    s.MESSAGE_SEQ: seq,
                    s.MESSAGE_BUCKET: key,
                    s.MESSAGE_TO: to,
                    s.MESSAGE_TYPE: "text",
                    s.MESSAGE_DATA: "x" * rng.randint(10, 200),
                    s.MESSAGE_FROM: sender,
                    s.MESSAGE_TS: T0 + timedelta(milliseconds=seq * 100),
                }
                msgs.append(doc)
            if msgs:
                await db[s.MESSAGES].insert_many([dict(m) for m in msgs], ordered=False)
                messages_so_far.extend(msgs)
            if chgs:
                await db[s.CHANGES].insert_many(chgs, ordered=False)
        fill_s = time.perf_counter() - started
        heads = MongoChannelHeads(db)
        service = MessageService(
            teams=MongoTeamStore(db),
            messages=MongoMessageStore(db, heads),
            attachments=_NoAttachments(),
            log=_NoLog(),
            edit_window_s=300,
            send_timeout_s=5,
        )
        viewer = members[1]
        for label, after in (("middle", total // 2), ("resume", total - 100)):
            query = AfterQuery(after=after, limit=50)
            page = await service.changes(team_id, query, caller=viewer)  # warm-up and check
            assert len(page.items) == 50, len(page.items)
            samples = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                await service.changes(team_id, query, caller=viewer)
                samples.append((time.perf_counter() - began) * 1000)
            _summary(
                f"changes-{label}",
                samples,
                messages=args.messages,
                changes=args.changes,
                fill_s=round(fill_s, 1),
            )
    finally:
        await client.drop_database(name)
        await client.close()


class _NoAttachments:
    async def withdraw(self, attachment_id: str) -> None:
        raise AssertionError("the benchmark deletes nothing")


class _NoLog:
    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes, headers: list[tuple[str, bytes]]
    ) -> None:
        raise AssertionError("the benchmark writes nothing")


async def _bench_account(base: str) -> AuthSession:
    """A real account, logged in: the management service refuses tokens of users it cannot find."""
    email = f"bench-{uuid.uuid4().hex[:10]}@example.com"
    await register(base, email, "bench password 1", "Bench")
    return await login(base, email, "bench password 1")


# --- unread ----------------------------------------------------------------------------------


async def unread(args: argparse.Namespace) -> None:
    settings = stack_settings()
    cfg = StackConfig.from_env()
    base = f"http://127.0.0.1:{cfg.nginx_port}"
    session = await _bench_account(base)
    me, other, token = session.user_id, uuid.uuid4().hex, session.access_token
    client = make_mongo_client(settings)
    db = database(client, settings)
    heads, reads = MongoChannelHeads(db), MongoReadStates(db)
    teams = []
    try:
        for i in range(args.teams):
            team_id = await _team(settings, [other, me] + [uuid.uuid4().hex for _ in range(8)])
            teams.append(team_id)
            # As the controller leaves them after 200 team messages, of which the member read
            # 150, with one DM and one mention since.
            await heads.save_counters(
                team_id, ChannelHead(count=200, count_seq=1000 + i, last_seq=1000 + i)
            )
            await reads.save(
                team_id, {me: ReadState(seq=900, count=150, dms=(950,), mentions=(950, 960))}
            )
        url = f"{base}/v1/teams?limit={args.teams}"
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {token}"}
            async with http.get(url, headers=headers) as resp:
                body = await resp.json()
                assert resp.status == 200, body
                assert len(body["data"]) == args.teams
                assert body["data"][0]["unread"] == {
                    "count": 51,
                    "mentions": 2,
                    "last_read_seq": 900,
                }
            samples = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                async with http.get(url, headers=headers) as resp:
                    await resp.read()
                samples.append((time.perf_counter() - began) * 1000)
        # Where the time goes: the three reads behind the page, each alone (ms, median of 10).
        stores = MongoTeamStore(db)
        parts: dict[str, Callable[[], Awaitable[object]]] = {
            "teams_ms": lambda: stores.list_for_member(me, tag=None, after_id=None, limit=51),
            "heads_ms": lambda: heads.heads(teams),
            "reads_ms": lambda: reads.of_user(me),
        }
        breakdown = {}
        for label, read in parts.items():
            times = []
            for _ in range(10):
                began = time.perf_counter()
                await read()
                times.append((time.perf_counter() - began) * 1000)
            breakdown[label] = round(statistics.median(times), 1)
        _summary("unread-team-list", samples, teams=args.teams, **breakdown)
    finally:
        for team_id in teams:
            await drop_team(db, team_id)
            await db[s.CHANNELS].delete_one({s.ID: team_id})
            await db[s.READS].delete_many({s.READ_CHANNEL_ID: team_id})
        await client.close()


# --- presence --------------------------------------------------------------------------------


class _PresenceReceiver:
    """A raw WebSocket client that notes when a ``presence`` frame about one user arrives."""

    def __init__(self, watched: str) -> None:
        self.seen: list[float] = []
        self._watched = watched.encode()

    async def connect(self, port: int, token: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self._writer = writer
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                f"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer {token}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
        self._task = asyncio.create_task(self._read(reader))

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buf = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            buf += chunk
            # Unmasked server frames: 2-byte header, 16- or 64-bit lengths beyond 125.
            while len(buf) >= 2:
                length, offset = buf[1] & 0x7F, 2
                if length == 126:
                    if len(buf) < 4:
                        break
                    length, offset = int.from_bytes(buf[2:4], "big"), 4
                elif length == 127:
                    if len(buf) < 10:
                        break
                    length, offset = int.from_bytes(buf[2:10], "big"), 10
                if len(buf) < offset + length:
                    break
                payload = buf[offset : offset + length]
                buf = buf[offset + length :]
                if b'"presence"' in payload and self._watched in payload:
                    self.seen.append(time.perf_counter())

    def close(self) -> None:
        self._task.cancel()
        self._writer.close()


async def presence(args: argparse.Namespace) -> None:
    settings = stack_settings()
    issuer = _issuer(settings)
    cfg = StackConfig.from_env()
    users = [uuid.uuid4().hex for _ in range(args.members)]
    mover = uuid.uuid4().hex
    team_id = await _team(settings, [mover, *users])
    receivers = [_PresenceReceiver(mover) for _ in users]
    relay_1, relay_2 = cfg.relay_ports[0], cfg.relay_ports[1]
    for i in range(0, len(users), 200):
        await asyncio.gather(
            *(
                r.connect(relay_1, issuer.issue(u).token)
                for r, u in zip(receivers[i : i + 200], users[i : i + 200], strict=True)
            )
        )
    # The receivers' own arrivals announce each of them to the 999 others (a million frames):
    # let that settle before measuring one member's coming and going.
    await asyncio.sleep(args.settle_s)
    cpu = StackCpu(HOME)
    latencies: list[float] = []
    cpu.start()
    for _ in range(args.toggles):
        for r in receivers:
            r.seen.clear()
        began = time.perf_counter()
        chat = await ChatClient.connect(
            f"ws://127.0.0.1:{relay_2}/v1/ws", issuer.issue(mover).token
        )
        await _all_saw(receivers, began, latencies, args.timeout_s)
        for r in receivers:
            r.seen.clear()
        began = time.perf_counter()
        await chat.close()
        await _all_saw(receivers, began, latencies, args.timeout_s)
    used = cpu.stop()
    frames = len(latencies) * len(receivers)
    relay_cpu = used.get("relay-1", 0.0)
    _summary(
        "presence-fanout",
        latencies,
        members=args.members,
        changes=len(latencies),
        relay_cpu_us_per_frame=round(relay_cpu / frames * 1e6, 1) if frames else None,
        note="latency: socket hello/close to the last receiver's frame (includes the 1 s grace "
        "for offline)",
    )
    for r in receivers:
        r.close()
    client = make_mongo_client(settings)
    await drop_team(database(client, settings), team_id)
    await client.close()


async def _all_saw(
    receivers: list[_PresenceReceiver], began: float, into: list[float], timeout_s: float
) -> None:
    deadline = time.perf_counter() + timeout_s
    while not all(r.seen for r in receivers):
        if time.perf_counter() > deadline:
            missing = sum(1 for r in receivers if not r.seen)
            raise TimeoutError(f"{missing} receivers got no presence frame")
        await asyncio.sleep(0.01)
    into.append((max(r.seen[0] for r in receivers) - began) * 1000)


async def team_burst(args: argparse.Namespace) -> None:
    settings = stack_settings()
    cfg = StackConfig.from_env()
    base = f"http://127.0.0.1:{cfg.nginx_port}"
    # A real account among made-up members: a member's read costs the same whoever asks.
    session = await _bench_account(base)
    members = [session.user_id] + [uuid.uuid4().hex for _ in range(args.members - 1)]
    team_id = await _team(settings, members)
    url = f"http://127.0.0.1:{cfg.management_port}/v1/teams/{team_id}"
    headers = {"Authorization": f"Bearer {session.access_token}"}
    client = make_mongo_client(settings)
    db = database(client, settings)
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def read(at: float, began: float, into: list[float]) -> None:
                await asyncio.sleep(max(0.0, began + at - time.perf_counter()))
                sent = time.perf_counter()
                async with http.get(url, headers=headers) as resp:
                    await resp.read()
                    assert resp.status == 200, resp.status
                into.append((time.perf_counter() - sent) * 1000)

            for spread_ms in (int(v) for v in args.spreads.split(",")):
                await asyncio.sleep(args.quiet_s)
                cpu = StackCpu(HOME)
                cpu.start()
                own = time.process_time()
                samples: list[float] = []
                began = time.perf_counter()
                moments = [random.random() * spread_ms / 1000 for _ in members]
                await asyncio.gather(*(read(at, began, samples) for at in moments))
                wall = time.perf_counter() - began
                used = cpu.stop()
                loadgen = time.process_time() - own
                _summary(
                    f"team-burst-{spread_ms}ms",
                    samples,
                    members=args.members,
                    wall_s=round(wall, 2),
                    management_cpu_s=used.get("management", 0.0),
                    ferretdb_cpu_s=used.get("ferretdb", 0.0),
                    postgres_cpu_s=used.get("postgres", 0.0),
                    loadgen_cpu_s=round(loadgen, 2),
                )
    finally:
        await drop_team(db, team_id)
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="bench", required=True)
    p = sub.add_parser("changes")
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--changes", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=20)
    p = sub.add_parser("unread")
    p.add_argument("--teams", type=int, default=50)
    p.add_argument("--repeat", type=int, default=30)
    p = sub.add_parser("presence")
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--toggles", type=int, default=5)
    p.add_argument("--timeout-s", type=float, default=30.0)
    p.add_argument("--settle-s", type=float, default=30.0)
    p = sub.add_parser("team-burst")
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--spreads", default="0,800,3000", help="comma-separated, ms")
    p.add_argument("--quiet-s", type=float, default=5.0)
    args = parser.parse_args()
    runs = {"changes": changes, "unread": unread, "presence": presence, "team-burst": team_burst}
    asyncio.run(runs[args.bench](args))


if __name__ == "__main__":
    main()
