"""End-to-end benchmarks of the running local stack (`make stack-up` first).

    .venv/bin/python bench/pipeline.py fanout --members 1000 --rate 30 --seconds 10
    .venv/bin/python bench/pipeline.py dm --pairs 100 --rate 1000 --seconds 10 [--loadgen python]
    .venv/bin/python bench/pipeline.py idle --sockets 10000
    .venv/bin/python bench/pipeline.py persist --rooms 2000 --messages 100000
    .venv/bin/python bench/pipeline.py takeover --signal kill  # persist, then kill the controller

Load-test shortcuts, stated so the figures can be judged: members are minted as access tokens with
the stack's development signing key and added to a team document written straight to the database
(creating 1,000 accounts through argon2 would only measure password hashing). Receivers are raw
sockets that parse just enough WebSocket framing to timestamp each frame, so the load generator
(which shares the 2 cores with the stack) costs as little as possible; its own CPU time is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import resource
import signal
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.proc_cpu import StackCpu, ms_per_message, stack_pids
from chatclient import ChatClient
from chatcore.kafka import MESSAGES_TOPIC, make_producer
from chatcore.mongo import database, make_mongo_client
from chatcore.proto.chat.v1 import chat_pb2
from chatcore.settings import Settings
from services.auth.keys import KeyRing, TokenIssuer, load_signing_key
from tests.team_docs import drop_team, store_team

REPO = Path(__file__).resolve().parents[1]
HOME = Path(os.environ.get("CHATSTACK_HOME", REPO / ".stack"))
_STAMP = re.compile(rb"bench:(\d+)")


def stack_settings() -> Settings:
    pairs = (line.split("=", 1) for line in (HOME / "env").read_text().splitlines() if "=" in line)
    return Settings.from_env(dict(pairs))


def _issuer(settings: Settings) -> TokenIssuer:
    keys = KeyRing([load_signing_key(Path(p)) for p in settings.auth_signing_keys])
    return TokenIssuer(keys, issuer=settings.jwt_issuer, audience=settings.jwt_audience, ttl_s=3600)


async def _team(settings: Settings, members: list[str]) -> str:
    client = make_mongo_client(settings)
    team_id = uuid.uuid4().hex
    await store_team(
        database(client, settings),
        {
            "_id": team_id,
            "name": "bench",
            "icon": "",
            "active": True,
            "meta_tags": [],
            "members": members,
            "admins": members[:1],
            "super_admin": members[0],
            "doc": datetime.now(UTC),
        },
    )
    await client.close()
    return team_id


class RawReceiver:
    """A WebSocket client that only frames bytes and timestamps ``bench:<ns>`` payloads."""

    def __init__(self, latencies: list[float]) -> None:
        self.latencies = latencies
        self.frames = 0
        self._writer: asyncio.StreamWriter | None = None

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
        # The first frame is hello, or a close (e.g. 1013 when memberships could not be read).
        first = await reader.readexactly(2)
        length = first[1] & 0x7F
        if length == 126:
            length = int.from_bytes(await reader.readexactly(2), "big")
        await reader.readexactly(length)
        if first[0] & 0x0F == 0x8:
            writer.close()
            raise ConnectionError("closed instead of hello")
        self._task = asyncio.create_task(self._read(reader))

    async def connect_retrying(self, port: int, token: str, attempts: int = 10) -> None:
        for attempt in range(attempts):
            try:
                await self.connect(port, token)
                return
            except (ConnectionError, asyncio.IncompleteReadError):
                await asyncio.sleep(0.2 * (attempt + 1))
        raise ConnectionError("could not connect")

    async def _read(self, reader: asyncio.StreamReader) -> None:
        buf = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            now = time.time_ns()
            buf += chunk
            while len(buf) >= 2:
                length = buf[1] & 0x7F
                offset = 2
                if length == 126:
                    if len(buf) < 4:
                        break
                    length = int.from_bytes(buf[2:4], "big")
                    offset = 4
                elif length == 127:
                    if len(buf) < 10:
                        break
                    length = int.from_bytes(buf[2:10], "big")
                    offset = 10
                if len(buf) < offset + length:
                    break
                payload = buf[offset : offset + length]
                buf = buf[offset + length :]
                self.frames += 1
                match = _STAMP.search(payload)
                if match:
                    self.latencies.append((now - int(match.group(1))) / 1e6)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _own_cpu_s() -> float:
    """This process's CPU seconds (the load generator's own cost), user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _report(name: str, latencies: list[float], extra: dict[str, Any]) -> None:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 2) if ordered else 0.0

    print(
        json.dumps(
            {
                "bench": name,
                **extra,
                "samples": len(ordered),
                "p50_ms": pct(0.50),
                "p99_ms": pct(0.99),
                "max_ms": round(ordered[-1], 2) if ordered else 0.0,
                "mean_ms": round(statistics.fmean(ordered), 2) if ordered else 0.0,
                "loadgen_cpu_s": round(_own_cpu_s(), 2),
            }
        )
    )


