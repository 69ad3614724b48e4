"""Fenced, versioned writes: how a protected update carries its lease and stays a compare-and-set.

Every update of a guarded document (``GUARDED_COLLECTIONS``) increments its ``rev``, and an update
made under a lease also carries the lease's epoch: its filter matches only while the stored
``fence`` is not newer (``$not: {$gt: epoch}``, which also matches a document never fenced), and it
sets ``fence`` to the epoch. On MongoDB the filter and the write are one atomic step. FerretDB 1.24
evaluates the filter on a read and writes the whole document afterwards, keyed by ``_id``; the
local stack's PostgreSQL therefore holds a row trigger on these collections' tables
(``deploy/local/pg_indexes.py``) that refuses a write whose ``rev`` is not the stored one plus one
(it was computed from a stale read) or whose ``fence`` would go backwards (a paused holder), so
the same filter is a compare-and-set there too. FerretDB reports the refusal as an
``InternalError`` naming ``GUARD_MARK``; ``lost_race`` recognises it, and the caller treats it as
the filter matching nothing, exactly as on MongoDB.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pymongo.errors import OperationFailure, PyMongoError

from chatcore import schema as s

FENCE = "fence"
REV = "rev"
# Collections whose every update goes through ``guarded``; the stack's trigger covers exactly these.
GUARDED_COLLECTIONS: tuple[str, ...] = (s.TEAMS, s.ATTACHMENTS, s.REFRESH_TOKENS)
# The text the PostgreSQL trigger raises; FerretDB passes it on in the error message.
GUARD_MARK = "chatstack_guard"

Document = dict[str, Any]


def fenced(query: Mapping[str, Any], epoch: int) -> Document:
    """``query`` that also requires the stored fence to be no newer than ``epoch``."""
    return {**query, FENCE: {"$not": {"$gt": epoch}}}


def guarded(update: Mapping[str, Mapping[str, Any]], epoch: int | None = None) -> Document:
    """``update`` plus the ``rev`` increment (and, under a lease, the new fence)."""
    merged: Document = {op: dict(fields) for op, fields in update.items()}
    merged.setdefault("$inc", {})[REV] = 1
    if epoch is not None:
        merged.setdefault("$set", {})[FENCE] = epoch
    return merged


def lost_race(exc: PyMongoError) -> bool:
    """The stack's guard refused a write computed from a stale read (or by a fenced-off holder)."""
    return isinstance(exc, OperationFailure) and GUARD_MARK in str(exc)
