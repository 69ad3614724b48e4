"""Persistence of attachment records (the ``attachments`` collection), behind a narrow interface.

The controller reads the same documents to answer ``CheckAttachment`` for the relays, so these
fields keep exactly their meaning::

    {_id: attachment id (32 hex), team_id, kind: "image"|"video"|"audio"|"file",
     status: "pending"|"ready"|"rejected", ...}

and the service adds: ``filename``, ``content_type``, ``size`` (declared bytes), ``key`` (the S3
object key), ``uploader`` (user id), ``created_at``, ``completed_at`` and ``reason`` (why rejected).

Status changes are conditional (``status: "pending"`` in the filter), so of two concurrent
completions only one decides, and the sweep never deletes a record that was just completed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pymongo import ASCENDING
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError, PyMongoError

from chatcore.errors import Conflict
from chatcore.messages import iso_datetime
from chatcore.mongo import Document, IndexSpec, database_unavailable

ATTACHMENTS = "attachments"
PENDING = "pending"
READY = "ready"
REJECTED = "rejected"

ATTACHMENT_INDEXES: tuple[IndexSpec, ...] = (
    # The sweep: pending records older than a cut-off.
    IndexSpec(ATTACHMENTS, (("status", ASCENDING), ("created_at", ASCENDING))),
)


@dataclass(frozen=True, slots=True)
class Attachment:
    id: str
    team_id: str
    kind: str
    status: str
    filename: str
    content_type: str
    size: int
    key: str
    uploader: str
    created_at: datetime
    reason: str = ""

    def public(self) -> dict[str, Any]:
        """The attachment object of the API (never the storage key)."""
        return {
            "id": self.id,
            "attachment_id": self.id,
            "team_id": self.team_id,
            "kind": self.kind,
            "status": self.status,
            "filename": self.filename,
            "content_type": self.content_type,
            "size": self.size,
            "uploader": self.uploader,
            "created_at": iso_datetime(self.created_at),
        }


def attachment_to_doc(item: Attachment) -> Document:
    return {
        "_id": item.id,
        "team_id": item.team_id,
        "kind": item.kind,
        "status": item.status,
        "filename": item.filename,
        "content_type": item.content_type,
        "size": item.size,
        "key": item.key,
        "uploader": item.uploader,
        "created_at": item.created_at,
        "reason": item.reason,
    }


def attachment_from_doc(doc: Mapping[str, Any]) -> Attachment:
    return Attachment(
        id=str(doc["_id"]),
        team_id=str(doc.get("team_id", "")),
        kind=str(doc.get("kind", "")),
        status=str(doc.get("status", "")),
        filename=str(doc.get("filename", "")),
        content_type=str(doc.get("content_type", "")),
        size=int(doc.get("size", 0)),
        key=str(doc.get("key", "")),
        uploader=str(doc.get("uploader", "")),
        created_at=doc["created_at"],
        reason=str(doc.get("reason", "")),
    )


class AttachmentStore(Protocol):
    async def insert(self, item: Attachment) -> None: ...

    async def get(self, attachment_id: str) -> Attachment | None: ...

    async def decide(
        self, attachment_id: str, status: str, *, at: datetime, reason: str = ""
    ) -> bool:
        """Move a pending record to ``status``; False if it was no longer pending."""

    async def stale_pending(self, before: datetime, *, limit: int) -> list[Attachment]:
        """Pending records created before ``before``, oldest first."""

    async def delete_pending(self, attachment_id: str) -> bool:
        """Delete the record if it is still pending."""


class MongoAttachmentStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._items = db[ATTACHMENTS]

    async def insert(self, item: Attachment) -> None:
        try:
            await self._items.insert_one(attachment_to_doc(item))
        except DuplicateKeyError:
            raise Conflict("an attachment with this id exists") from None
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def get(self, attachment_id: str) -> Attachment | None:
        try:
            doc = await self._items.find_one({"_id": attachment_id})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return attachment_from_doc(doc) if doc is not None else None

    async def decide(
        self, attachment_id: str, status: str, *, at: datetime, reason: str = ""
    ) -> bool:
        try:
            result = await self._items.update_one(
                {"_id": attachment_id, "status": PENDING},
                {"$set": {"status": status, "completed_at": at, "reason": reason}},
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return result.modified_count == 1

    async def stale_pending(self, before: datetime, *, limit: int) -> list[Attachment]:
        try:
            cursor = (
                self._items.find({"status": PENDING, "created_at": {"$lt": before}})
                .sort("created_at", ASCENDING)
                .limit(limit)
            )
            return [attachment_from_doc(doc) async for doc in cursor]
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def delete_pending(self, attachment_id: str) -> bool:
        try:
            result = await self._items.delete_one({"_id": attachment_id, "status": PENDING})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return result.deleted_count == 1