async def _send_at_rate(
    sender: ChatClient, team: str, rate: float, seconds: float, to: list[str] | None = None
) -> int:
    """Send ``bench:<ns>`` messages at a fixed rate, not waiting for acks in between."""
    interval = 1.0 / rate
    start = time.monotonic()
    sent = 0
    tasks: list[asyncio.Task[Any]] = []
    while time.monotonic() - start < seconds:
        target = to[sent % len(to)] if to else "*"
        task = asyncio.create_task(
            sender.send(team, f"bench:{time.time_ns()}", to=target, timeout=60)
        )
        tasks.append(task)
        sent += 1
        delay = start + sent * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        kinds = sorted({repr(f)[:80] for f in failures})
        print(json.dumps({"failed_sends": len(failures), "kinds": kinds}))
    return sent - len(failures)


async def fanout(args: argparse.Namespace) -> None:
    settings = stack_settings()
    issuer = _issuer(settings)
    members = [uuid.uuid4().hex for _ in range(args.members)]
    team = await _team(settings, members)
    # Several senders, each a member of their own: one socket may send at most
    # CHAT_WS_RATE_PER_S messages per second, and one user CHAT_WS_USER_RATE_PER_S per relay.
    senders = [
        await ChatClient.connect(
            f"ws://127.0.0.1:{args.sender_port}/v1/ws", issuer.issue(members[i]).token
        )
        for i in range(args.senders)
    ]
    relay_port = args.relay_port
    latencies: list[float] = []
    receivers = [RawReceiver(latencies) for _ in members[1:]]
    for i in range(0, len(receivers), 100):
        await asyncio.gather(
            *(
                r.connect_retrying(relay_port, issuer.issue(m).token)
                for r, m in zip(receivers[i : i + 100], members[1 + i : 101 + i], strict=True)
            )
        )
    await asyncio.sleep(1.0)  # the relay's subscription reaches the controller
    for r in receivers:
        r.frames = 0
    latencies.clear()
    cpu0 = _own_cpu_s()
    stack_cpu = StackCpu(HOME)
    stack_cpu.start()
    started = time.monotonic()
    counts = await asyncio.gather(
        *(_send_at_rate(s, team, args.rate / len(senders), args.seconds) for s in senders)
    )
    sent = sum(counts)
    expected = sent * len(receivers)
    deadline = time.monotonic() + 30
    while sum(r.frames for r in receivers) < expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - started
    cpu1 = _own_cpu_s()
    component_cpu = stack_cpu.stop()
    delivered = sum(r.frames for r in receivers)
    _report(
        "fanout",
        latencies,
        {
            "room": args.members,
            "offered_msgs_per_s": args.rate,
            "sent": sent,
            "deliveries": delivered,
            "expected": expected,
            "deliveries_per_s": round(delivered / elapsed),
            "loadgen_cpu_during_s": round(cpu1 - cpu0, 2),
            "seconds": round(elapsed, 2),
            "cpu_s": component_cpu,
            "relay_us_per_delivery": round(
                component_cpu.get(_relay_name(relay_port), 0.0) / max(delivered, 1) * 1e6, 2
            ),
        },
    )
    for s in senders:
        await s.close()
    for r in receivers:
        r.close()
    await _drop_team(settings, team)


