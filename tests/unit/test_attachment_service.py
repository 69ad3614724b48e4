"""The attachment flow with in-memory stores: fail-closed scanning, rejection, 404s, the sweep."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from chatcore.errors import Conflict, Forbidden, NotFound, RateLimited, Unavailable
from chatcore.message_state import StoredMessage
from services.management.attachment_rules import UploadRequest, kind_of
from services.management.attachments import (
    AttachmentLimits,
    AttachmentMetrics,
    AttachmentRejected,
    AttachmentService,
)
from services.management.model import Team
from tests.unit.management_fakes import (
    FakeScanner,
    MemoryAttachmentStore,
    MemoryMessageStore,
    MemoryObjects,
    MemoryTeamStore,
)

ALICE, BOB, CAROL, STRANGER, TEAM = "a" * 32, "b" * 32, "d" * 32, "c" * 32, "t" * 32
T0 = datetime(2026, 1, 1, tzinfo=UTC)
QUOTA = 1000  # bytes a day per account, small enough to reach


@dataclasses.dataclass
class World:
    service: AttachmentService
    teams: MemoryTeamStore
    messages: MemoryMessageStore
    records: MemoryAttachmentStore
    objects: MemoryObjects
    scanner: FakeScanner
    now: list[float]


@pytest.fixture
def world() -> World:
    """A service over in-memory stores with one team of Alice (super_admin), Bob and Carol."""
    teams, messages, records, objects, scanner = (
        MemoryTeamStore(),
        MemoryMessageStore(),
        MemoryAttachmentStore(),
        MemoryObjects(),
        FakeScanner(),
    )
    teams.teams[TEAM] = Team(TEAM, "t", "", True, (), (ALICE, BOB, CAROL), (ALICE,), ALICE, T0)
    now = [1_800_000_000.0]
    ids = iter(f"{n:032x}" for n in range(1, 1000))
    service = AttachmentService(
        teams=teams,
        messages=messages,
        records=records,
        objects=objects,
        scanner=scanner,
        limits=AttachmentLimits(
            max_bytes=5 * 1024 * 1024,
            upload_ttl_s=900,
            download_ttl_s=300,
            pending_max_age_s=3600,
            bytes_per_user_day=QUOTA,
        ),
        metrics=AttachmentMetrics.create(CollectorRegistry()),
        clock=lambda: now[0],
        new_id=lambda: next(ids),
    )
    return World(service, teams, messages, records, objects, scanner, now)


async def _uploaded(world: World, content: bytes, ct: str = "text/plain") -> str:
    request = UploadRequest("a.txt", ct, kind_of(ct) or "file", len(content))
    reply = await world.service.request_upload(TEAM, request, caller=ALICE)
    world.objects.objects[f"attachments/{TEAM}/{reply['id']}"] = (content, ct)
    return str(reply["id"])


async def test_clean_upload_becomes_ready_and_downloadable(world: World) -> None:
    """A clean, matching object is scanned once and becomes ready; downloads are presigned."""
    attachment_id = await _uploaded(world, b"hello")
    assert (await world.service.complete(attachment_id, caller=ALICE)).status == "ready"
    assert (await world.service.complete(attachment_id, caller=ALICE)).status == "ready"
    assert world.scanner.scanned == [b"hello"]
    link = await world.service.download(attachment_id, caller=ALICE)
    assert "exp=300" in link["url"]
    assert 'attachment; filename="a.txt"' in link["url"]


async def test_scanner_down_fails_closed(world: World) -> None:
    """No verdict: Unavailable, the record stays pending and the object stays for a retry."""
    attachment_id = await _uploaded(world, b"hello")
    world.scanner.down = True
    with pytest.raises(Unavailable):
        await world.service.complete(attachment_id, caller=ALICE)
    assert world.records.items[attachment_id].status == "pending"
    with pytest.raises(Conflict):
        await world.service.download(attachment_id, caller=ALICE)
    world.scanner.down = False
    assert (await world.service.complete(attachment_id, caller=ALICE)).status == "ready"


async def test_s3_down_fails_closed(world: World) -> None:
    """An unreachable object store also leaves the record pending."""
    attachment_id = await _uploaded(world, b"hello")
    world.objects.down = True
    with pytest.raises(Unavailable):
        await world.service.complete(attachment_id, caller=ALICE)
    assert world.records.items[attachment_id].status == "pending"


async def test_infected_or_mismatched_uploads_are_rejected_and_deleted(world: World) -> None:
    """Malware, another size or another type: rejected, object deleted, no download."""
    infected = await _uploaded(world, b"xxEICARxx")
    wrong_type = await _uploaded(world, b"hello")
    world.objects.objects[f"attachments/{TEAM}/{wrong_type}"] = (b"hello", "text/html")
    for attachment_id in (infected, wrong_type):
        with pytest.raises(AttachmentRejected):
            await world.service.complete(attachment_id, caller=ALICE)
        assert world.records.items[attachment_id].status == "rejected"
        assert f"attachments/{TEAM}/{attachment_id}" not in world.objects.objects
        with pytest.raises(Conflict):
            await world.service.download(attachment_id, caller=ALICE)


async def test_bytes_that_are_not_the_declared_image_are_rejected_unscanned(world: World) -> None:
    """Text sent as image/png is rejected and deleted before the scan; a real PNG is ready."""
    text = await _uploaded(world, b"just some notes", ct="image/png")
    with pytest.raises(AttachmentRejected, match="the content is not image/png"):
        await world.service.complete(text, caller=ALICE)
    assert world.records.items[text].status == "rejected"
    assert f"attachments/{TEAM}/{text}" not in world.objects.objects
    assert world.scanner.scanned == []
    picture = await _uploaded(world, b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, ct="image/png")
    assert (await world.service.complete(picture, caller=ALICE)).status == "ready"


async def test_an_account_uploads_at_most_its_daily_quota(world: World) -> None:
    """Past the bytes one account may request in 24 hours: 429 until the oldest are a day old;
    rejected uploads (their bytes deleted) do not count, and others' uploads are their own."""
    request = UploadRequest("a.txt", "text/plain", "file", 600)
    await world.service.request_upload(TEAM, request, caller=ALICE)
    world.now[0] += 3600
    with pytest.raises(RateLimited, match="the most one account may upload in a day") as refused:
        await world.service.request_upload(TEAM, request, caller=ALICE)
    assert refused.value.retry_after == 23 * 3600
    assert len(world.records.items) == 1  # nothing recorded for the refused one
    await world.service.request_upload(TEAM, request, caller=BOB)
    infected = await _uploaded(world, b"xxEICARxx")
    with pytest.raises(RateLimited):
        await world.service.request_upload(
            TEAM, UploadRequest("b.txt", "text/plain", "file", 392), caller=ALICE
        )
    with pytest.raises(AttachmentRejected):
        await world.service.complete(infected, caller=ALICE)
    await world.service.request_upload(
        TEAM, UploadRequest("b.txt", "text/plain", "file", 392), caller=ALICE
    )
    world.now[0] += 23 * 3600
    await world.service.request_upload(TEAM, request, caller=ALICE)


