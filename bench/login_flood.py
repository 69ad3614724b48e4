"""What a flood of logins does to the auth service: how long logins wait, what else waits.

    make stack-up
    .venv/bin/python -m bench.login_flood --flood 200 --runs 3

Every login checks a password with argon2id (about 150 ms of two cores at the default
parameters), so a burst of logins from many addresses (or after an outage, every client at
once) is more work than the machine does in a second. This starts an auth service of its own
(``python -m services.auth`` on a free port, on the stack's Kafka and a database of its own, its
per-address login limits lifted since every request comes from 127.0.0.1), registers two users,
then sends ``--flood`` logins of unknown emails at once (each costs a full check against the
dummy hash). Meanwhile it times a refresh every 100 ms and, half a second in, one real login.

Prints, as the median of ``--runs``: how the flood's logins were answered (200/401 or 503) and
how long they took (p50, max), the real login's time and answer, the refreshes' p50 and max, the
service's peak memory (VmHWM) and its CPU seconds. Drops its database. ``--cwd`` runs another
checkout's service (``git worktree add ../before <commit>``) against the same load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bench.pipeline import HOME
from bench.proc_cpu import CLK_TCK, parse_stat
from deploy.local.processes import http_ok

# The benchmark's throwaway accounts, in a database it drops.
PASSWORD = "correct horse battery staple"  # noqa: S105


@dataclass(frozen=True, slots=True)
class Outcome:
    flood_answers: dict[int, int]
    flood_p50_ms: float
    flood_max_ms: float
    login_ms: float
    login_status: int
    refresh_p50_ms: float
    refresh_max_ms: float
    peak_mib: float
    cpu_s: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _service_env(port: int, db: str, extra: list[str]) -> dict[str, str]:
    env = dict(os.environ)
    for line in (HOME / "env").read_text().splitlines():
        if "=" in line:
            key, value = line.split("=", 1)
            env[key] = value
    env.update(
        CHAT_AUTH_PORT=str(port),
        CHAT_MONGO_DB=db,
        CHAT_LOGIN_IP_BURST="100000",
        CHAT_LOGIN_IP_PER_MINUTE="100000",
        CHAT_REGISTER_IP_BURST="1000",
        CHAT_REGISTER_IP_PER_MINUTE="1000",
    )
    for pair in extra:
        key, _, value = pair.partition("=")
        env[key] = value
    return env


def _peak_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s(pid: int) -> float:
    return parse_stat(Path(f"/proc/{pid}/stat").read_text()).ticks / CLK_TCK


async def _timed(
    session: aiohttp.ClientSession, url: str, body: Mapping[str, object]
) -> tuple[int, float]:
    started = time.perf_counter()
    async with session.post(url, json=body) as response:
        await response.read()
        return response.status, (time.perf_counter() - started) * 1000


async def _one_run(base: str, flood: int, pid: int) -> Outcome:
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(base_url=base, connector=connector, timeout=timeout) as http:
        emails = [f"flood-{uuid.uuid4().hex[:10]}@bench.test" for _ in range(2)]
        for email in emails:
            status, _ = await _timed(
                http, "/v1/auth/register", {"email": email, "name": "Bench", "password": PASSWORD}
            )
            assert status == 201, status
        async with http.post(
            "/v1/auth/login", json={"email": emails[0], "password": PASSWORD}
        ) as response:
            refresh_token = (await response.json())["data"]["refresh_token"]
        cpu_before = _cpu_s(pid)
        done = asyncio.Event()

        async def refresher() -> list[float]:
            nonlocal refresh_token
            times = []
            while not done.is_set():
                started = time.perf_counter()
                async with http.post(
                    "/v1/auth/refresh", json={"refresh_token": refresh_token}
                ) as response:
                    assert response.status == 200, response.status
                    refresh_token = (await response.json())["data"]["refresh_token"]
                times.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.1)
            return times

        async def real_login() -> tuple[int, float]:
            await asyncio.sleep(0.5)
            return await _timed(http, "/v1/auth/login", {"email": emails[1], "password": PASSWORD})

        refreshing = asyncio.create_task(refresher())
        logging_in = asyncio.create_task(real_login())
        bodies = [
            {"email": f"nobody-{uuid.uuid4().hex[:10]}@bench.test", "password": "wrong guess 1"}
            for _ in range(flood)
        ]
        answers = await asyncio.gather(*(_timed(http, "/v1/auth/login", b) for b in bodies))
        login_status, login_ms = await logging_in
        done.set()
        refreshes = await refreshing
        cpu = _cpu_s(pid) - cpu_before
    took = sorted(ms for _, ms in answers)
    return Outcome(
        flood_answers=dict(Counter(status for status, _ in answers)),
        flood_p50_ms=statistics.median(took),
        flood_max_ms=took[-1],
        login_ms=login_ms,
        login_status=login_status,
        refresh_p50_ms=statistics.median(refreshes),
        refresh_max_ms=max(refreshes),
        peak_mib=_peak_mib(pid),
        cpu_s=cpu,
    )


async def _wait_ready(base: str, proc: asyncio.subprocess.Process) -> None:
    for _ in range(300):
        if proc.returncode is not None:
            raise SystemExit(f"the auth service exited with {proc.returncode}")
        if await asyncio.to_thread(http_ok, f"{base}/readyz"):
            return
        await asyncio.sleep(0.1)
    raise SystemExit("the auth service did not become ready")


async def _drop(db: str) -> None:
    from bench.pipeline import stack_settings
    from chatcore.mongo import make_mongo_client

    client = make_mongo_client(stack_settings())
    try:
        await client.drop_database(db)
    finally:
        await client.close()


async def run(args: argparse.Namespace) -> None:
    outcomes = []
    for _ in range(args.runs):
        # A fresh service per run: its peak memory is this run's.
        port, db = _free_port(), f"bench_flood_{uuid.uuid4().hex[:8]}"
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.auth",
            env=_service_env(port, db, args.env),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            cwd=args.cwd,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            await _wait_ready(base, proc)
            outcome = await _one_run(base, args.flood, proc.pid)
            outcomes.append(outcome)
            print(outcome, flush=True)
        finally:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
            await _drop(db)

    def median(values: list[float]) -> float:
        return statistics.median(values)

    print(f"median of {len(outcomes)} runs, {args.flood} logins at once:")
    print(f"  flood answers (last run): {outcomes[-1].flood_answers}")
    print(
        f"  flood login p50 {median([o.flood_p50_ms for o in outcomes]):.0f} ms, "
        f"max {median([o.flood_max_ms for o in outcomes]):.0f} ms"
    )
    print(
        f"  real login {median([o.login_ms for o in outcomes]):.0f} ms "
        f"(answers {[o.login_status for o in outcomes]})"
    )
    print(
        f"  refresh p50 {median([o.refresh_p50_ms for o in outcomes]):.1f} ms, "
        f"max {median([o.refresh_max_ms for o in outcomes]):.1f} ms"
    )
    print(
        f"  auth peak memory {median([o.peak_mib for o in outcomes]):.0f} MiB, "
        f"CPU {median([o.cpu_s for o in outcomes]):.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flood", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--cwd",
        default=None,
        help="a checkout whose auth service to run (another commit's, to compare); default here",
    )
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the service (repeatable)"
    )
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
