"""Persistence of attachment records (the ``attachments`` collection), behind a narrow interface.

The controller reads the same documents to answer ``CheckAttachment`` for the relays, so these
fields keep exactly their meaning (names and statuses in ``chatcore.schema``)::

    {_id: attachment id (32 hex), team_id, kind: "image"|"video"|"audio"|"file",
     status: "pending"|"ready"|"rejected", ...}

and the service adds: ``filename``, ``content_type``, ``size`` (declared bytes), ``key`` (the S3
object key the upload form names), ``stored_key`` (where the scanned bytes of a ready one live),
``uploader`` (user id), ``created_at``, ``completed_at`` and ``reason`` (why rejected).

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

from chatcore import schema as s
from chatcore.errors import Conflict
from chatcore.fencing import fenced, guarded, lost_race
from chatcore.messages import iso_datetime
from chatcore.mongo import Document, IndexSpec, database_unavailable

ATTACHMENT_INDEXES: tuple[IndexSpec, ...] = (
    # The sweep: pending records older than a cut-off.
    IndexSpec(
        s.ATTACHMENTS, ((s.ATTACHMENT_STATUS, ASCENDING), (s.ATTACHMENT_CREATED_AT, ASCENDING))
    ),
    # The daily quota: one user's recent attachments.
    IndexSpec(
        s.ATTACHMENTS, ((s.ATTACHMENT_UPLOADER, ASCENDING), (s.ATTACHMENT_CREATED_AT, ASCENDING))
    ),
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
    stored_key: str = ""

    @property
    def served_key(self) -> str:
        """Where its bytes are read from: the scanned copy (``key`` for ones made ready before
        copies existed)."""
        return self.stored_key or self.key

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
        s.ID: item.id,
        s.ATTACHMENT_TEAM_ID: item.team_id,
        s.ATTACHMENT_KIND: item.kind,
        s.ATTACHMENT_STATUS: item.status,
        s.ATTACHMENT_FILENAME: item.filename,
        s.ATTACHMENT_CONTENT_TYPE: item.content_type,
        s.ATTACHMENT_SIZE: item.size,
        s.ATTACHMENT_KEY: item.key,
        s.ATTACHMENT_UPLOADER: item.uploader,
        s.ATTACHMENT_CREATED_AT: item.created_at,
        s.ATTACHMENT_REASON: item.reason,
        s.ATTACHMENT_STORED_KEY: item.stored_key,
    }


def attachment_from_doc(doc: Mapping[str, Any]) -> Attachment:
    return Attachment(
        id=str(doc[s.ID]),
        team_id=str(doc.get(s.ATTACHMENT_TEAM_ID, "")),
        kind=str(doc.get(s.ATTACHMENT_KIND, "")),
        status=str(doc.get(s.ATTACHMENT_STATUS, "")),
        filename=str(doc.get(s.ATTACHMENT_FILENAME, "")),
        content_type=str(doc.get(s.ATTACHMENT_CONTENT_TYPE, "")),
        size=int(doc.get(s.ATTACHMENT_SIZE, 0)),
        key=str(doc.get(s.ATTACHMENT_KEY, "")),
        uploader=str(doc.get(s.ATTACHMENT_UPLOADER, "")),
        created_at=doc[s.ATTACHMENT_CREATED_AT],
        reason=str(doc.get(s.ATTACHMENT_REASON, "")),
        stored_key=str(doc.get(s.ATTACHMENT_STORED_KEY, "")),
    )


class AttachmentStore(Protocol):
    async def insert(self, item: Attachment) -> None: ...

    async def get(self, attachment_id: str) -> Attachment | None: ...

    async def decide(
        self,
        attachment_id: str,
        status: str,
        *,
        at: datetime,
        reason: str = "",
        stored_key: str = "",
        fence: int | None = None,
    ) -> bool:
        """Move a pending record to ``status``; False if it was no longer pending (or the
        caller's lease, whose epoch is ``fence``, was taken over)."""

    async def stale_pending(self, before: datetime, *, limit: int) -> list[Attachment]:
        """Pending records created before ``before``, oldest first."""

    async def held_by(self, uploader: str, *, since: datetime) -> list[tuple[datetime, int]]:
        """``(created_at, size)`` of the pending and ready attachments the user requested since
        then (what counts against the daily quota)."""

    async def delete_pending(self, attachment_id: str) -> bool:
        """Delete the record if it is still pending."""

    async def withdraw(self, attachment_id: str, *, fence: int | None = None) -> None:
        """Mark the record withdrawn, whatever its status (idempotent)."""


class MongoAttachmentStore:
    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._items = db[s.ATTACHMENTS]

    async def insert(self, item: Attachment) -> None:
        try:
            await self._items.insert_one(attachment_to_doc(item))
        except DuplicateKeyError:
            raise Conflict("an attachment with this id exists") from None
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def get(self, attachment_id: str) -> Attachment | None:
        try:
            doc = await self._items.find_one({s.ID: attachment_id})
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return attachment_from_doc(doc) if doc is not None else None

    async def decide(
        self,
        attachment_id: str,
        status: str,
        *,
        at: datetime,
        reason: str = "",
        stored_key: str = "",
        fence: int | None = None,
    ) -> bool:
        query: Document = {s.ID: attachment_id, s.ATTACHMENT_STATUS: s.PENDING}
        try:
            result = await self._items.update_one(
                fenced(query, fence) if fence is not None else query,
                guarded(
                    {
                        "$set": {
                            s.ATTACHMENT_STATUS: status,
                            s.ATTACHMENT_COMPLETED_AT: at,
                            s.ATTACHMENT_REASON: reason,
                            s.ATTACHMENT_STORED_KEY: stored_key,
                        }
                    },
                    fence,
                ),
            )
        except PyMongoError as exc:
            if lost_race(exc):
                return False  # another decision (or a newer holder) was first
            raise database_unavailable(exc) from exc
        return result.modified_count == 1

    async def held_by(self, uploader: str, *, since: datetime) -> list[tuple[datetime, int]]:
        # Equality on the uploader (what FerretDB pushes down); the rest is filtered here.
        query = {s.ATTACHMENT_UPLOADER: uploader, s.ATTACHMENT_CREATED_AT: {"$gte": since}}
        fields = {s.ATTACHMENT_CREATED_AT: 1, s.ATTACHMENT_SIZE: 1, s.ATTACHMENT_STATUS: 1}
        try:
            docs = await self._items.find(query, fields).to_list(None)
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return [
            (doc[s.ATTACHMENT_CREATED_AT], int(doc.get(s.ATTACHMENT_SIZE, 0)))
            for doc in docs
            if doc.get(s.ATTACHMENT_STATUS) in (s.PENDING, s.READY)
        ]

    async def stale_pending(self, before: datetime, *, limit: int) -> list[Attachment]:
        try:
            cursor = (
                self._items.find(
                    {s.ATTACHMENT_STATUS: s.PENDING, s.ATTACHMENT_CREATED_AT: {"$lt": before}}
                )
                .sort(s.ATTACHMENT_CREATED_AT, ASCENDING)
                .limit(limit)
            )
            return [attachment_from_doc(doc) async for doc in cursor]
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc

    async def delete_pending(self, attachment_id: str) -> bool:
        try:
            result = await self._items.delete_one(
                {s.ID: attachment_id, s.ATTACHMENT_STATUS: s.PENDING}
            )
        except PyMongoError as exc:
            raise database_unavailable(exc) from exc
        return result.deleted_count == 1

    async def withdraw(self, attachment_id: str, *, fence: int | None = None) -> None:
        query: Document = {s.ID: attachment_id}
        try:
            await self._items.update_one(
                fenced(query, fence) if fence is not None else query,
                guarded({"$set": {s.ATTACHMENT_STATUS: s.WITHDRAWN}}, fence),
            )
        except PyMongoError as exc:
            # Lost to a concurrent write: Unavailable, so the deletion that asked is retried.
            raise database_unavailable(exc) from exc
