"""The local stack's restart policy: backoff, streaks and crash loops, on a fake clock."""

from __future__ import annotations

from deploy.local.supervision import RestartPolicy, RestartRecord, Verdict, exited, started

POLICY = RestartPolicy(max_restarts=5, stable_after_s=60.0, first_delay_s=0.5, max_delay_s=10.0)


def _crash_after(
    record: RestartRecord, now: float, ran_for: float
) -> tuple[RestartRecord, Verdict, float]:
    """A run that starts at ``now`` and exits ``ran_for`` seconds later."""
    record = started(record, now)
    record, verdict = exited(POLICY, record, now + ran_for)
    return record, verdict, now + ran_for + verdict.delay_s


def test_backoff_doubles_from_half_a_second_and_is_capped() -> None:
    """Delays before restarts 1, 2, 3... of a streak: 0.5, 1, 2, 4, 8 s, then the 10 s cap."""
    assert [POLICY.delay(n) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_five_quick_restarts_then_a_crash_loop_stops() -> None:
    """Five exits within a minute are restarted with growing delays; the sixth is a crash loop."""
    record, now = RestartRecord(), 0.0
    delays = []
    for _ in range(5):
        record, verdict, now = _crash_after(record, now, ran_for=1.0)
        assert verdict.restart
        delays.append(verdict.delay_s)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert record.restarts == 5
    assert now < 60
    record, verdict, _now = _crash_after(record, now, ran_for=1.0)
    assert not verdict.restart
    assert verdict.streak == 6
    assert record.restarts == 5  # the refused restart is not counted


def test_a_run_that_lasted_a_minute_ends_the_streak() -> None:
    """After a run of 60 s or more the next exit starts again at the first delay."""
    record, now = RestartRecord(), 0.0
    for _ in range(4):
        record, _verdict, now = _crash_after(record, now, ran_for=1.0)
    assert record.streak == 4
    record, verdict, now = _crash_after(record, now, ran_for=60.0)
    assert verdict == Verdict(restart=True, delay_s=0.5, streak=1)
    assert record.restarts == 5
    # Stable runs in between: a component may exit any number of times without a crash loop.
    for _ in range(20):
        record, verdict, now = _crash_after(record, now, ran_for=300.0)
        assert verdict.restart
    assert record.restarts == 25


def test_a_slow_crash_loop_is_still_a_crash_loop() -> None:
    """Exits 40 s apart (never 5 within 60 s) still stop the stack: no run reached 60 s."""
    record, now = RestartRecord(), 0.0
    verdicts = []
    for _ in range(6):
        record, verdict, now = _crash_after(record, now, ran_for=40.0)
        verdicts.append(verdict.restart)
    assert verdicts == [True] * 5 + [False]


def test_a_failed_start_counts_as_an_exit() -> None:
    """An exit with no recorded start (the restart itself failed) extends the streak."""
    record, verdict = exited(POLICY, RestartRecord(streak=2, restarts=2), 100.0)
    assert verdict == Verdict(restart=True, delay_s=2.0, streak=3)
    assert record.restarts == 3
