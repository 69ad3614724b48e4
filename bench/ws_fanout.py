"""Fan-out speed of the two WebSocket libraries the design allows: websockets vs aiohttp.

One server process writes M messages to N connected sockets; a separate client process holds the N
sockets, reads raw bytes and reports when everything arrived. Frames per second = N x M / elapsed.
The clients do no WebSocket parsing (byte counting only) so the measurement is the server's cost.

    .venv/bin/python bench/ws_fanout.py --library websockets --clients 1000 --messages 200
    .venv/bin/python bench/ws_fanout.py --library aiohttp --clients 1000 --messages 200
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import resource
import time
from multiprocessing.connection import Connection
from typing import Any

HOST = "127.0.0.1"


def _frame_len(payload: int) -> int:
    # Server-to-client frames are unmasked: 2 header bytes, plus 2 for 126..65535 bytes.
    return payload + (2 if payload < 126 else 4)


async def _clients(port: int, n: int, expected: int, pipe: Connection) -> None:
    readers = []
    writers = []  # kept referenced: a collected StreamWriter closes its socket
    for _ in range(n):
        reader, writer = await asyncio.open_connection(HOST, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /ws HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        readers.append(reader)
        writers.append(writer)
    pipe.send("connected")
    total = 0
    done = asyncio.Event()

    async def drain(reader: asyncio.StreamReader) -> None:
        nonlocal total
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                return
            total += len(chunk)
            if total >= expected:
                done.set()

    tasks = [asyncio.create_task(drain(r)) for r in readers]
    await done.wait()
    pipe.send(("done", time.perf_counter()))
    for task in tasks:
        task.cancel()


def _client_process(port: int, n: int, expected: int, pipe: Connection) -> None:
    asyncio.run(_clients(port, n, expected, pipe))


async def _run_websockets(args: argparse.Namespace, message: str) -> float:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    conns: list[ServerConnection] = []
    ready = asyncio.Event()

    async def handler(conn: ServerConnection) -> None:
        conns.append(conn)
        if len(conns) == args.clients:
            ready.set()
        await conn.wait_closed()

    async with serve(handler, HOST, 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]

        async def send_all() -> None:
            await ready.wait()
            for i in range(args.messages):
                broadcast(conns, message)
                # broadcast never waits: every 10 messages, let the event loop flush sockets
                # whose buffers grew (what aiohttp's send_str does per socket by awaiting).
                if i % 10 == 9:
                    while any(c.transport.get_write_buffer_size() > 262144 for c in conns):  # noqa: ASYNC110
                        await asyncio.sleep(0.001)

        return await _drive(args, port, send_all, len(message))


async def _run_aiohttp(args: argparse.Namespace, message: str) -> float:
    from aiohttp import web

    sockets: list[web.WebSocketResponse] = []
    ready = asyncio.Event()

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False, autoping=False)
        await ws.prepare(request)
        sockets.append(ws)
        if len(sockets) == args.clients:
            ready.set()
        async for _msg in ws:
            pass
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def send_all() -> None:
        await ready.wait()
        for _ in range(args.messages):
            for ws in sockets:
                await ws.send_str(message)

    try:
        return await _drive(args, port, send_all, len(message))
    finally:
        await runner.cleanup()


async def _drive(args: argparse.Namespace, port: int, send_all: Any, size: int) -> float:
    expected = args.clients * args.messages * _frame_len(size)
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(
        target=_client_process, args=(port, args.clients, expected, child), daemon=True
    )
    proc.start()
    loop = asyncio.get_running_loop()
    assert await loop.run_in_executor(None, parent.recv) == "connected"
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    await send_all()
    _tag, finished = await loop.run_in_executor(None, parent.recv)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    proc.terminate()
    proc.join()
    elapsed: float = finished - started
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    print(
        json.dumps(
            {
                "library": args.library,
                "clients": args.clients,
                "messages": args.messages,
                "frames": args.clients * args.messages,
                "seconds": round(elapsed, 3),
                "frames_per_s": round(args.clients * args.messages / elapsed),
                "server_cpu_s": round(cpu, 2),
            }
        )
    )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--library", choices=["websockets", "aiohttp"], required=True)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--size", type=int, default=200, help="payload bytes per message")
    args = parser.parse_args()
    message = json.dumps({"data": "x" * max(0, args.size - 12)})[: args.size].ljust(args.size)
    runner = _run_websockets if args.library == "websockets" else _run_aiohttp
    asyncio.run(runner(args, message))


if __name__ == "__main__":
    main()