async def test_missing_object_keeps_the_record_pending(world: World) -> None:
    """Completing before uploading is a 409 and changes nothing."""
    reply = await world.service.request_upload(
        TEAM, UploadRequest("a.png", "image/png", "image", 5), caller=ALICE
    )
    with pytest.raises(Conflict):
        await world.service.complete(reply["id"], caller=ALICE)
    assert world.records.items[reply["id"]].status == "pending"


async def test_non_members_get_not_found_everywhere(world: World) -> None:
    """Strangers get 404 for requests, completions and downloads, as for unknown ids."""
    attachment_id = await _uploaded(world, b"hello")
    request = UploadRequest("a.png", "image/png", "image", 5)
    with pytest.raises(NotFound):
        await world.service.request_upload(TEAM, request, caller=STRANGER)
    with pytest.raises(NotFound):
        await world.service.complete(attachment_id, caller=STRANGER)
    with pytest.raises(NotFound):
        await world.service.download(attachment_id, caller=STRANGER)
    with pytest.raises(NotFound):
        await world.service.download("0" * 32, caller=ALICE)
    assert len(world.records.items) == 1


async def test_deactivated_team_refuses_uploads(world: World) -> None:
    """Members of a deactivated team cannot start uploads (they could not send them)."""
    world.teams.teams[TEAM] = dataclasses.replace(world.teams.teams[TEAM], active=False)
    with pytest.raises(Forbidden):
        await world.service.request_upload(
            TEAM, UploadRequest("a.png", "image/png", "image", 5), caller=ALICE
        )


async def test_sweep_deletes_only_old_pending_attachments(world: World) -> None:
    """Pending records past the age go with their objects; recent and ready ones stay."""
    old = await _uploaded(world, b"old")
    ready = await _uploaded(world, b"ready")
    await world.service.complete(ready, caller=ALICE)
    world.now[0] += 3000
    recent = await _uploaded(world, b"recent")
    world.now[0] += 700
    assert await world.service.sweep() == 1
    assert set(world.records.items) == {ready, recent}
    assert f"attachments/{TEAM}/{old}" not in world.objects.objects
    assert f"attachments/{TEAM}/{ready}.scanned" in world.objects.objects


async def test_bytes_swapped_in_after_the_scan_are_never_served(world: World) -> None:
    """Downloads serve the copy of what was scanned; a later upload through the still-valid form
    changes nothing, and deleting the message takes both objects."""
    attachment_id = await _uploaded(world, b"clean report")
    await world.service.complete(attachment_id, caller=ALICE)
    upload_key = f"attachments/{TEAM}/{attachment_id}"
    assert upload_key not in world.objects.objects  # the upload itself is not kept
    world.objects.objects[upload_key] = (b"xxEICARxxxx", "text/plain")  # the form, used again
    assert (await world.service.complete(attachment_id, caller=ALICE)).status == "ready"
    assert world.scanner.scanned == [b"clean report"]
    link = await world.service.download(attachment_id, caller=ALICE)
    assert f"/{upload_key}.scanned?" in link["url"]
    assert world.objects.objects[f"{upload_key}.scanned"][0] == b"clean report"
    await world.service.withdraw(attachment_id)
    assert not [k for k in world.objects.objects if k.startswith(upload_key)]


