"""The comparison driver's arithmetic: CPU from /proc lines, medians over runs, the table."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.around import per_message
from bench.centrifugo_server import config, hs256_token
from bench.compare import (
    Driven,
    RunFigures,
    comparison_rows,
    figures,
    floor_line,
    median_figures,
    publishers_for,
    render_table,
)
from bench.pipeline import metric_samples
from bench.proc_cpu import (
    CLK_TCK,
    ProcStat,
    cpu_seconds,
    machine_busy_ticks,
    parse_stat,
    tree_ticks,
)

REPO = Path(__file__).resolve().parents[2]


def _stat_line(pid: int, comm: str, ppid: int, utime: int, stime: int) -> str:
    # Fields 3.. of proc(5): state, ppid, pgrp, session, tty, tpgid, flags, minflt, cminflt,
    # majflt, cmajflt, utime, stime, cutime, cstime, then the rest.
    rest = f"S {ppid} {pid} {pid} 0 -1 4194304 102 0 0 0 {utime} {stime} 7 9 20 0 1 0 1675245"
    return f"{pid} ({comm}) {rest}"


def test_parse_stat_reads_user_plus_system_ticks() -> None:
    """utime + stime and the parent come from the right fields; children's time is not counted."""
    assert parse_stat(_stat_line(4242, "python", 1, 150, 30)) == ProcStat(4242, 1, 180)


def test_parse_stat_survives_a_name_with_spaces_and_parentheses() -> None:
    """A process named like ``(a) b)`` does not shift the fields."""
    line = _stat_line(77, "web (worker) 1)", 12, 5, 6)
    assert parse_stat(line) == ProcStat(77, 12, 11)


def test_parse_stat_refuses_what_is_not_a_stat_line() -> None:
    """A truncated or foreign line is an error, not a wrong figure."""
    with pytest.raises(ValueError, match="stat"):
        parse_stat("hello world")


def test_tree_ticks_sums_a_process_and_its_descendants_only() -> None:
    """PostgreSQL's backends count towards it; an unrelated process and the parent do not."""
    stats = [
        ProcStat(1, 0, 1000),  # init
        ProcStat(10, 1, 5),  # postmaster
        ProcStat(11, 10, 20),  # backend
        ProcStat(12, 10, 30),  # backend
        ProcStat(13, 12, 1),  # grandchild
        ProcStat(20, 1, 400),  # someone else
    ]
    assert tree_ticks(stats, 10) == 56
    assert tree_ticks(stats, 20) == 400
    assert tree_ticks(stats, 99) == 0


def test_machine_busy_ticks_leaves_out_idle_and_iowait() -> None:
    """user + nice + system + irq + softirq + steal; guest is already inside user."""
    line = "cpu  100 2 30 9000 50 4 6 1 80 0"
    assert machine_busy_ticks(line) == 100 + 2 + 30 + 4 + 6 + 1


def test_cpu_seconds_is_the_difference_in_clock_ticks() -> None:
    """Seconds are tick differences over the kernel's clock rate, per named process."""
    before = {"relay-1": 100, "machine": 1000}
    after = {"relay-1": 100 + CLK_TCK * 2, "machine": 1000 + CLK_TCK * 5}
    assert cpu_seconds(before, after) == {"relay-1": 2.0, "machine": 5.0}


def _result(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "target": "chatstack",
        "rate": 30.0,
        "sent": 300,
        "expected": 300_000,
        "delivered": 300_000,
        "undelivered": 0,
        "deliveries_per_s": 29_000,
        "p50_ms": 40.0,
        "p99_ms": 90.0,
        "max_ms": 120.0,
        "loadgen_cpu_s": 1.0,
        "measured_s": 10.0,
        "frame_bytes_mean": 190.0,
    }
    return base | over


