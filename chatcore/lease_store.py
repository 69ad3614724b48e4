"""Leases in MongoDB or FerretDB: one document per (key, epoch), taken by an insert.

The ``_id`` is ``"<key>#<epoch>"``, so the database's unique ``_id`` index decides which of two
processes took an epoch; that is the one write FerretDB 1.24 applies atomically (its conditional
updates are a read and a separate write). No document is ever updated by anyone but its holder
(``released``), so no update here depends on a filter being atomic. Records expire in code: the
``expires_at`` field is compared, and ``sweep`` deletes old ones (no TTL index).
"""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from chatcore import schema as s
from chatcore.leases import LeaseRecord, Leases
from chatcore.mongo import Document, IndexSpec, database_unavailable

LEASE_INDEXES: tuple[IndexSpec, ...] = (
    # A key's records (a handful: older epochs are pruned by the next holder).
    IndexSpec(s.LEASES, ((s.LEASE_KEY, ASCENDING),)),
    # The sweep of records expired long ago.
    IndexSpec(s.LEASES, ((s.LEASE_EXPIRES_AT, ASCENDING),)),
)


def lease_id(key: str, epoch: int) -> str:
    return f"{key}#{epoch}"


def _record(doc: Document) -> LeaseRecord:
    return LeaseRecord(
        key=str(doc[s.LEASE_KEY]),
        epoch=int(doc[s.LEASE_EPOCH]),
        owner=str(doc.get(s.LEASE_OWNER, "")),
        expires_at=float(doc[s.LEASE_EXPIRES_AT]),
        released=doc.get(s.LEASE_RELEASED) is True,
    )


class MongoLeaseStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._leases = db[s.LEASES]

    async def latest(self, key: str) -> LeaseRecord | None:
        try:
            # Equality only (the filter FerretDB pushes down); the key has few records.
            docs: list[dict[str, Any]] = await self._leases.find({s.LEASE_KEY: key}).to_list()
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        records = [_record(doc) for doc in docs]
        return max(records, key=lambda r: r.epoch) if records else None

    async def insert(self, record: LeaseRecord) -> bool:
        try:
            await self._leases.insert_one(
                {
                    s.ID: lease_id(record.key, record.epoch),
                    s.LEASE_KEY: record.key,
                    s.LEASE_EPOCH: record.epoch,
                    s.LEASE_OWNER: record.owner,
                    s.LEASE_EXPIRES_AT: record.expires_at,
                    s.LEASE_RELEASED: record.released,
                }
            )
        except DuplicateKeyError:
            return False
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return True

    async def release(self, key: str, epoch: int) -> None:
        try:
            await self._leases.update_one(
                {s.ID: lease_id(key, epoch)}, {"$set": {s.LEASE_RELEASED: True}}
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def prune(self, key: str, below: int) -> None:
        try:
            await self._leases.delete_many({s.LEASE_KEY: key, s.LEASE_EPOCH: {"$lt": below}})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def sweep(self, before: float) -> int:
        try:
            result = await self._leases.delete_many({s.LEASE_EXPIRES_AT: {"$lt": before}})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return result.deleted_count


def database_leases(
    db: AsyncDatabase[Document], namespace: str, *, owner: str, ttl_s: float, wait_s: float
) -> Leases:
    """Leases shared by every process on this database (several instances of a service)."""
    return Leases(MongoLeaseStore(db), namespace=namespace, owner=owner, ttl_s=ttl_s, wait_s=wait_s)
