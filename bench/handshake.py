"""Handshake latency: from opening a WebSocket to its ``hello``, through one relay.

    .venv/bin/python -m bench.handshake --sockets 300 --teams 5 --parallel 1
    .venv/bin/python -m bench.handshake --sockets 1000 --teams 5 --parallel 1000

Starts auth, a controller, management and two relays in-process on the local stack's Kafka and
database (``tests.integration.pipeline_env``), creates one user in ``--teams`` teams, then opens
``--sockets`` sockets to one relay, ``--parallel`` at a time, and reports connect-to-hello
latency. Since ``hello`` waits for every controller to confirm the socket's channels, this is
what that wait costs on top of the token check and the membership query.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench.pipeline import stack_settings
from chatclient import ChatClient
from tests.integration.pipeline_env import start_pipeline


async def _run(sockets: int, teams: int, parallel: int) -> None:
    settings = stack_settings()
    with tempfile.TemporaryDirectory() as keys:
        pipe = await start_pipeline(settings, Path(keys), ws_max_connections_per_user=sockets + 10)
        try:
            user = await pipe.user()
            for _ in range(teams):
                await pipe.team([user])
            latencies: list[float] = []
            clients: list[ChatClient] = []
            cpu0 = resource.getrusage(resource.RUSAGE_SELF)
            started = time.perf_counter()

            async def one() -> None:
                begin = time.perf_counter()
                client = await ChatClient.connect(pipe.ws_url(0), user.token)
                latencies.append((time.perf_counter() - begin) * 1000)
                clients.append(client)

            for i in range(0, sockets, parallel):
                await asyncio.gather(*(one() for _ in range(min(parallel, sockets - i))))
                if parallel == 1 or len(clients) >= 200:
                    # Sequential runs keep at most a few sockets, so the cap never matters.
                    for client in clients:
                        await client.close()
                    clients.clear()
            wall = time.perf_counter() - started
            cpu1 = resource.getrusage(resource.RUSAGE_SELF)
            for client in clients:
                await client.close()
        finally:
            await pipe.stop()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"sockets={sockets} teams={teams} parallel={parallel} wall={wall:.2f}s "
        f"hello p50={statistics.median(latencies):.2f}ms p99={p99:.2f}ms "
        f"max={latencies[-1]:.2f}ms "
        f"(one process: client and servers share "
        f"{cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime:.2f}s CPU)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=300)
    parser.add_argument("--teams", type=int, default=5)
    parser.add_argument("--parallel", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(_run(args.sockets, args.teams, args.parallel))


if __name__ == "__main__":
    main()