async def _drop_team(settings: Settings, team_id: str) -> None:
    # Bench teams are large; leaving them would slow every later membership scan on FerretDB.
    client = make_mongo_client(settings)
    await drop_team(database(client, settings), team_id)
    await client.close()


async def dm(args: argparse.Namespace) -> None:
    settings = stack_settings()
    issuer = _issuer(settings)
    senders_ids = [uuid.uuid4().hex for _ in range(args.pairs)]
    receiver_ids = [uuid.uuid4().hex for _ in range(args.pairs)]
    team = await _team(settings, senders_ids + receiver_ids)
    if args.loadgen == "go":
        try:
            await asyncio.to_thread(_dm_go, args, issuer, team, senders_ids, receiver_ids)
        finally:
            await _drop_team(settings, team)
        return
    latencies: list[float] = []
    receivers = [RawReceiver(latencies) for _ in receiver_ids]
    for r, uid in zip(receivers, receiver_ids, strict=True):
        await r.connect_retrying(args.relay_port, issuer.issue(uid).token)
    senders = [
        await ChatClient.connect(
            f"ws://127.0.0.1:{args.sender_port}/v1/ws", issuer.issue(uid).token
        )
        for uid in senders_ids
    ]
    await asyncio.sleep(args.settle)  # the arrival's presence frames go out first (see _dm_go)
    latencies.clear()
    per_sender = args.rate / args.pairs
    stack_cpu = StackCpu(HOME)
    stack_cpu.start()
    counts = await asyncio.gather(
        *(
            _send_at_rate(s, team, per_sender, args.seconds, to=[rid])
            for s, rid in zip(senders, receiver_ids, strict=True)
        )
    )
    await asyncio.sleep(2.0)
    component_cpu = stack_cpu.stop()
    sent = sum(counts)
    _report(
        "dm",
        latencies,
        {
            "pairs": args.pairs,
            "offered_msgs_per_s": args.rate,
            "sent": sent,
            **_cpu_per_message(component_cpu, sent),
        },
    )
    for s in senders:
        await s.close()
    for r in receivers:
        r.close()
    await _drop_team(settings, team)


def _cpu_per_message(component_cpu: dict[str, float], sent: int) -> dict[str, Any]:
    """Each component's CPU seconds, and per message in milliseconds of CPU: our processes
    (relays, controller) together, the whole stack, and each component on its own."""
    return {
        "cpu_s": component_cpu,
        **ms_per_message(component_cpu, max(sent, 1)),
        "cpu_ms_per_msg": {k: round(v / max(sent, 1) * 1000, 3) for k, v in component_cpu.items()},
    }