def test_figures_split_server_stack_and_someone_elses_cpu() -> None:
    """Server CPU is the relay under test, stack CPU every component, and the rest of the
    machine's busy time beyond both servers and the load generator is 'other'."""
    cpu = {"relay-1": 6.0, "controller": 2.0, "kafka": 1.0, "centrifugo": 0.5, "machine": 12.0}
    connect = {"relay-1": 3.0, "controller": 1.5, "kafka": 0.1, "centrifugo": 0.0, "machine": 5.0}
    fig = figures(
        Driven(_result(), cpu, connect), server="relay-1", stack=["controller", "kafka", "relay-1"]
    )
    assert fig.server_cpu_s == 6.0
    assert fig.stack_cpu_s == 9.0
    assert fig.other_cpu_s == pytest.approx(12.0 - 9.5 - 1.0)
    assert fig.per_server_cpu_s == 50_000
    assert fig.loadgen_cores == pytest.approx(0.1)
    assert dict(fig.components) == {"controller": 2.0, "kafka": 1.0, "relay-1": 6.0}
    assert dict(fig.connect_components) == {"controller": 1.5, "kafka": 0.1, "relay-1": 3.0}


def _run(target: str, delivered: float, server_cpu: float, p99: float) -> RunFigures:
    cpu = {"relay-1": server_cpu, "centrifugo": server_cpu, "machine": server_cpu + 2}
    server = "relay-1" if target == "chatstack" else "centrifugo"
    result = _result(target=target, delivered=delivered, p99_ms=p99)
    return figures(Driven(result, cpu, cpu), server=server, stack=[server])


def test_median_figures_takes_each_figures_median_over_runs() -> None:
    """With three runs each figure is its middle value, an outlier run moves none of them."""
    runs = [_run("chatstack", 300_000, 6.0, 90), _run("chatstack", 290_000, 60.0, 5000)]
    runs.append(_run("chatstack", 299_000, 7.0, 80))
    med = median_figures(runs)
    assert (med.delivered, med.server_cpu_s, med.p99_ms) == (299_000, 7.0, 90)
    assert med.target == "chatstack"
    assert dict(med.components) == {"relay-1": 7.0}


def test_median_figures_needs_a_run() -> None:
    """No runs is an error rather than a table of zeros."""
    with pytest.raises(ValueError, match="no runs"):
        median_figures([])


def test_comparison_rows_give_ours_over_centrifugo() -> None:
    """The ratio column is ours / theirs, and deliveries per CPU-second is the median of each
    run's own ratio (not a ratio of medians)."""
    ours = [_run("chatstack", 300_000, 10.0, 100), _run("chatstack", 300_000, 6.0, 120)]
    ours.append(_run("chatstack", 150_000, 10.0, 110))
    theirs = [_run("centrifugo", 300_000, 5.0, 50)] * 3
    rows = {row.label: row for row in comparison_rows(ours, theirs)}
    per_cpu = rows["deliveries per server CPU-s"]
    # Per run: 30,000, 50,000 and 15,000 deliveries per CPU-second: the median is 30,000.
    assert per_cpu.ours == 30_000
    assert per_cpu.theirs == 60_000
    assert per_cpu.ratio == 0.5
    assert rows["p99 latency, ms"].ratio == pytest.approx(110 / 50)
    assert rows["undelivered"].ratio is None


def test_floor_line_compares_each_run_with_its_own_floor() -> None:
    """CPU per delivery is set against the bare send measured after the same run, run by run."""
    ours = [_run("chatstack", 300_000, 3.0, 90), _run("chatstack", 300_000, 6.0, 90)]
    ours.append(_run("chatstack", 300_000, 3.3, 90))
    theirs = [_run("centrifugo", 300_000, 6.0, 50)] * 3
    # Ours: 10, 20 and 11 µs per delivery against floors of 10, 10 and 11: 1.0, 2.0 and 1.0.
    line = floor_line(ours, theirs, [10.0, 10.0, 11.0])
    assert "chatstack 11.00 µs = 1.00x" in line
    assert "(10.00 µs" in line
    assert "centrifugo 20.00 µs = 2.00x" in line


