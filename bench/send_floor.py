"""The floor for a relay's delivery: CPU per bare ``socket.send`` of one frame over loopback.

    .venv/bin/python -m bench.send_floor --sockets 1000 --rate 30000 --seconds 10 --bytes 200

A sink process accepts ``--sockets`` loopback connections and reads everything; this process
sends a ``--bytes`` frame to each socket in turn, ``--rate`` sends per second in all (paced like a
fan-out: one message to every socket, then the next), and reports its own CPU per send. This is
what the relay's CPU per delivery is compared with (docs/benchmarks.md): the same frame size, the
same loopback, the same machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import selectors
import socket
import time
from multiprocessing.connection import Connection


def _sink(port_pipe: Connection, expected: int) -> None:
    server = socket.create_server(("127.0.0.1", 0), backlog=expected)
    port_pipe.send(server.getsockname()[1])
    selector = selectors.DefaultSelector()
    conns: list[socket.socket] = []
    while len(conns) < expected:
        conn, _ = server.accept()
        conn.setblocking(False)
        selector.register(conn, selectors.EVENT_READ)
        conns.append(conn)
    while True:
        for key, _ in selector.select(timeout=1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                if not sock.recv(1 << 20):
                    return
            except BlockingIOError:
                continue


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(*, sockets: int, rate: float, seconds: float, payload_bytes: int) -> dict[str, float]:
    """Send one ``payload_bytes`` frame to each of ``sockets`` loopback sockets in turn, ``rate``
    sends per second in all; this process's CPU per send."""
    ours, theirs = multiprocessing.Pipe()
    sink = multiprocessing.Process(target=_sink, args=(theirs, sockets), daemon=True)
    sink.start()
    port = ours.recv()
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(sockets)]
    for sock in socks:
        sock.setblocking(False)
    header = b"\x81" + (
        bytes((payload_bytes,))
        if payload_bytes < 126
        else b"\x7e" + payload_bytes.to_bytes(2, "big")
    )
    frame = header + b"x" * payload_bytes
    rounds = max(1, int(rate * seconds / sockets))
    interval = sockets / rate
    sent = refused = 0
    cpu0, start = _cpu(), time.monotonic()
    for n in range(rounds):
        for sock in socks:
            try:
                sock.send(frame)
                sent += 1
            except BlockingIOError:
                refused += 1
        delay = start + (n + 1) * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    cpu = _cpu() - cpu0
    for sock in socks:
        sock.close()
    sink.join(5)
    return {
        "sockets": sockets,
        "frame_bytes": len(frame),
        "sends": sent,
        "refused": refused,
        "cpu_s": round(cpu, 3),
        "cpu_us_per_send": round(cpu / max(sent, 1) * 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=30000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--bytes", type=int, default=200)
    args = parser.parse_args()
    figures = measure(
        sockets=args.sockets, rate=args.rate, seconds=args.seconds, payload_bytes=args.bytes
    )
    print(json.dumps({"bench": "send_floor", **figures}))


if __name__ == "__main__":
    main()