def _dm_go(
    args: argparse.Namespace,
    issuer: TokenIssuer,
    team: str,
    senders_ids: list[str],
    receiver_ids: list[str],
) -> None:
    """The DM workload driven by the compiled load generator (bench/loadgen, ``-dm``): sender i
    sends to receiver i, so each message has one receiving socket. Go costs the shared cores a
    fraction of what the Python clients do, and timestamps frames as they arrive."""
    from bench.compare import built, drive, write_tokens  # compare imports this module

    (loadgen,) = built("loadgen")
    with tempfile.TemporaryDirectory(prefix="bench-dm-") as tmp:
        workdir = Path(tmp)
        tokens = workdir / "tokens.json"
        write_tokens(
            tokens,
            [issuer.issue(u).token for u in receiver_ids],
            [issuer.issue(u).token for u in senders_ids],
            dm_to=receiver_ids,
        )
        argv = [
            str(loadgen), "-target", "chatstack", "-dm", "-channel", team,
            "-tokens", str(tokens), "-rate", str(args.rate), "-seconds", str(args.seconds),
            "-url", f"ws://127.0.0.1:{args.relay_port}/v1/ws",
            "-publish-url", f"ws://127.0.0.1:{args.sender_port}/v1/ws",
            "-procs", "1", "-drain", "20s",
        ]  # fmt: skip
        # Every socket's arrival is announced to the team (presence, within about a second): with
        # 100 pairs 40,000 frames, a second of the receiving relay's CPU. Measure DMs after it.
        driven = drive(argv, stack_pids(HOME), workdir, settle_s=args.settle)
        result, cpu = driven.result, driven.cpu
    sent = int(result["acked"])
    component_cpu = {k: round(v, 3) for k, v in cpu.items() if k != "machine"}
    print(
        json.dumps(
            {
                "bench": "dm",
                "loadgen": "go",
                "pairs": args.pairs,
                "offered_msgs_per_s": args.rate,
                "sent": sent,
                "undelivered": result["undelivered"],
                "duplicates": result["duplicates"],
                **_cpu_per_message(component_cpu, sent),
                "p50_ms": result["p50_ms"],
                "p99_ms": result["p99_ms"],
                "max_ms": result["max_ms"],
                "mean_ms": result["mean_ms"],
                "loadgen_cpu_s": result["loadgen_cpu_s"],
                "measured_s": result["measured_s"],
            }
        )
    )


def _relay_name(port: int) -> str:
    """The stack's name of the relay on ``port`` (relay-1 is the first of CHATSTACK_RELAY_PORTS)."""
    ports = os.environ.get("CHATSTACK_RELAY_PORTS", "8103,8104").split(",")
    return f"relay-{ports.index(str(port)) + 1}" if str(port) in ports else "relay-1"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def idle(args: argparse.Namespace) -> None:
    settings = stack_settings()
    issuer = _issuer(settings)
    pid = int((HOME / "run" / f"{args.relay_name}.pid").read_text())
    users = [uuid.uuid4().hex for _ in range(args.sockets)]
    await _team(settings, users[:1])
    before = _rss_kib(pid)
    receivers = [RawReceiver([]) for _ in users]
    started = time.monotonic()
    for i in range(0, len(users), 200):
        await asyncio.gather(
            *(
                r.connect_retrying(args.relay_port, issuer.issue(u).token)
                for r, u in zip(receivers[i : i + 200], users[i : i + 200], strict=True)
            )
        )
    connect_s = time.monotonic() - started
    await asyncio.sleep(3.0)
    after = _rss_kib(pid)
    print(
        json.dumps(
            {
                "bench": "idle",
                "sockets": args.sockets,
                "relay_rss_before_kib": before,
                "relay_rss_after_kib": after,
                "kib_per_socket": round((after - before) / args.sockets, 2),
                "connect_seconds": round(connect_s, 1),
            }
        )
    )
    for r in receivers:
        r.close()


async def _metrics(port: int) -> str:
    """The controller's /metrics page (cheap to poll)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
    body = (await reader.read()).decode()
    writer.close()
    return body


def metric_samples(page: str, name: str) -> list[float]:
    """The values of every sample of one metric (any labels) on a /metrics page."""
    return [
        float(line.split()[-1])
        for line in page.splitlines()
        if line.startswith((f"{name}{{", f"{name} "))
    ]


async def _inserted(port: int) -> float:
    """The controller's count of inserted messages."""
    return sum(
        metric_samples(await _metrics(port), 'controller_messages_total{outcome="inserted"}')
    )


