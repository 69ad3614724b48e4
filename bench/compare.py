"""Side by side: the same fan-out workload against one of our relays and against Centrifugo v6.

    make stack-up
    .venv/bin/python -m bench.compare --members 1000 --rate 10 30 60 --seconds 10 --runs 3

(or `make bench-compare BENCH_ARGS='...'`, which starts the stack when it is not running). One Go
load generator (bench/loadgen) drives both: N receivers in one room on one server, publishers
sending M msg/s for S seconds, every delivery checked. The receivers connect to our relay
directly (CHATSTACK_RELAY_PORTS' first by default), not through nginx.

Server CPU is read from /proc/<pid>/stat (utime + stime of the process and its live children)
between the moment every socket is connected and the moment the last delivery arrived:

- ours, "relay": the relay under test, which holds the receivers and (by default) the publishers,
  so it takes the messages in and fans them out, as the one Centrifugo process does;
- ours, "stack": every component the stack's supervisor runs (relays, controller, Kafka,
  FerretDB, PostgreSQL with its backends, auth, management, S3, clamd, nginx), each also shown;
- Centrifugo: its one process (memory engine, history and recovery on).

Each run's figures are computed first, then the median of each over ``--runs``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import IO, Any

from bench.centrifugo_server import NAMESPACE, CentrifugoServer
from bench.pipeline import _drop_team, _issuer, _team, stack_settings
from bench.proc_cpu import cpu_seconds, sample, stack_pids
from bench.send_floor import measure as send_floor
from deploy.local.config import StackConfig

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "deploy" / "local" / "install.sh"


# --- figures -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunFigures:
    """One run against one server. ``server_cpu_s`` is the relay under test or Centrifugo;
    ``stack_cpu_s`` is the whole stack or (the same) Centrifugo."""

    target: str
    rate: float
    sent: float
    expected: float
    delivered: float
    undelivered: float
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    server_cpu_s: float
    stack_cpu_s: float
    loadgen_cpu_s: float
    machine_cpu_s: float
    other_cpu_s: float
    measured_s: float
    frame_bytes: float
    # Each receiver's first handshake attempt to its hello, with --connect-parallel in flight.
    connect_p50_ms: float = 0.0
    connect_p99_ms: float = 0.0
    connect_max_ms: float = 0.0
    components: tuple[tuple[str, float], ...] = ()
    # CPU-s by component while the receivers connected (the handshake storm's cost).
    connect_components: tuple[tuple[str, float], ...] = ()

    @property
    def per_server_cpu_s(self) -> float:
        return self.delivered / self.server_cpu_s if self.server_cpu_s > 0 else math.inf

    @property
    def per_stack_cpu_s(self) -> float:
        return self.delivered / self.stack_cpu_s if self.stack_cpu_s > 0 else math.inf

    @property
    def loadgen_cores(self) -> float:
        return self.loadgen_cpu_s / self.measured_s if self.measured_s > 0 else 0.0


def figures(driven: Driven, server: str, stack: Sequence[str]) -> RunFigures:
    """One run's figures from the load generator's JSON line and the CPU seconds sampled.

    ``cpu`` holds every process tree sampled (both servers, whichever ran) and ``"machine"``;
    what none of them nor the load generator used is ``other_cpu_s``, someone else's load.
    """
    result, cpu = driven.result, driven.cpu
    measured = sum(v for name, v in cpu.items() if name != "machine")
    loadgen_cpu = float(result["loadgen_cpu_s"])
    return RunFigures(
        target=str(result["target"]),
        rate=float(result["rate"]),
        sent=float(result["sent"]),
        expected=float(result["expected"]),
        delivered=float(result["delivered"]),
        undelivered=float(result["undelivered"]),
        deliveries_per_s=float(result["deliveries_per_s"]),
        p50_ms=float(result["p50_ms"]),
        p99_ms=float(result["p99_ms"]),
        max_ms=float(result["max_ms"]),
        server_cpu_s=cpu[server],
        stack_cpu_s=sum(cpu[name] for name in stack),
        loadgen_cpu_s=loadgen_cpu,
        machine_cpu_s=cpu["machine"],
        other_cpu_s=max(0.0, cpu["machine"] - measured - loadgen_cpu),
        measured_s=float(result["measured_s"]),
        frame_bytes=float(result["frame_bytes_mean"]),
        connect_p50_ms=float(result.get("connect_p50_ms", 0.0)),
        connect_p99_ms=float(result.get("connect_p99_ms", 0.0)),
        connect_max_ms=float(result.get("connect_max_ms", 0.0)),
        components=tuple((name, cpu[name]) for name in stack),
        connect_components=tuple((name, driven.connect_cpu[name]) for name in stack),
    )


def median_figures(runs: Sequence[RunFigures]) -> RunFigures:
    """The median of each figure over runs (each figure on its own, so the median run of one
    figure may differ from another's). The derived ratios are medians of per-run values."""
    if not runs:
        raise ValueError("no runs")
    numeric: dict[str, Any] = {
        f.name: statistics.median(float(getattr(r, f.name)) for r in runs)
        for f in fields(RunFigures)
        if f.name not in {"target", "components", "connect_components"}
    }
    for name in ("components", "connect_components"):
        numeric[name] = tuple(
            (c, statistics.median(dict(getattr(r, name)).get(c, 0.0) for r in runs))
            for c, _ in getattr(runs[0], name)
        )
    return replace(runs[0], **numeric)


def median_of(runs: Sequence[RunFigures], prop: str) -> float:
    return statistics.median(float(getattr(r, prop)) for r in runs)


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    ours: float
    theirs: float
    digits: int = 0

    @property
    def ratio(self) -> float | None:
        """ours / theirs; None where theirs is 0 (no ratio to speak of, e.g. none undelivered;
        a difference of CPU samples can be 0 give or take a rounding error)."""
        return None if abs(self.theirs) < 1e-9 else self.ours / self.theirs


def comparison_rows(ours: Sequence[RunFigures], theirs: Sequence[RunFigures]) -> list[Row]:
    """The table's rows: medians over runs of each side, derived ratios as medians of runs."""
    o, t = median_figures(ours), median_figures(theirs)
    return [
        Row("deliveries/s", o.deliveries_per_s, t.deliveries_per_s),
        Row("undelivered", o.undelivered, t.undelivered),
        Row("p50 latency, ms", o.p50_ms, t.p50_ms, 1),
        Row("p99 latency, ms", o.p99_ms, t.p99_ms, 1),
        Row("server CPU-s (relay under test / centrifugo)", o.server_cpu_s, t.server_cpu_s, 2),
        Row(
            "deliveries per server CPU-s",
            median_of(ours, "per_server_cpu_s"),
            median_of(theirs, "per_server_cpu_s"),
        ),
        Row("whole-stack CPU-s", o.stack_cpu_s, t.stack_cpu_s, 2),
        Row(
            "deliveries per whole-stack CPU-s",
            median_of(ours, "per_stack_cpu_s"),
            median_of(theirs, "per_stack_cpu_s"),
        ),
        Row("bytes per delivered frame", o.frame_bytes, t.frame_bytes),
        Row("load generator CPU-s", o.loadgen_cpu_s, t.loadgen_cpu_s, 2),
        Row(
            "load generator, cores",
            median_of(ours, "loadgen_cores"),
            median_of(theirs, "loadgen_cores"),
            2,
        ),
        Row("other CPU-s on the machine", o.other_cpu_s, t.other_cpu_s, 2),
        Row("connect to hello p50, ms", o.connect_p50_ms, t.connect_p50_ms, 1),
        Row("connect to hello p99, ms", o.connect_p99_ms, t.connect_p99_ms, 1),
        Row("connect to hello max, ms", o.connect_max_ms, t.connect_max_ms, 1),
    ]


def cpu_per_delivery_us(fig: RunFigures) -> float:
    return fig.server_cpu_s / fig.delivered * 1e6 if fig.delivered else math.inf


def floor_line(
    ours: Sequence[RunFigures], theirs: Sequence[RunFigures], floors_us: Sequence[float]
) -> str:
    """Each server's CPU per delivery against a bare ``socket.send`` of the same frame measured
    right after the same run (medians of per-run ratios)."""
    mine = [cpu_per_delivery_us(f) for f in ours]
    other = [cpu_per_delivery_us(f) for f in theirs]
    floor = statistics.median(floors_us)
    ratio_mine = statistics.median(m / f for m, f in zip(mine, floors_us, strict=True))
    ratio_other = statistics.median(o / f for o, f in zip(other, floors_us, strict=True))
    return (
        f"server CPU per delivery: chatstack {statistics.median(mine):.2f} µs = "
        f"{ratio_mine:.2f}x a bare socket.send of the same frame ({floor:.2f} µs, "
        f"bench/send_floor.py after each run); centrifugo {statistics.median(other):.2f} µs = "
        f"{ratio_other:.2f}x"
    )


def render_table(rate: float, members: int, runs: int, rows: Sequence[Row]) -> str:
    def num(value: float | None, digits: int) -> str:
        if value is None:
            return "-"
        return "∞" if math.isinf(value) else f"{value:,.{digits}f}"

    lines = [
        f"### {rate:g} msg/s into a {members:,}-member room (median of {runs} runs)",
        "",
        "| figure | chatstack | centrifugo | ours / centrifugo |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.label} | {num(r.ours, r.digits)} | {num(r.theirs, r.digits)} | {num(r.ratio, 2)} |"
        for r in rows
    ]
    return "\n".join(lines)


def render_components(runs: Sequence[RunFigures]) -> str:
    med = median_figures(runs)

    def listed(components: tuple[tuple[str, float], ...]) -> str:
        return ", ".join(f"{name} {cpu:.2f}" for name, cpu in components if cpu >= 0.005)

    return (
        f"chatstack CPU-s by component (median): {listed(med.components)}\n"
        f"while connecting (until every hello): {listed(med.connect_components)}"
    )


# --- running -------------------------------------------------------------------------------------


def built(*names: str) -> list[Path]:
    """Build (or find cached) the named binaries (centrifugo, loadgen); their paths."""
    subprocess.run(["bash", str(INSTALL), *names], check=True)

    def path(name: str) -> Path:
        out = subprocess.run(
            ["bash", str(INSTALL), "--print-path", name], check=True, capture_output=True, text=True
        )
        return Path(out.stdout.strip())

    return [path(name) for name in names]


def binaries() -> tuple[Path, Path]:
    """Build (or find cached) Centrifugo and the load generator; their paths."""
    centrifugo, loadgen = built("centrifugo", "loadgen")
    return centrifugo, loadgen


def _expect_event(out: IO[str], event: str, errlog: Path) -> None:
    line = out.readline()
    if not line:
        raise RuntimeError(f"load generator ended before {event!r}:\n{errlog.read_text()[-2000:]}")
    if json.loads(line).get("event") != event:
        raise RuntimeError(f"load generator said {line.strip()!r}, expected {event!r}")


@dataclass(frozen=True, slots=True)
class Driven:
    """What the load generator reported, the CPU of the measured window, and that of connecting
    (from its start until every socket had its hello)."""

    result: dict[str, Any]
    cpu: dict[str, float]
    connect_cpu: dict[str, float]


def drive(
    argv: Sequence[str], pids: Mapping[str, int], workdir: Path, *, settle_s: float = 0.0
) -> Driven:
    """Run the load generator under control: CPU is sampled once every socket is connected (and
    ``settle_s`` later) and again after the last delivery (or the drain deadline), before any
    socket closes."""
    errlog = workdir / "loadgen.err"
    connecting = sample(pids)
    with errlog.open("w") as err:
        proc = subprocess.Popen(
            [*argv, "-control"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    assert proc.stdin is not None
    assert proc.stdout is not None
    try:
        _expect_event(proc.stdout, "ready", errlog)
        connected = sample(pids)
        time.sleep(settle_s)
        before = sample(pids)
        proc.stdin.write("start\n")
        proc.stdin.flush()
        _expect_event(proc.stdout, "drained", errlog)
        after = sample(pids)
        proc.stdin.write("finish\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if proc.wait(timeout=60) != 0 or not line:
            raise RuntimeError(f"load generator failed:\n{errlog.read_text()[-2000:]}")
        return Driven(
            json.loads(line), cpu_seconds(before, after), cpu_seconds(connecting, connected)
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@dataclass(frozen=True, slots=True)
class Workload:
    members: int
    rate: float
    seconds: float
    publishers: int


def write_tokens(
    path: Path, receivers: list[str], publishers: list[str], dm_to: list[str] | None = None
) -> None:
    """The load generator's token file (0600: the tokens are live credentials)."""
    doc: dict[str, list[str]] = {"receivers": receivers, "publishers": publishers}
    if dm_to is not None:
        doc["dm_to"] = dm_to
    path.write_text(json.dumps(doc))
    path.chmod(0o600)


class Bench:
    """Runs one workload against either server; every run samples both servers' processes, so
    the idle side's CPU is not mistaken for someone else's load."""

    def __init__(
        self,
        loadgen: Path,
        cfg: StackConfig,
        server: CentrifugoServer,
        workdir: Path,
        *,
        relay: int,
        publish_relay: int,
        publish_via: str,
        loadgen_procs: int,
        connect_parallel: int,
    ) -> None:
        self.loadgen = loadgen
        self.cfg = cfg
        self.server = server
        self.workdir = workdir
        self.relay = relay
        self.publish_relay = publish_relay
        self.publish_via = publish_via
        self.loadgen_procs = loadgen_procs
        self.connect_parallel = connect_parallel
        self.tokens = workdir / "tokens.json"

    def _argv(self, target: str, channel: str, work: Workload, *extra: str) -> list[str]:
        return [
            str(self.loadgen), "-target", target, "-channel", channel,
            "-tokens", str(self.tokens), "-rate", str(work.rate), "-seconds", str(work.seconds),
            "-procs", str(self.loadgen_procs), "-connect-parallel", str(self.connect_parallel),
            *extra,
        ]  # fmt: skip

    def ours(self, work: Workload) -> RunFigures:
        settings = stack_settings()
        issuer = _issuer(settings)
        receivers = [uuid.uuid4().hex for _ in range(work.members)]
        publishers = [uuid.uuid4().hex for _ in range(work.publishers)]
        team = asyncio.run(_team(settings, publishers + receivers))
        try:
            write_tokens(
                self.tokens,
                [issuer.issue(u).token for u in receivers],
                [issuer.issue(u).token for u in publishers],
            )
            ports = self.cfg.relay_ports
            argv = self._argv(
                "chatstack", team, work,
                "-url", f"ws://127.0.0.1:{ports[self.relay - 1]}/v1/ws",
                "-publish-url", f"ws://127.0.0.1:{ports[self.publish_relay - 1]}/v1/ws",
            )  # fmt: skip
            stack = stack_pids(self.cfg)
            driven = drive(argv, {**stack, "centrifugo": self.server.pid}, self.workdir)
        finally:
            asyncio.run(_drop_team(settings, team))
        return figures(driven, server=f"relay-{self.relay}", stack=sorted(stack))

    def centrifugo(self, work: Workload) -> RunFigures:
        server = self.server
        write_tokens(
            self.tokens,
            [server.token(uuid.uuid4().hex) for _ in range(work.members)],
            [server.token(uuid.uuid4().hex) for _ in range(work.publishers)],
        )
        argv = self._argv(
            "centrifugo", f"{NAMESPACE}:{uuid.uuid4().hex}", work,
            "-url", server.ws_url, "-centrifugo-publish", self.publish_via,
            "-api-url", server.api_url, "-api-key", server.api_key,
        )  # fmt: skip
        pids = {**stack_pids(self.cfg), "centrifugo": server.pid}
        driven = drive(argv, pids, self.workdir)
        if driven.result.get("recoverable_subscriptions") != work.members:
            raise RuntimeError(f"centrifugo subscriptions without recovery: {driven.result}")
        return figures(driven, server="centrifugo", stack=["centrifugo"])


def port_range(text: str) -> range:
    low, _, high = text.partition("-")
    return range(int(low), int(high or low) + 1)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--members", type=int, default=1000, help="receivers in the room")
    parser.add_argument(
        "--rate",
        type=float,
        nargs="+",
        default=[10.0, 30.0, 60.0],
        help="msg/s (several: one table each)",
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--warmup",
        type=float,
        default=5.0,
        help="seconds of one unmeasured run of each side at each rate first (a freshly started "
        "stack's JVM and database caches are cold: its first run was several times slower)",
    )
    parser.add_argument(
        "--relay",
        type=int,
        default=1,
        help="which of CHATSTACK_RELAY_PORTS holds the receivers (1-based)",
    )
    parser.add_argument(
        "--publish-relay",
        type=int,
        default=0,
        help="which relay the publishers use (default: the same one, so that relay takes the "
        "messages in and fans them out, as Centrifugo's one process does)",
    )
    parser.add_argument("--centrifugo-publish", choices=["client", "api"], default="client")
    parser.add_argument("--centrifugo-ports", type=port_range, default=port_range("8200-8299"))
    parser.add_argument(
        "--loadgen-procs",
        type=int,
        default=1,
        help="GOMAXPROCS of the load generator (one thread measured cheaper here at no cost in "
        "latency up to 60k deliveries/s; 0: every core)",
    )
    parser.add_argument(
        "--connect-parallel",
        type=int,
        default=50,
        help="receivers' handshakes in flight while connecting (--members: a connection storm, "
        "every socket opened at once; its connect-to-hello latencies are in the table)",
    )
    parser.add_argument(
        "--json-out", type=Path, help="append every run's figures here (JSON lines)"
    )
    return parser.parse_args(argv)


def publishers_for(rate: float, per_socket_limit: float) -> int:
    """Publisher sockets so that none sends more than two thirds of the relay's per-socket limit."""
    return max(1, math.ceil(rate / (per_socket_limit * 2 / 3)))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = StackConfig.from_env()
    relay_name = f"relay-{args.relay}"
    if relay_name not in stack_pids(cfg):
        print(f"no {relay_name} runs under {cfg.home}: `make stack-up` first", file=sys.stderr)
        return 2
    centrifugo_bin, loadgen = binaries()
    per_socket = stack_settings().ws_rate_per_s
    results: dict[float, dict[str, list[RunFigures]]] = {}
    floors: dict[float, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        workdir = Path(tmp)
        with CentrifugoServer(centrifugo_bin, workdir, args.centrifugo_ports) as server:
            bench = Bench(
                loadgen,
                cfg,
                server,
                workdir,
                relay=args.relay,
                publish_relay=args.publish_relay or args.relay,
                publish_via=args.centrifugo_publish,
                loadgen_procs=args.loadgen_procs,
                connect_parallel=args.connect_parallel,
            )
            relay_pid = stack_pids(cfg)[relay_name]
            print(
                f"{relay_name}: pid {relay_pid}; centrifugo: pid {server.pid}, port {server.port}"
            )
            for rate in args.rate:
                work = Workload(args.members, rate, args.seconds, publishers_for(rate, per_socket))
                sides = results.setdefault(rate, {"chatstack": [], "centrifugo": []})
                if args.warmup > 0:
                    warm = replace(work, seconds=args.warmup)
                    for target, once in (
                        ("chatstack", bench.ours),
                        ("centrifugo", bench.centrifugo),
                    ):
                        fig = once(warm)
                        print(
                            f"warm-up {target}: p99 {fig.p99_ms:.1f} ms (not counted)", flush=True
                        )
                # Interleaved, so a change in the machine's other load touches both sides alike.
                for run in range(1, args.runs + 1):
                    for target, once in (
                        ("chatstack", bench.ours),
                        ("centrifugo", bench.centrifugo),
                    ):
                        fig = once(work)
                        sides[target].append(fig)
                        _progress(run, fig, args.json_out)
                    floor = send_floor(
                        sockets=work.members,
                        rate=sides["chatstack"][-1].deliveries_per_s,
                        seconds=min(work.seconds, 5.0),
                        payload_bytes=max(1, round(sides["chatstack"][-1].frame_bytes) - 4),
                    )
                    floors.setdefault(rate, []).append(floor["cpu_us_per_send"])
                    print(
                        f"run {run} floor: {floor['cpu_us_per_send']:.2f} µs per send", flush=True
                    )
    for rate, sides in results.items():
        rows = comparison_rows(sides["chatstack"], sides["centrifugo"])
        print(f"\n{render_table(rate, args.members, args.runs, rows)}\n")
        print(floor_line(sides["chatstack"], sides["centrifugo"], floors[rate]))
        print(render_components(sides["chatstack"]))
    return 0


def _progress(run: int, fig: RunFigures, json_out: Path | None) -> None:
    print(
        f"[{time.strftime('%H:%M:%S')}] run {run} {fig.target:10} {fig.rate:g} msg/s: "
        f"{fig.deliveries_per_s:,.0f} deliveries/s, undelivered {fig.undelivered:.0f}, "
        f"p50 {fig.p50_ms:.1f} ms, p99 {fig.p99_ms:.1f} ms, server CPU {fig.server_cpu_s:.2f} s, "
        f"stack {fig.stack_cpu_s:.2f} s, loadgen {fig.loadgen_cpu_s:.2f} s, "
        f"machine {fig.machine_cpu_s:.2f} s over {fig.measured_s:.1f} s",
        flush=True,
    )
    if json_out is not None:
        record = {f.name: getattr(fig, f.name) for f in fields(RunFigures)}
        record["components"] = dict(fig.components)
        with json_out.open("a") as out:
            out.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    sys.exit(main())
