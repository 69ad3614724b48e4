"""Whether an account may still use its access tokens: the check that makes disabling immediate.

Access tokens are verified locally and live up to ``CHAT_ACCESS_TOKEN_TTL_S``; without this check
a disabled user keeps REST access until expiry. Services that have the database at hand (auth,
management) pass a ``MongoAccountStatus`` to ``chatcore.tokens.JwtVerifier``; the relay never
touches the database and learns of disabled users from the controller's ``user_disabled`` event.

The read is one primary-key lookup with a one-field projection, uncached (the cost measured on the
local FerretDB is in docs/decisions.md), so a disabled flag is seen by the very next request.
"""

from __future__ import annotations

from typing import Protocol

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import PyMongoError

from chatcore.mongo import Document, database_unavailable
from chatcore.schema import ID_RE, USERS


class AccountStatus(Protocol):
    async def is_disabled(self, user_id: str) -> bool:
        """True when the account is disabled or does not exist (fail closed).

        Raises ``Unavailable`` when the answer cannot be known.
        """


class MongoAccountStatus:
    """Reads the ``disabled`` flag of a user document by ``_id``."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._users = db[USERS]

    async def is_disabled(self, user_id: str) -> bool:
        # Anything but a stored id's form cannot name a user and never reaches a query.
        if not isinstance(user_id, str) or not ID_RE.fullmatch(user_id):
            return True
        try:
            doc = await self._users.find_one({"_id": user_id}, {"_id": 0, "disabled": 1})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return doc is None or bool(doc.get("disabled", False))
