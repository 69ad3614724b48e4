"""One account floods the relays with valid messages past its rate limit; what does it cost?

    make stack-up
    .venv/bin/python -m bench.flood --sockets 4 --seconds 8 --runs 3

Registers two accounts in one team through nginx. The flooder opens ``--sockets`` sockets (nginx
spreads them over the relays) and sends 4,000-character texts on all of them as fast as they go
for ``--seconds``, ignoring every ``rate_limited``; meanwhile the other member sends a message
every 0.3 s and times its ack. Prints, per run: frames sent, answered ``rate_limited``, acked, the
sockets the relays closed (1008) and when, each relay's CPU seconds in the window, and the other
member's ack latency idle and during the flood. Runs are 60 s apart, so that the relays' per-user
refusal budget (50, one a second) is full again at each start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
from websockets.exceptions import ConnectionClosed

from bench.proc_cpu import StackCpu
from chatclient import ChatClient
from chatclient import http as rest
from deploy.local.config import StackConfig

# Throwaway accounts: a fresh password each time, printed nowhere.
PASSWORD = uuid.uuid4().hex
TEXT = "é" * 4000


@dataclass(slots=True)
class Flooder:
    """One of the flooder's sockets and what came back on it."""

    client: ChatClient
    sent: int = 0
    closed_after_s: float | None = None
    answers: list[str] = field(default_factory=list)


async def _account(base: str, name: str) -> rest.AuthSession:
    email = f"flood-{name}-{uuid.uuid4().hex[:10]}@example.com"
    await rest.register(base, email, PASSWORD, name)
    return await rest.login(base, email, PASSWORD)


async def _team(base: str, owner: rest.AuthSession, member: rest.AuthSession) -> str:
    auth = {"Authorization": f"Bearer {owner.access_token}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/v1/teams", json={"name": "flood"}, headers=auth) as resp:
            team = str((await resp.json())["data"]["id"])
        body = {"user_id": member.user_id}
        async with http.post(f"{base}/v1/teams/{team}/members", json=body, headers=auth) as resp:
            resp.raise_for_status()
    return team


async def _latencies(client: ChatClient, team: str, until: float) -> list[float]:
    """The member's send→ack times, one message every 0.3 s until ``until``."""
    found = []
    while time.monotonic() < until:
        begin = time.perf_counter()
        await client.send(team, "probe")
        found.append((time.perf_counter() - begin) * 1000)
        await asyncio.sleep(0.3)
    return found


async def _flood(f: Flooder, team: str, started: float, until: float) -> None:
    frame = json.dumps({"channel_id": team, "to": "*", "type": "text", "data": TEXT})
    while time.monotonic() < until:
        try:
            await f.client.conn.send(frame)
        except ConnectionClosed:
            f.closed_after_s = round(time.monotonic() - started, 3)
            return
        f.sent += 1
        if f.sent % 50 == 0:
            await asyncio.sleep(0)  # let the reader and the member's probe run


def _summary(values: list[float]) -> str:
    return f"p50 {statistics.median(values):.0f} ms, max {max(values):.0f} ms" if values else "-"


async def _run(base: str, ws: str, cfg: StackConfig, sockets: int, seconds: float) -> None:
    flooder, member = await _account(base, "Flooder"), await _account(base, "Member")
    team = await _team(base, flooder, member)
    async with await ChatClient.connect(ws, member.access_token) as probe:
        idle = await _latencies(probe, team, time.monotonic() + 3)
        flooders = [
            Flooder(await ChatClient.connect(ws, flooder.access_token)) for _ in range(sockets)
        ]
        relays = sorted({str(f.client.hello.get("relay")) for f in flooders})
        cpu = StackCpu(cfg.home)
        cpu.start()
        started = time.monotonic()
        until = started + seconds
        measured = asyncio.create_task(_latencies(probe, team, until))
        await asyncio.gather(*(_flood(f, team, started, until) for f in flooders))
        during = await measured
        used = cpu.stop()
        await asyncio.sleep(1)  # the last answers
        for f in flooders:
            f.answers = [str(e.get("code")) for e in f.client.errors]
            acks = 0
            while not f.client.events.empty():
                acks += f.client.events.get_nowait().get("type") == "ack"
            f.answers += ["ack"] * acks
            await f.client.close()
    closed = sorted(f.closed_after_s for f in flooders if f.closed_after_s is not None)
    answers = [a for f in flooders for a in f.answers]
    relay_cpu = {name: seconds for name, seconds in used.items() if name.startswith("relay")}
    print(
        f"flooder sockets on {', '.join(relays)}: sent {sum(f.sent for f in flooders)} frames "
        f"of {len(TEXT)} characters in {seconds:.0f} s; answered rate_limited "
        f"{answers.count('rate_limited')}, acked {answers.count('ack')}; sockets closed "
        f"{len(closed)}/{sockets} after {closed} s; relay CPU s {relay_cpu}; the member's acks: "
        f"idle {_summary(idle)}, during the flood {_summary(during)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sockets", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cfg = StackConfig.from_env()
    base = f"http://127.0.0.1:{cfg.nginx_port}"
    ws = f"ws://127.0.0.1:{cfg.nginx_port}/v1/ws"
    for run in range(args.runs):
        if run:
            time.sleep(60)
        asyncio.run(_run(base, ws, cfg, args.sockets, args.seconds))


if __name__ == "__main__":
    main()
