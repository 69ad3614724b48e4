"""When to restart a component that exited, and when to give up: pure policy, no I/O.

A component that exits is restarted after a delay that doubles with each exit in a row
(0.5 s, 1 s, 2 s, ...), capped. A run that lasted ``stable_after_s`` ends the streak: the next
exit starts again at the first delay. More than ``max_restarts`` exits in a row, each after a
run shorter than ``stable_after_s``, is a crash loop: the supervisor stops the stack instead of
restarting. That covers "5 restarts in 60 s" and also a component that keeps dying slowly during
a long start. Times are plain floats from whatever clock the caller uses (a fake one in tests).
"""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How eagerly to restart: the backoff sequence and the crash-loop limit."""

    max_restarts: int = 5
    stable_after_s: float = 60.0
    first_delay_s: float = 0.5
    factor: float = 2.0
    max_delay_s: float = 10.0

    def delay(self, streak: int) -> float:
        """The wait before restart number ``streak`` of a streak (1 for the first)."""
        return min(self.max_delay_s, self.first_delay_s * self.factor ** max(0, streak - 1))


@dataclass(frozen=True, slots=True)
class RestartRecord:
    """What the supervisor remembers about one component."""

    restarts: int = 0  # every restart since the supervisor started
    streak: int = 0  # exits in a row after short runs
    started_at: float | None = None  # when the current run began


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do about an exit: restart after ``delay_s``, or stop the stack."""

    restart: bool
    delay_s: float
    streak: int


def started(record: RestartRecord, now: float) -> RestartRecord:
    """The record once a run of the component has begun at ``now``."""
    return replace(record, started_at=now)


def exited(
    policy: RestartPolicy, record: RestartRecord, now: float
) -> tuple[RestartRecord, Verdict]:
    """The record and the verdict after the component's run ended at ``now``.

    A failed start (the process died or never got ready) is an exit like any other.
    """
    ran_for = now - record.started_at if record.started_at is not None else 0.0
    streak = 1 if ran_for >= policy.stable_after_s else record.streak + 1
    if streak > policy.max_restarts:
        return replace(record, streak=streak, started_at=None), Verdict(False, 0.0, streak)
    updated = RestartRecord(restarts=record.restarts + 1, streak=streak, started_at=None)
    return updated, Verdict(True, policy.delay(streak), streak)
