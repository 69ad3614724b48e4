"""Seams at the points where the controller's ordering guarantees live, for tests.

Production passes no hooks. Tests use them to hold a subscription change back (so a relay must
wait for its confirmation), or to hold stream writes and stop the process right after a commit,
so that a committed batch's deliveries never reach any relay (the window a resync must cover).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ControllerHooks:
    # Awaited before each subscription request of a relay stream is applied.
    before_subscription_change: Callable[[], Awaitable[None]] | None = None
    # Called right after offsets are committed.
    after_commit: Callable[[], None] | None = None
    # Awaited before each batch is written to a relay stream.
    before_stream_write: Callable[[], Awaitable[None]] | None = None