async def test_attachments_made_ready_before_scanned_copies_are_served_from_their_key(
    world: World,
) -> None:
    """A record without a stored copy (ready before copies existed) downloads from its key."""
    attachment_id = await _uploaded(world, b"older")
    item = world.records.items[attachment_id]
    world.records.items[attachment_id] = dataclasses.replace(item, status="ready")
    link = await world.service.download(attachment_id, caller=ALICE)
    assert f"/attachments/{TEAM}/{attachment_id}?" in link["url"]


def _carry(world: World, attachment_id: str, *, sender: str, to: str, kind: str = "file") -> None:
    """A stored message carrying the attachment, as the controller would have written it."""
    seq = len(world.messages.messages) + 1
    world.messages.messages.append(
        StoredMessage(f"m{seq:031d}", seq, TEAM, to, kind, attachment_id, sender, T0)
    )


async def _downloads(world: World, attachment_id: str) -> dict[str, bool]:
    allowed = {}
    for who, user in (("alice", ALICE), ("bob", BOB), ("carol", CAROL)):
        try:
            await world.service.download(attachment_id, caller=user)
        except NotFound:
            allowed[who] = False
        else:
            allowed[who] = True
    return allowed


async def test_before_any_message_only_the_uploader_downloads(world: World) -> None:
    """A ready attachment no message carries yet is the uploader's alone (others: 404)."""
    attachment_id = await _uploaded(world, b"draft")
    await world.service.complete(attachment_id, caller=ALICE)
    assert await _downloads(world, attachment_id) == {"alice": True, "bob": False, "carol": False}
    # A text that merely quotes the id is not a message carrying the file.
    _carry(world, attachment_id, sender=ALICE, to="*", kind="text")
    assert await _downloads(world, attachment_id) == {"alice": True, "bob": False, "carol": False}


async def test_only_a_ready_file_of_someone_elses_costs_a_look_at_the_messages(
    world: World,
) -> None:
    """The uploader (who sees every message carrying their file) and anyone asking for a file
    that is not ready get their answer without a query over the channel's messages."""
    attachment_id = await _uploaded(world, b"x")
    world.messages.calls.clear()
    with pytest.raises(Conflict):
        await world.service.download(attachment_id, caller=ALICE)  # pending: 409 to its uploader
    with pytest.raises(NotFound):
        await world.service.download(attachment_id, caller=BOB)  # and unknown to anyone else
    assert "carrier" not in world.messages.calls
    await world.service.complete(attachment_id, caller=ALICE)
    await world.service.download(attachment_id, caller=ALICE)
    assert "carrier" not in world.messages.calls
    with pytest.raises(NotFound):
        await world.service.download(attachment_id, caller=BOB)  # sent to nobody yet
    assert world.messages.calls.count("carrier") == 1


async def test_a_dm_attachment_is_downloadable_by_sender_and_recipient_only(world: World) -> None:
    """Sent in a DM from Alice to Bob: Alice and Bob download it, Carol gets 404."""
    attachment_id = await _uploaded(world, b"for bob only")
    await world.service.complete(attachment_id, caller=ALICE)
    _carry(world, attachment_id, sender=ALICE, to=BOB)
    assert await _downloads(world, attachment_id) == {"alice": True, "bob": True, "carol": False}


async def test_only_the_uploader_completes_and_others_learn_nothing(world: World) -> None:
    """Completing is the uploader's step: another member gets the unknown id's 404 before and
    after the file is sent in a DM (no name, size or type leaks), and nothing is decided."""
    attachment_id = await _uploaded(world, b"salary review")
    with pytest.raises(NotFound):
        await world.service.complete(attachment_id, caller=CAROL)
    assert (await world.records.get(attachment_id)).status == "pending"  # type: ignore[union-attr]
    await world.service.complete(attachment_id, caller=ALICE)
    _carry(world, attachment_id, sender=ALICE, to=BOB)
    for who in (BOB, CAROL):
        with pytest.raises(NotFound):
            await world.service.complete(attachment_id, caller=who)


async def test_a_team_message_attachment_is_downloadable_by_every_member(world: World) -> None:
    """Sent to the whole team: every member downloads it; strangers still get 404."""
    attachment_id = await _uploaded(world, b"for everyone")
    await world.service.complete(attachment_id, caller=ALICE)
    _carry(world, attachment_id, sender=ALICE, to=BOB)
    _carry(world, attachment_id, sender=ALICE, to="*")
    assert await _downloads(world, attachment_id) == {"alice": True, "bob": True, "carol": True}
    with pytest.raises(NotFound):
        await world.service.download(attachment_id, caller=STRANGER)
