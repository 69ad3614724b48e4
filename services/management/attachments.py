"""The attachment flow: request an upload, complete it (check + scan), hand out downloads, sweep.

No HTTP and no drivers here: teams, records, S3 and the scanner come in through the constructor.
Clients upload with a presigned POST and download with a presigned GET, so bytes pass through
this service once, on completion, and no other time:
its first bytes are checked against the declared type (``attachment_signatures.py``), it is
streamed to clamd once, and the bytes that passed are written to a key of their own that no
upload form names (``scanned_key``), which is what downloads serve. The upload form stays valid
until it expires, so the object under its key could otherwise be swapped after the scan.

Downloads follow the messages: once a stored message carries the attachment, whoever may see that
message may download it (a team message: every member; a DM: its sender and its recipient only);
before any message carries it, only its uploader may.

Completion is fail-closed: an attachment becomes ``ready`` only on an explicit clean verdict.
Without a verdict (clamd down, slow or answering ERROR; S3 unreachable) it stays ``pending`` and
the call answers 503, so the client may simply call ``complete`` again later.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter

from chatcore.errors import Conflict, InvalidInput, NotFound, RateLimited, Unavailable
from chatcore.leases import Lease, Leases, local_leases
from chatcore.logging import get_logger
from chatcore.messages import iso_datetime
from chatcore.schema import PENDING, READY, REJECTED, WITHDRAWN
from services.management import roles
from services.management.attachment_rules import (
    QUOTA_WINDOW,
    UploadRequest,
    bytes_text,
    content_disposition,
    object_key,
    quota_wait,
    scanned_key,
)
from services.management.attachment_signatures import content_mismatch
from services.management.attachment_store import Attachment, AttachmentStore
from services.management.clamd import ScanResult
from services.management.limits import ScanSlot, unbounded_scans
from services.management.objects import ObjectStore
from services.management.store import Carrier, MessageStore, TeamStore

_log = get_logger("management.attachments")

SWEEP_BATCH = 100
# One sweep handles at most this many batches; the rest waits for the next interval.
SWEEP_MAX_BATCHES = 50


class Scanner(Protocol):
    async def scan(self, data: bytes) -> ScanResult:
        """A verdict, or ``Unavailable`` when there is none."""


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    max_bytes: int
    upload_ttl_s: int
    download_ttl_s: int
    pending_max_age_s: float
    bytes_per_user_day: int


@dataclass(frozen=True, slots=True)
class AttachmentMetrics:
    outcomes: Counter
    swept: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> AttachmentMetrics:
        return cls(
            outcomes=Counter(
                "management_attachments_total",
                "Attachment steps by outcome (requested, ready, rejected, scan_unavailable, quota)",
                ["outcome"],
                registry=registry,
            ),
            swept=Counter(
                "management_attachments_swept_total",
                "Pending attachments deleted by the sweep because they were never completed",
                registry=registry,
            ),
        )


class AttachmentRejected(InvalidInput):
    """The upload was checked and refused; the record is ``rejected`` and the object deleted."""

    code = "rejected"


class AttachmentService:
    def __init__(
        self,
        *,
        teams: TeamStore,
        messages: MessageStore,
        records: AttachmentStore,
        objects: ObjectStore,
        scanner: Scanner,
        limits: AttachmentLimits,
        metrics: AttachmentMetrics,
        clock: Callable[[], float] = time.time,
        new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
        leases: Leases | None = None,
        scan_slot: ScanSlot = unbounded_scans,
    ) -> None:
        self._teams = teams
        self._messages = messages
        self._records = records
        self._objects = objects
        self._scanner = scanner
        self._limits = limits
        self._metrics = metrics
        self._clock = clock
        self._new_id = new_id
        # Per attachment, across every management instance when the leases live in the database.
        self._leases = leases if leases is not None else local_leases("attachment")
        # Held around a query over a channel's messages, per caller (the API's scan slots).
        self._scan_slot = scan_slot

    def _now(self) -> datetime:
        now = datetime.fromtimestamp(self._clock(), UTC)
        return now.replace(microsecond=now.microsecond // 1000 * 1000)

    async def _visible(self, attachment_id: str, caller: str) -> Attachment:
        """The record if the caller is a member of its team (else 404, whether it exists or not)."""
        item = await self._records.get(attachment_id)
        if item is None or item.status == WITHDRAWN:
            raise NotFound("no such attachment")
        team = await self._teams.get(item.team_id)
        if team is None or team.role_of(caller) is None:
            raise NotFound("no such attachment")
        return item

    async def request_upload(
        self, team_id: str, request: UploadRequest, *, caller: str
    ) -> dict[str, Any]:
        """Record a pending attachment and presign the one POST that may fill it."""
        team = roles.member_team(await self._teams.get(team_id), caller)
        roles.check_writable(team)
        now = self._now()
        held = await self._records.held_by(caller, since=now - QUOTA_WINDOW)
        wait = quota_wait(held, request.size, limit=self._limits.bytes_per_user_day, now=now)
        if wait is not None:
            self._metrics.outcomes.labels("quota").inc()
            quota = bytes_text(self._limits.bytes_per_user_day)
            raise RateLimited(
                f"your attachments of the last 24 hours reach {quota}, "
                "the most one account may upload in a day",
                retry_after=wait,
            )
        attachment_id = self._new_id()
        item = Attachment(
            id=attachment_id,
            team_id=team_id,
            kind=request.kind,
            status=PENDING,
            filename=request.filename,
            content_type=request.content_type,
            size=request.size,
            key=object_key(team_id, attachment_id),
            uploader=caller,
            created_at=now,
        )
        await self._records.insert(item)
        post = self._objects.presign_post(
            item.key,
            content_type=item.content_type,
            max_size=item.size,
            expires_s=self._limits.upload_ttl_s,
        )
        self._metrics.outcomes.labels("requested").inc()
        _log.info("attachment_requested", attachment_id=attachment_id, team_id=team_id)
        expires = now + timedelta(seconds=self._limits.upload_ttl_s)
        return {
            **item.public(),
            "upload": {
                "method": "POST",
                "url": post.url,
                "fields": post.fields,
                "expires_at": iso_datetime(expires),
            },
        }

    async def complete(self, attachment_id: str, *, caller: str) -> Attachment:
        """Check the stored object, scan it, and decide; idempotent once decided."""
        async with self._leases.hold(attachment_id) as lease:
            item = await self._visible(attachment_id, caller)
            if item.uploader != caller:
                # Only the uploader holds the upload form; anyone else learns nothing (a DM's
                # file stays unknown to the other members, as on download).
                raise NotFound("no such attachment")
            if item.status == READY:
                return item
            if item.status == REJECTED:
                raise AttachmentRejected(f"this attachment was rejected: {item.reason}")
            data = await self._checked(item, lease)
            # The scan may have taken long: a holder whose lease ran out decides nothing.
            lease.check()
            # What is served is exactly what was scanned: the upload form stays valid until it
            # expires, so the object under its key could be replaced after this check.
            copy = scanned_key(item.key)
            await self._objects.put(copy, data, content_type=item.content_type)
            lease.check()
            decided = await self._records.decide(
                item.id, READY, at=self._now(), stored_key=copy, fence=lease.epoch
            )
            if not decided:
                raise Conflict("this attachment was decided concurrently; ask again")
            await self._drop_upload(item)
            self._metrics.outcomes.labels("ready").inc()
            _log.info("attachment_ready", attachment_id=item.id, team_id=item.team_id)
            return dataclasses.replace(item, status=READY, stored_key=copy)

    async def _checked(self, item: Attachment, lease: Lease) -> bytes:
        """The uploaded bytes once they match the declaration and scan clean; otherwise the
        attachment is rejected (``AttachmentRejected``) or stays pending (``Conflict``)."""
        stored = await self._objects.head(item.key)
        if stored is None:
            # Stays pending: the policy may still be valid and the client can upload.
            raise Conflict("nothing was uploaded for this attachment yet")
        problem = _mismatch(item, stored.size, stored.content_type)
        data = b""
        if problem is None:
            found = await self._objects.read(item.key, max_bytes=item.size)
            if found is None:
                raise Conflict("nothing was uploaded for this attachment yet")
            data = found
            if len(data) != item.size:
                problem = "size differs from the declared size"
            else:
                problem = content_mismatch(item.content_type, data) or await self._scan(data)
        if problem is not None:
            await self._reject(item, problem, lease)
            raise AttachmentRejected(f"the upload was rejected: {problem}")
        return data

    async def _scan(self, data: bytes) -> str | None:
        try:
            result = await self._scanner.scan(data)
        except Exception:
            # Unavailable (or a bug in between): no verdict, so the record stays pending.
            self._metrics.outcomes.labels("scan_unavailable").inc()
            raise
        if result.clean:
            return None
        return f"malware found ({result.signature})"

    async def _delete_objects(self, item: Attachment) -> None:
        # Both keys: the upload key may hold a late upload through a form still valid, and a
        # completion that lost its lease after writing the scanned copy left that copy.
        await self._objects.delete(scanned_key(item.key))
        await self._objects.delete(item.key)

    async def _drop_upload(self, item: Attachment) -> None:
        """The uploaded object is not served once its scanned copy is: delete it, best effort
        (the attachment is ready either way; a withdrawal deletes it again)."""
        try:
            await self._objects.delete(item.key)
        except Unavailable:
            _log.warning("attachment_upload_not_deleted", attachment_id=item.id)

    async def _reject(self, item: Attachment, reason: str, lease: Lease) -> None:
        # Object first: if deleting fails the record stays pending, and a later completion (or
        # the sweep) retries; a rejected record never points at a surviving object.
        lease.check()
        await self._delete_objects(item)
        await self._records.decide(
            item.id, REJECTED, at=self._now(), reason=reason, fence=lease.epoch
        )
        self._metrics.outcomes.labels("rejected").inc()
        _log.warning(
            "attachment_rejected", attachment_id=item.id, team_id=item.team_id, reason=reason
        )

    async def get(self, attachment_id: str, *, caller: str) -> Attachment:
        return await self._visible(attachment_id, caller)

    async def download(self, attachment_id: str, *, caller: str) -> dict[str, Any]:
        """A short-lived presigned GET that makes browsers save, never render, the file."""
        item = await self._visible(attachment_id, caller)
        if not await self._may_download(item, caller):
            # The same answer as for an id that does not exist: a DM's file stays unknown.
            raise NotFound("no such attachment")
        if item.status != READY:
            raise Conflict(f"this attachment is {item.status}, not ready")
        url = self._objects.presign_get(
            item.served_key,
            content_type=item.content_type,
            disposition=content_disposition(item.filename),
            expires_s=self._limits.download_ttl_s,
        )
        expires = self._now() + timedelta(seconds=self._limits.download_ttl_s)
        return {**item.public(), "url": url, "expires_at": iso_datetime(expires)}

    async def _may_download(self, item: Attachment, caller: str) -> bool:
        """A team member's right to an attachment. Only its uploader may send it (the
        controller refuses anyone else), so they see every message carrying it; anyone else
        needs a message they may see that carries it, and only a ready file is ever sent. The
        messages are asked last: on MongoDB that query reads the channel's messages."""
        if caller == item.uploader:
            return True
        if item.status != READY:
            return False
        async with self._scan_slot(caller):
            carrier = await self._messages.carrier(item.team_id, item.id, caller)
        return carrier is Carrier.VISIBLE

    async def withdraw(self, attachment_id: str) -> None:
        """The message carrying the attachment is being deleted: its bytes go, and it answers
        404 to everyone from now on (idempotent)."""
        async with self._leases.hold(attachment_id) as lease:
            item = await self._records.get(attachment_id)
            if item is None or item.status == WITHDRAWN:
                return
            lease.check()
            await self._delete_objects(item)
            await self._records.withdraw(attachment_id, fence=lease.epoch)
            _log.info("attachment_withdrawn", attachment_id=attachment_id, team_id=item.team_id)

    async def sweep(self) -> int:
        """Delete pending attachments older than the configured age, objects first."""
        cutoff = self._now() - timedelta(seconds=self._limits.pending_max_age_s)
        deleted = 0
        for _ in range(SWEEP_MAX_BATCHES):
            batch = await self._records.stale_pending(cutoff, limit=SWEEP_BATCH)
            for item in batch:
                async with self._leases.hold(item.id) as lease:
                    lease.check()
                    await self._delete_objects(item)
                    if await self._records.delete_pending(item.id):
                        deleted += 1
            if len(batch) < SWEEP_BATCH:
                break
        if deleted:
            self._metrics.swept.inc(deleted)
            _log.info("attachments_swept", deleted=deleted)
        return deleted


def _mismatch(item: Attachment, size: int, content_type: str) -> str | None:
    """Why a stored object does not match its declaration; None when it does."""
    if size != item.size:
        return "size differs from the declared size"
    if content_type.split(";", 1)[0].strip().lower() != item.content_type:
        return "content type differs from the declared type"
    return None
