"""argon2id password hashing, and the bounded worker threads it runs in off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from chatcore.errors import Busy
from chatcore.gate import Gate
from chatcore.settings import Settings

_T = TypeVar("_T")


class PasswordHasher:
    """Hashes and verifies passwords with argon2id; parameters come from settings."""

    def __init__(self, *, time_cost: int, memory_kib: int, parallelism: int) -> None:
        self._argon = _Argon2(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Verifying a login for an unknown email against this hash costs the same time as a
        # real check, so response time does not reveal which emails have accounts.
        self._dummy = self._argon.hash(secrets.token_hex(16))

    @classmethod
    def from_settings(cls, settings: Settings) -> PasswordHasher:
        return cls(
            time_cost=settings.argon2_time_cost,
            memory_kib=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )

    def hash(self, password: str) -> str:
        return self._argon.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when the password matches; a missing or corrupt hash is a (slow) mismatch."""
        try:
            return self._argon.verify(stored_hash or self._dummy, password) and bool(stored_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        return self._argon.check_needs_rehash(stored_hash)


class Passwords:
    """Runs the hasher in ``workers`` threads of its own; a check that finds them all busy waits
    up to ``wait_s``, then is refused with ``Busy`` (503).

    A hash takes ~150 ms of two cores at the default parameters and 64 MiB while it runs. On the
    default executor a burst of logins (a flood from many addresses, or every client after an
    outage) queued without bound: at 100 logins at once the last answer came after 16 s, a real
    user's login after 13 s, and the service peaked at 456 MiB (``bench/login_flood.py``); the
    executor's other users (DNS lookups of the database and Kafka clients) waited behind the
    hashes.
    """

    def __init__(
        self,
        hasher: PasswordHasher,
        *,
        workers: int,
        wait_s: float,
        on_busy: Callable[[], None] = lambda: None,
    ) -> None:
        self._hasher = hasher
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._gate = Gate(
            limit=workers,
            wait_s=wait_s,
            refusal="the server is busy checking passwords; retry in a moment",
        )
        self._on_busy = on_busy

    @classmethod
    def from_settings(cls, settings: Settings, *, on_busy: Callable[[], None]) -> Passwords:
        return cls(
            PasswordHasher.from_settings(settings),
            workers=settings.argon2_workers,
            wait_s=settings.argon2_wait_s,
            on_busy=on_busy,
        )

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        return await self._run(self._hasher.verify, stored_hash, password)

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.needs_rehash(stored_hash)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _run(self, work: Callable[..., _T], *args: str | None) -> _T:
        try:
            await self._gate.acquire()
        except Busy:
            self._on_busy()
            raise
        loop = asyncio.get_running_loop()

        def free(_: Future[_T]) -> None:
            # The loop may be closed by the time a thread finishes at shutdown.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._gate.release)

        try:
            job = self._threads.submit(work, *args)
        except BaseException:
            self._gate.release()
            raise
        # The slot is freed when the thread is, not when the request is: a request cancelled
        # mid-hash cannot stop its thread, and must not let another hash start beside it.
        job.add_done_callback(free)
        return await asyncio.wrap_future(job)
