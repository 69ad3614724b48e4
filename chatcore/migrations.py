"""One-time data migrations, each recorded by name in ``migrations`` once it has run to the end.

A start-up runs a migration unless its marker exists; a run cut short leaves no marker and is
simply done again, so every migration must be idempotent. Two instances starting at once may
both run it (both write the same values); the second marker insert is ignored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from chatcore import schema as s
from chatcore.logging import get_logger
from chatcore.mongo import Document, database_unavailable

_log = get_logger("chatcore.migrations")


async def run_once(
    db: AsyncDatabase[Document],
    name: str,
    migrate: Callable[[], Awaitable[int]],
    *,
    force: bool = False,
) -> int:
    """Run ``migrate`` (which returns how many documents it changed) unless ``name`` is marked
    done; 0 when skipped. ``Unavailable`` when the database fails; nothing is marked then."""
    markers = db[s.MIGRATIONS]
    try:
        if not force and await markers.find_one({s.ID: name}):
            return 0
    except PyMongoError as exc:
        raise database_unavailable(exc) from exc
    changed = await migrate()
    try:
        with contextlib.suppress(DuplicateKeyError):  # another instance finished it too
            await markers.insert_one({s.ID: name, "done_at": datetime.now(UTC)})
    except PyMongoError as exc:
        raise database_unavailable(exc) from exc
    if changed:
        _log.info("migration_done", migration=name, documents=changed)
    return changed
