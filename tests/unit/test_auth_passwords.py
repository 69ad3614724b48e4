"""Password checks in bounded worker threads: a flood is refused, never queued without end."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator

import pytest

from chatcore.errors import Busy
from chatcore.gate import Gate
from services.auth.passwords import PasswordHasher, Passwords


class _HeldHasher(PasswordHasher):
    """A real (cheap) hasher whose checks block until the test lets them go."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_kib=64, parallelism=1)
        self.go = threading.Event()
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def verify(self, stored_hash: str | None, password: str) -> bool:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            self.go.wait(10)
            return super().verify(stored_hash, password)
        finally:
            with self._lock:
                self.running -= 1


@pytest.fixture
def held() -> Iterator[_HeldHasher]:
    hasher = _HeldHasher()
    yield hasher
    hasher.go.set()


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_checks_past_the_workers_wait_then_are_refused_with_a_retry_hint(
    held: _HeldHasher,
) -> None:
    """With both workers busy, a third check waits its time and gets Busy (retry in 1 s, a
    message for the client); the running ones still answer, and a check after them runs."""
    refused: list[None] = []
    passwords = Passwords(held, workers=2, wait_s=0.05, on_busy=lambda: refused.append(None))
    stored = held.hash("right password")
    try:
        first = asyncio.create_task(passwords.verify(stored, "right password"))
        second = asyncio.create_task(passwords.verify(stored, "wrong password"))
        await _until(lambda: held.running == 2)
        with pytest.raises(Busy) as busy:
            await passwords.verify(stored, "right password")
        assert busy.value.retry_after == 1
        assert busy.value.public_message == (
            "the server is busy checking passwords; retry in a moment"
        )
        assert refused == [None]
        held.go.set()
        assert await first is True
        assert await second is False
        assert await passwords.verify(stored, "right password") is True
        assert held.most_at_once == 2
    finally:
        passwords.close()


async def test_a_waiting_check_runs_once_a_worker_frees_within_its_wait(
    held: _HeldHasher,
) -> None:
    """A check that arrives while the only worker is busy runs when it frees, in its turn."""
    passwords = Passwords(held, workers=1, wait_s=30)
    stored = held.hash("pw")
    try:
        first = asyncio.create_task(passwords.verify(stored, "pw"))
        await _until(lambda: held.running == 1)
        second = asyncio.create_task(passwords.verify(stored, "nope"))
        await asyncio.sleep(0.05)
        assert not second.done()
        held.go.set()
        assert (await first, await second) == (True, False)
        assert held.most_at_once == 1
    finally:
        passwords.close()


async def test_a_cancelled_request_keeps_its_worker_until_the_thread_finishes(
    held: _HeldHasher,
) -> None:
    """Cancelling a request mid-check cannot stop its thread, so no other check starts beside
    it: the next one waits and is refused, and runs once the thread is done."""
    passwords = Passwords(held, workers=1, wait_s=0.05)
    stored = held.hash("pw")
    try:
        first = asyncio.create_task(passwords.verify(stored, "pw"))
        await _until(lambda: held.running == 1)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(Busy):
            await passwords.verify(stored, "pw")
        held.go.set()
        await _until(lambda: held.running == 0)
        assert await passwords.verify(stored, "pw") is True
        assert held.most_at_once == 1
    finally:
        passwords.close()


async def test_hashes_made_in_the_workers_verify() -> None:
    """hash and verify go through the workers and agree; parameters decide needs_rehash."""
    hasher = PasswordHasher(time_cost=1, memory_kib=64, parallelism=1)
    passwords = Passwords(hasher, workers=1, wait_s=1)
    try:
        stored = await passwords.hash("correct horse")
        assert await passwords.verify(stored, "correct horse")
        assert not await passwords.verify(stored, "incorrect horse")
        assert not await passwords.verify(None, "correct horse")
        assert not passwords.needs_rehash(stored)
        assert PasswordHasher(time_cost=2, memory_kib=64, parallelism=1).needs_rehash(stored)
    finally:
        passwords.close()


async def test_a_gate_without_wait_refuses_at_once_and_serves_again_when_freed() -> None:
    """Gate: the slot's holder blocks the next at once (wait 0); released, it serves again."""
    gate = Gate(limit=1, wait_s=0, refusal="full")
    async with gate.hold():
        with pytest.raises(Busy, match="full"):
            await gate.acquire()
    async with gate.hold():
        pass