def test_render_table_is_markdown_with_a_dash_for_no_ratio() -> None:
    """The table prints one line per figure; a ratio over zero shows as a dash."""
    ours = [_run("chatstack", 300_000, 10.0, 100)]
    theirs = [_run("centrifugo", 300_000, 5.0, 50)]
    table = render_table(30, 1000, 1, comparison_rows(ours, theirs))
    lines = table.splitlines()
    assert lines[0] == "### 30 msg/s into a 1,000-member room (median of 1 runs)"
    assert "| deliveries per server CPU-s | 30,000 | 60,000 | 0.50 |" in lines
    assert "| undelivered | 0 | 0 | - |" in lines


def test_publishers_stay_under_the_relays_per_socket_limit() -> None:
    """At 60 msg/s and 15 per socket allowed, six sockets send 10 each."""
    assert publishers_for(60, 15) == 6
    assert publishers_for(10, 15) == 1
    assert publishers_for(0.5, 15) == 1


def test_centrifugo_keeps_history_with_recovery_forced() -> None:
    """The reference runs the memory engine with history and forced recovery on its namespace."""
    cfg = config(11200, "secret", "key")
    namespace = cfg["channel"]["namespaces"][0]
    assert cfg["engine"] == {"type": "memory"}
    assert namespace["force_recovery"] is True
    assert namespace["history_size"] > 0
    assert cfg["usage_stats"] == {"disabled": True}


def test_hs256_token_matches_a_known_signature() -> None:
    """The connection token is a standard HS256 JWT (signature computed with openssl)."""
    token = hs256_token("secret", {"sub": "u1"})
    assert token == (
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSJ9."
        "e1nQDHRa3tJWY02MUXI8-wDl0Q6cpqw0JpzJLvJOUZk"
    )


@pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed")
def test_loadgen_go_tests_pass() -> None:
    """The load generator's own tests (latency percentiles, marker scanning) pass."""
    out = subprocess.run(
        ["go", "test", "./..."],
        cwd=REPO / "bench" / "loadgen",
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_around_divides_cpu_by_what_the_command_sent_or_stored() -> None:
    """bench.around: ours is the relays and the controller; the stack is every component."""
    cpu = {"relay-1": 0.5, "relay-2": 1.5, "controller": 1.0, "ferretdb": 2.0}
    assert per_message({"sent": 10_000}, cpu) == {
        "ours_cpu_ms_per_msg": 0.3,
        "stack_cpu_ms_per_msg": 0.5,
    }
    assert per_message({"stored": 1000}, {"controller": 1.0}) == {
        "ours_cpu_ms_per_msg": 1.0,
        "stack_cpu_ms_per_msg": 1.0,
    }
    assert per_message({"bench": "idle"}, cpu) == {}
    assert per_message({"sent": 0}, cpu) == {}


def test_metric_samples_are_read_across_labels_and_not_from_look_alike_names() -> None:
    """The takeover benchmark sums a metric's samples over every label set, and a metric whose
    name merely starts the same (``_sum`` of a histogram, ``_created``) is not counted in."""
    page = "\n".join(
        [
            "# HELP controller_consumer_lag Records not yet committed",
            'controller_consumer_lag{partition="0",topic="t"} 3.0',
            'controller_consumer_lag{partition="1",topic="t"} 4.0',
            'controller_consumer_lag_created{partition="0"} 1.7e9',
            'controller_messages_total{outcome="redelivered"} 96000.0',
            "controller_persist_seconds_sum 11.5",
            "controller_persist_seconds_count 50.0",
        ]
    )
    assert metric_samples(page, "controller_consumer_lag") == [3.0, 4.0]
    assert metric_samples(page, 'controller_messages_total{outcome="redelivered"}') == [96000.0]
    assert metric_samples(page, "controller_persist_seconds_sum") == [11.5]
    assert metric_samples(page, "controller_persist_seconds") == []
