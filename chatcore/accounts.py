"""Whether an access token may still be used: what makes disabling and logging out immediate.

Access tokens are verified locally and live up to ``CHAT_ACCESS_TOKEN_TTL_S``; without this check
a disabled user, or a login that was logged out (its token stolen, say), keeps REST access until
expiry. Services that have the database at hand (auth, management) pass a ``MongoAccountStatus``
to ``chatcore.tokens.JwtVerifier``; the relay never touches the database and learns of disabled
users and ended logins from the controller's ``user_disabled`` and ``session_ended`` events.

The disabled flag is read by ``_id`` on every request, uncached (the cost measured on the local
FerretDB is in docs/decisions.md), so it is seen by the very next request. An ended login is a
document of its own, also read by ``_id``, and its answer is shared for a second by the requests
of that login: a client's requests come in bursts, and a second lookup per request would cost each
of them a third more (bench/token_check.py). A logout therefore refuses the login's tokens within
a second.
"""

from __future__ import annotations

from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore.mongo import Document, database_unavailable
from chatcore.schema import ENDED_SESSIONS, ID_RE, USERS
from chatcore.single_flight import SingleFlight


class AccountStatus(Protocol):
    async def is_disabled(self, user_id: str) -> bool:
        """True when the account is disabled or does not exist (fail closed).

        Raises ``Unavailable`` when the answer cannot be known.
        """

    async def session_ended(self, session_id: str) -> bool:
        """True when the login was ended (logged out, or its refresh token replayed).

        Raises ``Unavailable`` when the answer cannot be known.
        """


class MongoAccountStatus:
    """Reads the ``disabled`` flag of a user document, and the ended login, by ``_id``."""

    def __init__(self, db: AsyncDatabase[Document], *, session_max_age_s: float = 1.0) -> None:
        self._users = db[USERS]
        self._ended = db[ENDED_SESSIONS]
        self._sessions = SingleFlight(self._session_ended, max_age_s=session_max_age_s)

    async def is_disabled(self, user_id: str) -> bool:
        # Anything but a stored id's form cannot name a user and never reaches a query.
        if not isinstance(user_id, str) or not ID_RE.fullmatch(user_id):
            return True
        try:
            doc = await self._users.find_one({"_id": user_id}, {"_id": 0, "disabled": 1})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return doc is None or bool(doc.get("disabled", False))

    async def session_ended(self, session_id: str) -> bool:
        if not isinstance(session_id, str) or not ID_RE.fullmatch(session_id):
            return True
        return await self._sessions.get(session_id)

    async def _session_ended(self, session_id: str) -> bool:
        try:
            doc = await self._ended.find_one({"_id": session_id}, {"_id": 1})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return doc is not None