async def persist(args: argparse.Namespace) -> None:
    settings = stack_settings()
    rooms = [uuid.uuid4().hex for _ in range(args.rooms)]
    producer = make_producer(settings, client_id="bench-persist")
    await producer.start()
    sender = uuid.uuid4().hex
    before = await _inserted(settings.controller_http_port)
    stack_cpu = StackCpu(HOME)
    stack_cpu.start()
    own_cpu = _own_cpu_s()
    started = time.monotonic()
    futures = []
    for i in range(args.messages):
        room = rooms[i % len(rooms)]
        record = chat_pb2.ChatMessage(
            id=f"bench{uuid.uuid4().hex}",
            channel_id=room,
            to="*",
            type=chat_pb2.MESSAGE_TYPE_TEXT,
            data=f"persist {i}",
            sender=sender,
            ts_ms=int(time.time() * 1000),
        )
        futures.append(
            await producer.send(MESSAGES_TOPIC, record.SerializeToString(), key=room.encode())
        )
    await asyncio.gather(*futures)
    produced_s = time.monotonic() - started
    stored = 0.0
    while stored < args.messages and time.monotonic() - started < 300:
        await asyncio.sleep(0.25)
        stored = await _inserted(settings.controller_http_port) - before
    elapsed = time.monotonic() - started
    # Until the last insert only: the checkpoint that follows it is not in the figure either.
    component_cpu = stack_cpu.stop()
    print(
        json.dumps(
            {
                "bench": "persist",
                "rooms": args.rooms,
                "messages": args.messages,
                "stored": int(stored),
                "produce_seconds": round(produced_s, 1),
                "seconds_to_stored": round(elapsed, 1),
                "persisted_per_s": round(stored / elapsed),
                **_cpu_per_message(component_cpu, int(stored)),
                "loadgen_cpu_s": round(_own_cpu_s() - own_cpu, 2),
            }
        )
    )
    await producer.stop()


async def takeover(args: argparse.Namespace) -> None:
    """The persist burst, then the controller stopped (``--signal term``) or killed (``kill``)
    the moment its last message is stored: how long until its successor (the supervisor
    restarts it) has committed everything, and how much it consumed again."""
    settings = stack_settings()
    port = settings.controller_http_port
    await persist(args)
    old = stack_pids(HOME)["controller"]
    signalled = time.monotonic()
    os.kill(old, signal.SIGKILL if args.signal == "kill" else signal.SIGTERM)
    lag: list[float] = []
    page = ""
    while time.monotonic() - signalled < args.timeout:
        await asyncio.sleep(0.25)
        if stack_pids(HOME).get("controller") in (None, old):
            continue  # not restarted yet
        try:
            page = await _metrics(port)
        except OSError:
            continue  # restarted, not listening yet
        lag = metric_samples(page, "controller_consumer_lag")
        if lag and sum(lag) == 0:
            break
    print(
        json.dumps(
            {
                "bench": "takeover",
                "signal": args.signal,
                "caught_up": bool(lag) and sum(lag) == 0,
                "seconds_to_caught_up": round(time.monotonic() - signalled, 1),
                "consumed_again": int(
                    sum(metric_samples(page, 'controller_messages_total{outcome="redelivered"}'))
                ),
                "successor_store_seconds": round(
                    sum(metric_samples(page, "controller_persist_seconds_sum")), 1
                ),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="bench", required=True)
    p = sub.add_parser("fanout")
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--senders", type=int, default=4)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--relay-port", type=int, default=8103)
    p.add_argument("--sender-port", type=int, default=8104)
    p = sub.add_parser("dm")
    p.add_argument("--pairs", type=int, default=50)
    p.add_argument(
        "--loadgen", choices=("go", "python"), default="go", help="who sends and receives"
    )
    p.add_argument(
        "--settle", type=float, default=3.0, help="seconds between connecting and sending"
    )
    p.add_argument("--rate", type=float, default=1000.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--relay-port", type=int, default=8103)
    p.add_argument("--sender-port", type=int, default=8104)
    p = sub.add_parser("idle")
    p.add_argument("--sockets", type=int, default=10000)
    p.add_argument("--relay-port", type=int, default=8103)
    p.add_argument("--relay-name", default="relay-1")
    for name in ("persist", "takeover"):
        p = sub.add_parser(name)
        p.add_argument("--rooms", type=int, default=2000)
        p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--signal", choices=("kill", "term"), default="kill")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for catching up")
    args = parser.parse_args()
    runner = {"fanout": fanout, "dm": dm, "idle": idle, "persist": persist, "takeover": takeover}[
        args.bench
    ]
    asyncio.run(runner(args))


if __name__ == "__main__":
    main()
