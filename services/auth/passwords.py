"""argon2id password hashing. Hashing is CPU-bound, so callers run it in a worker thread."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from chatcore.settings import Settings


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
