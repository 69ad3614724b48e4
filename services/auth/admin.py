"""Operator actions on accounts: disable and enable, independent of any transport.

Disabling is three steps, each idempotent, in the order that closes access fastest and loses
nothing when a later step fails: the ``disabled`` flag (every service's token verifier reads it,
so REST access ends with the next request), the revocation of every refresh token (no new access
tokens), then the ``user_disabled`` event that makes relays close the user's sockets. If the event
is never acknowledged the first two steps stand, and running the command again republishes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from chatcore.errors import NotFound
from chatcore.logging import get_logger
from services.auth.store import RefreshStore, User, UserStore

_log = get_logger("auth.admin")


class UserEvents(Protocol):
    async def user_disabled(self, user_id: str, *, actor: str) -> None:
        """Announce that the account is disabled; return once the broker acknowledged it.

        Raises ``Unavailable`` when that did not happen in time.
        """


@dataclass(frozen=True, slots=True)
class AccountChange:
    """What a disable or enable did."""

    user: User
    was_disabled: bool
    revoked_refresh_tokens: int = 0


class AccountAdmin:
    def __init__(
        self, *, users: UserStore, refresh_tokens: RefreshStore, events: UserEvents
    ) -> None:
        self._users = users
        self._refresh = refresh_tokens
        self._events = events

    async def _user(self, email: str) -> User:
        user = await self._users.by_email(email)
        if user is None:
            raise NotFound(f"no account with email {email}")
        return user

    async def disable(self, email: str, *, actor: str) -> AccountChange:
        """Disable the account, revoke its sessions, then tell the relays (see module doc)."""
        user = await self._user(email)
        await self._users.set_disabled(user.id, True)
        revoked = await self._refresh.revoke_user(user.id)
        _log.info("user_disabled", user_id=user.id, actor=actor, revoked=revoked)
        await self._events.user_disabled(user.id, actor=actor)
        return AccountChange(user, was_disabled=user.disabled, revoked_refresh_tokens=revoked)

    async def enable(self, email: str, *, actor: str) -> AccountChange:
        """Let the account log in again; its old sessions stay revoked."""
        user = await self._user(email)
        await self._users.set_disabled(user.id, False)
        _log.info("user_enabled", user_id=user.id, actor=actor)
        return AccountChange(user, was_disabled=user.disabled)
