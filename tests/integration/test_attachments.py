"""Attachments end to end: the real S3 server, the real clamd, the whole message pipeline."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import secrets
import urllib.parse
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from chatclient import SendFailed
from chatcore.s3 import encode_post_form, make_s3_client
from chatcore.settings import Settings
from deploy.local.storage import EICAR_HEX
from services.management.server import start as start_management
from tests.integration.frames import next_message
from tests.integration.management_support import Api, Reply, load_checker
from tests.integration.pipeline_env import Pipeline, User, start_pipeline

FIVE_MIB = 5 * 1024 * 1024
EICAR = bytes.fromhex(EICAR_HEX)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def picture(body: bytes) -> bytes:
    """Bytes that pass as ``image/png`` (completion checks the format's signature)."""
    return PNG_SIGNATURE + body


@pytest.fixture(scope="module")
async def pipe(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Pipeline]:
    """Auth, controller, management and two relays for this module."""
    pipeline = await start_pipeline(settings, tmp_path_factory.mktemp("attach-keys"))
    yield pipeline
    await pipeline.stop()


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    """HTTP calls whose every response is checked against docs/openapi.json."""
    async with aiohttp.ClientSession() as http:
        yield Api(http, load_checker())


@contextlib.asynccontextmanager
async def other_management(pipe: Pipeline, **overrides: Any) -> AsyncIterator[str]:
    """A second management service on the pipeline's database, with different settings."""
    service = await start_management(dataclasses.replace(pipe.settings, **overrides), port=0)
    try:
        yield f"http://127.0.0.1:{service.port}"
    finally:
        await service.stop()


async def request_upload(
    api: Api, base: str, who: User, team: str, *, size: int, ct: str, name: str = "photo.png"
) -> Reply:
    body = {"filename": name, "content_type": ct, "size": size}
    return await api.call("POST", f"{base}/v1/teams/{team}/attachments", token=who.token, body=body)


async def upload(reply: Reply, content: bytes, *, content_type: str | None = None) -> int:
    """POST the file as a browser would, through the presigned form; the S3 status."""
    form = reply.data["upload"]
    fields = dict(form["fields"])
    if content_type is not None:
        fields["Content-Type"] = content_type
    body, header = encode_post_form(
        fields, content, filename=reply.data["filename"], content_type=fields["Content-Type"]
    )
    async with (
        aiohttp.ClientSession() as http,
        http.post(form["url"], data=io.BytesIO(body), headers={"Content-Type": header}) as resp,
    ):
        await resp.read()
        return resp.status


async def complete(api: Api, base: str, who: User, attachment_id: str) -> Reply:
    return await api.call(
        "POST", f"{base}/v1/attachments/{attachment_id}/complete", token=who.token
    )


async def ready_attachment(
    api: Api, pipe: Pipeline, who: User, team: str, content: bytes, ct: str = "image/png"
) -> str:
    reply = await request_upload(api, pipe.api_url, who, team, size=len(content), ct=ct)
    assert reply.status == 201, reply.body
    assert await upload(reply, content) == 204
    done = await complete(api, pipe.api_url, who, reply.data["id"])
    assert done.status == 200, done.body
    assert done.data["status"] == "ready"
    return str(reply.data["id"])


def object_exists(pipe: Pipeline, team: str, attachment_id: str) -> bool:
    client = make_s3_client(pipe.settings)
    key = f"attachments/{team}/{attachment_id}"
    listed = client.list_objects_v2(Bucket=pipe.settings.s3_bucket, Prefix=key)
    return int(listed.get("KeyCount", 0)) > 0


async def status_of(pipe: Pipeline, attachment_id: str) -> str | None:
    doc = await pipe.db.attachments.find_one({"_id": attachment_id})
    return None if doc is None else str(doc["status"])


async def sent_link(
    pipe: Pipeline, api: Api, sender: User, reader: User, team: str, attachment_id: str
) -> Reply:
    """``sender`` sends the file to the team; ``reader``'s download link once the message is
    stored (the link answers 404 until then)."""
    socket = await pipe.connect(sender)
    await socket.send(team, attachment_id, type="file")
    await socket.close()
    url = f"{pipe.api_url}/v1/attachments/{attachment_id}"
    deadline = asyncio.get_running_loop().time() + 20
    while (link := await api.call("GET", url, token=reader.token)).status != 200:
        assert asyncio.get_running_loop().time() < deadline, link.body
        await asyncio.sleep(0.1)
    return link


async def test_upload_complete_send_and_download_identical_bytes(pipe: Pipeline, api: Api) -> None:
    """Request, presigned POST, complete, image message, and another member downloads it."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([alice, bob])
    content = picture(secrets.token_bytes(300_000))
    name = "Фото «1».png"
    reply = await request_upload(
        api, pipe.api_url, alice, team, size=len(content), ct="image/png", name=name
    )
    assert reply.status == 201, reply.body
    assert reply.headers["Cache-Control"] == "no-store"
    data = reply.data
    assert (data["status"], data["kind"], data["attachment_id"]) == ("pending", "image", data["id"])
    policy = json.loads(base64.b64decode(data["upload"]["fields"]["policy"]))
    conditions = policy["conditions"]
    assert {"key": f"attachments/{team}/{data['id']}"} in conditions
    assert {"Content-Type": "image/png"} in conditions
    assert ["content-length-range", 1, len(content)] in conditions
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert 0 < (expires - datetime.now(UTC)).total_seconds() <= 15 * 60

    assert await upload(reply, content) == 204
    done = await complete(api, pipe.api_url, alice, data["id"])
    assert done.data["status"] == "ready"
    again = await complete(api, pipe.api_url, alice, data["id"])
    assert again.data["status"] == "ready"  # idempotent

    sender, receiver = await pipe.connect(alice, 0), await pipe.connect(bob, 1)
    ack = await sender.send(team, data["id"], type="image")
    event = await next_message(receiver)
    assert (event["id"], event["type"], event["data"]) == (ack.id, "image", data["id"])

    link = await api.call("GET", f"{pipe.api_url}/v1/attachments/{data['id']}", token=bob.token)
    assert link.status == 200, link.body
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(link.data["url"]).query)
    assert int(query["X-Amz-Expires"][0]) <= 300
    async with aiohttp.ClientSession() as http, http.get(link.data["url"]) as resp:
        assert resp.status == 200
        body = await resp.read()
        assert resp.headers["Content-Type"] == "image/png"
        disposition = resp.headers["Content-Disposition"]
    assert hashlib.sha256(body).digest() == hashlib.sha256(content).digest()
    assert disposition.startswith('attachment; filename="')
    assert "filename*=UTF-8''" + urllib.parse.quote(name, safe="") in disposition
    await sender.close()
    await receiver.close()


async def test_store_refuses_one_byte_over_five_mib(pipe: Pipeline, api: Api) -> None:
    """A 5 MiB declaration accepts 5 MiB; 5 MiB + 1 is refused by S3 and by the API."""
    alice = await pipe.user()
    team = await pipe.team([alice])
    reply = await request_upload(api, pipe.api_url, alice, team, size=FIVE_MIB, ct="image/png")
    assert reply.status == 201
    assert await upload(reply, b"x" * (FIVE_MIB + 1)) == 400
    assert not object_exists(pipe, team, reply.data["id"])
    assert await upload(reply, b"x" * FIVE_MIB) == 204
    too_big = await request_upload(
        api, pipe.api_url, alice, team, size=FIVE_MIB + 1, ct="image/png"
    )
    assert too_big.status == 413


async def test_store_refuses_more_than_declared_and_other_content_type(
    pipe: Pipeline, api: Api
) -> None:
    """The policy caps the size at the declaration and pins the exact Content-Type."""
    alice = await pipe.user()
    team = await pipe.team([alice])
    reply = await request_upload(api, pipe.api_url, alice, team, size=100, ct="image/png")
    assert await upload(reply, b"x" * 101) == 400
    assert await upload(reply, b"x" * 100, content_type="image/gif") == 403
    assert await upload(reply, b"x" * 100, content_type="text/html") == 403
    assert not object_exists(pipe, team, reply.data["id"])


async def test_smaller_upload_than_declared_is_rejected_on_complete(
    pipe: Pipeline, api: Api
) -> None:
    """An object of another size than declared ends rejected, and its object is deleted."""
    alice = await pipe.user()
    team = await pipe.team([alice])
    reply = await request_upload(api, pipe.api_url, alice, team, size=100, ct="image/png")
    assert await upload(reply, b"x" * 50) == 204
    done = await complete(api, pipe.api_url, alice, reply.data["id"])
    assert (done.status, done.code) == (422, "rejected")
    assert await status_of(pipe, reply.data["id"]) == "rejected"
    assert not object_exists(pipe, team, reply.data["id"])


async def test_a_text_file_declared_as_a_picture_is_rejected_on_complete(
    pipe: Pipeline, api: Api
) -> None:
    """Bytes that are not the declared image type end rejected (422), their object deleted."""
    alice = await pipe.user()
    team = await pipe.team([alice])
    notes = b"meeting notes, not a picture at all"
    reply = await request_upload(api, pipe.api_url, alice, team, size=len(notes), ct="image/png")
    assert await upload(reply, notes) == 204
    done = await complete(api, pipe.api_url, alice, reply.data["id"])
    assert (done.status, done.code) == (422, "rejected")
    assert "not image/png" in done.body["error"]["message"]
    assert await status_of(pipe, reply.data["id"]) == "rejected"
    assert not object_exists(pipe, team, reply.data["id"])


async def test_an_upload_after_complete_never_reaches_a_download(pipe: Pipeline, api: Api) -> None:
    """The form used again after a clean scan (malware this time) changes nothing: members
    download the scanned bytes, and a second complete answers the same decision."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([alice, bob])
    clean = b"quarterly figures, all fine".ljust(len(EICAR), b".")
    reply = await request_upload(
        api, pipe.api_url, alice, team, size=len(clean), ct="text/plain", name="q.txt"
    )
    assert await upload(reply, clean) == 204
    assert (await complete(api, pipe.api_url, alice, reply.data["id"])).data["status"] == "ready"
    assert await upload(reply, EICAR) == 204  # S3 takes it: the form is valid until it expires
    assert (await complete(api, pipe.api_url, alice, reply.data["id"])).data["status"] == "ready"
    link = await sent_link(pipe, api, alice, bob, team, reply.data["id"])
    async with aiohttp.ClientSession() as http, http.get(link.data["url"]) as resp:
        assert resp.status == 200
        assert await resp.read() == clean


async def test_a_file_named_for_another_type_is_saved_with_its_own_extension(
    pipe: Pipeline, api: Api
) -> None:
    """A text file named invoice.html is listed and downloaded as invoice.html.txt: saved to
    disk it opens as text, not as a page."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([alice, bob])
    content = b"<script>alert(1)</script>"
    reply = await request_upload(
        api, pipe.api_url, alice, team, size=len(content), ct="text/plain", name="invoice.html"
    )
    assert reply.status == 201, reply.body
    assert reply.data["filename"] == "invoice.html.txt"
    assert await upload(reply, content) == 204
    assert (await complete(api, pipe.api_url, alice, reply.data["id"])).data["status"] == "ready"
    link = await sent_link(pipe, api, alice, bob, team, reply.data["id"])
    assert link.data["filename"] == "invoice.html.txt"
    async with aiohttp.ClientSession() as http, http.get(link.data["url"]) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Disposition"] == 'attachment; filename="invoice.html.txt"'


async def test_an_account_past_its_daily_bytes_gets_429_until_they_age_out(
    pipe: Pipeline, api: Api
) -> None:
    """With a 100-byte daily quota: 60 bytes are taken, 60 more answer 429 with Retry-After of
    about a day and record nothing; another member's own 60 are theirs."""
    alice, bob = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([alice, bob])
    async with other_management(
        pipe, attachment_bytes_per_user_day=100, attachment_max_bytes=100
    ) as base:
        first = await request_upload(api, base, alice, team, size=60, ct="text/plain", name="a.txt")
        assert first.status == 201, first.body
        refused = await request_upload(
            api, base, alice, team, size=60, ct="text/plain", name="b.txt"
        )
        assert (refused.status, refused.code) == (429, "rate_limited")
        assert 86_000 < int(refused.headers["Retry-After"]) <= 86_400
        theirs = await request_upload(api, base, bob, team, size=60, ct="text/plain", name="c.txt")
        assert theirs.status == 201, theirs.body
    assert await pipe.db.attachments.count_documents({"team_id": team}) == 2


async def test_expired_policy_is_refused(pipe: Pipeline, api: Api) -> None:
    """An upload after the policy's expiry is refused by S3 and completing finds nothing."""
    alice = await pipe.user()
    team = await pipe.team([alice])
    async with other_management(pipe, attachment_upload_ttl_s=1) as base:
        reply = await request_upload(api, base, alice, team, size=10, ct="image/png")
        # Until S3 itself holds the policy expired: an oversized upload is refused as too large
        # (400) while the policy is valid, as expired (403) once it is not; it never stores.
        deadline = asyncio.get_running_loop().time() + 15
        while (status := await upload(reply, b"x" * 11)) != 403:
            assert status == 400, status
            assert asyncio.get_running_loop().time() < deadline, "the policy never expired"
            await asyncio.sleep(0.2)
        assert await upload(reply, b"x" * 10) == 403
        done = await complete(api, base, alice, reply.data["id"])
        assert done.status == 409
    assert await status_of(pipe, reply.data["id"]) == "pending"


async def test_eicar_upload_is_rejected_and_deleted(pipe: Pipeline, api: Api) -> None:
    """clamd finds the EICAR test file: rejected, the object is gone, no download URL."""
    alice = await pipe.user()
    team = await pipe.team([alice])
    reply = await request_upload(
        api, pipe.api_url, alice, team, size=len(EICAR), ct="text/plain", name="eicar.txt"
    )
    assert await upload(reply, EICAR) == 204
    done = await complete(api, pipe.api_url, alice, reply.data["id"])
    assert (done.status, done.code) == (422, "rejected")
    assert await status_of(pipe, reply.data["id"]) == "rejected"
    assert not object_exists(pipe, team, reply.data["id"])
    link = await api.call(
        "GET", f"{pipe.api_url}/v1/attachments/{reply.data['id']}", token=alice.token
    )
    assert link.status == 409
    again = await complete(api, pipe.api_url, alice, reply.data["id"])
    assert again.status == 422


async def test_scanner_down_answers_503_and_stays_pending(pipe: Pipeline, api: Api) -> None:
    """Without clamd the completion fails closed (503, pending); with it back it succeeds."""
    alice = await pipe.user()
    team = await pipe.team([alice])
    reply = await request_upload(api, pipe.api_url, alice, team, size=10, ct="image/png")
    assert await upload(reply, picture(b"xx")) == 204
    async with other_management(pipe, clamd_address="127.0.0.1:9", clamd_timeout_s=2.0) as base:
        done = await complete(api, base, alice, reply.data["id"])
        assert (done.status, done.code) == (503, "unavailable")
    assert await status_of(pipe, reply.data["id"]) == "pending"
    assert object_exists(pipe, team, reply.data["id"])
    retry = await complete(api, pipe.api_url, alice, reply.data["id"])
    assert retry.data["status"] == "ready"


async def test_messages_naming_unusable_attachments_are_refused(pipe: Pipeline, api: Api) -> None:
    """Pending, rejected, foreign-team and wrong-type attachments get an error frame."""
    alice, carol = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([alice])
    foreign_team = await pipe.team([carol])
    pending = await request_upload(api, pipe.api_url, alice, team, size=5, ct="image/png")
    rejected = await request_upload(
        api, pipe.api_url, alice, team, size=len(EICAR), ct="text/plain", name="e.txt"
    )
    assert await upload(rejected, EICAR) == 204
    assert (await complete(api, pipe.api_url, alice, rejected.data["id"])).status == 422
    foreign = await ready_attachment(api, pipe, carol, foreign_team, picture(b"carol's picture"))
    mine = await ready_attachment(api, pipe, alice, team, picture(b"alice's picture"))
    client = await pipe.connect(alice)
    cases = [
        (pending.data["id"], "image"),
        (rejected.data["id"], "file"),
        (foreign, "image"),
        (mine, "file"),
        ("0" * 32, "image"),
    ]
    for attachment_id, kind in cases:
        with pytest.raises(SendFailed) as refused:
            await client.send(team, attachment_id, type=kind)
        assert refused.value.code == "invalid", (attachment_id, kind)
    ack = await client.send(team, mine, type="image")
    assert ack.seq >= 0
    await client.close()


async def test_non_member_gets_404_for_upload_and_download(pipe: Pipeline, api: Api) -> None:
    """A stranger can neither request an upload, complete, nor get a download URL."""
    alice, stranger = await asyncio.gather(pipe.user(), pipe.user())
    team = await pipe.team([alice])
    attachment_id = await ready_attachment(api, pipe, alice, team, picture(b"members only"))
    refused = await request_upload(api, pipe.api_url, stranger, team, size=5, ct="image/png")
    assert (refused.status, refused.code) == (404, "not_found")
    base = f"{pipe.api_url}/v1/attachments"
    link = await api.call("GET", f"{base}/{attachment_id}", token=stranger.token)
    assert link.status == 404
    assert (await complete(api, pipe.api_url, stranger, attachment_id)).status == 404
    unknown = await api.call("GET", f"{base}/{'0' * 32}", token=alice.token)
    assert unknown.status == 404
    assert (await api.call("GET", f"{base}/{attachment_id}")).status == 401
    assert (await api.call("GET", f"{base}/not-an-id", token=alice.token)).status == 422


async def test_unsafe_requests_are_refused(pipe: Pipeline, api: Api) -> None:
    """SVG, HTML, empty names, zero sizes and unknown fields are 422 and record nothing."""
    alice = await pipe.user()
    team = await pipe.team([alice])
    url = f"{pipe.api_url}/v1/teams/{team}/attachments"
    bodies: list[dict[str, Any]] = [
        {"filename": "x.svg", "content_type": "image/svg+xml", "size": 10},
        {"filename": "x.html", "content_type": "text/html", "size": 10},
        {"filename": "../", "content_type": "image/png", "size": 10},
        {"filename": "x.png", "content_type": "image/png", "size": 0},
        {"filename": "x.png", "content_type": "image/png", "size": True},
        {"filename": "x.png", "content_type": "image/png", "size": 10, "key": "mine"},
        {"filename": {"$gt": ""}, "content_type": "image/png", "size": 10},
    ]
    for body in bodies:
        reply = await api.call("POST", url, token=alice.token, body=body)
        assert (reply.status, reply.code) == (422, "invalid"), body
    assert await pipe.db.attachments.count_documents({"team_id": team}) == 0


async def test_sweep_deletes_stale_pending_uploads(pipe: Pipeline, api: Api) -> None:
    """A pending attachment older than the configured age is deleted with its object."""
    alice = await pipe.user()
    team = await pipe.team([alice])
    keep = await ready_attachment(api, pipe, alice, team, picture(b"a ready one stays"))
    # The policy must outlive the upload even on a loaded machine; the sweep may only take what
    # is older than the policy, so both are a few seconds.
    async with other_management(
        pipe,
        attachment_upload_ttl_s=5,
        attachment_pending_max_age_s=5.0,
        attachment_sweep_interval_s=0.3,
    ) as base:
        reply = await request_upload(api, base, alice, team, size=4, ct="image/png")
        assert await upload(reply, b"abcd") == 204
        for _ in range(150):
            if await status_of(pipe, reply.data["id"]) is None:
                break
            await asyncio.sleep(0.2)
    assert await status_of(pipe, reply.data["id"]) is None
    assert not object_exists(pipe, team, reply.data["id"])
    assert await status_of(pipe, keep) == "ready"


async def test_s3_cors_allows_configured_origins_only(pipe: Pipeline) -> None:
    """A browser on an allowed origin may POST to the bucket; another origin gets no CORS grant."""
    url = f"{pipe.settings.s3_endpoint}/{pipe.settings.s3_bucket}"
    async with aiohttp.ClientSession() as http:
        for origin, allowed in (
            (pipe.settings.ws_origins[0], True),
            ("https://evil.example", False),
        ):
            headers = {"Origin": origin, "Access-Control-Request-Method": "POST"}
            async with http.options(url, headers=headers) as resp:
                granted = resp.headers.get("Access-Control-Allow-Origin")
                assert (granted == origin) is allowed, (origin, resp.status, granted)


async def test_a_dm_attachment_is_downloadable_by_its_two_people_only(
    pipe: Pipeline, api: Api
) -> None:
    """Uploader only until sent; sent as a DM to Bob: Alice and Bob download it, Carol gets 404;
    sent to the team: Carol too."""
    alice, bob, carol = await asyncio.gather(pipe.user(), pipe.user(), pipe.user())
    team = await pipe.team([alice, bob, carol])
    attachment_id = await ready_attachment(api, pipe, alice, team, b"for bob", ct="text/plain")
    url = f"{pipe.api_url}/v1/attachments/{attachment_id}"

    async def statuses() -> tuple[int, int, int]:
        replies = [await api.call("GET", url, token=u.token) for u in (alice, bob, carol)]
        return replies[0].status, replies[1].status, replies[2].status

    assert await statuses() == (200, 404, 404)  # no message carries it yet

    async def stored(message_id: str) -> None:
        deadline = asyncio.get_running_loop().time() + 20
        while await pipe.db.messages.find_one({"id": message_id}) is None:
            assert asyncio.get_running_loop().time() < deadline, "message never stored"
            await asyncio.sleep(0.05)

    sender = await pipe.connect(alice)
    try:
        dm = await sender.send(team, attachment_id, to=bob.id, type="file")
        await stored(dm.id)
        assert await statuses() == (200, 200, 404)
        carol_reply = await api.call("GET", url, token=carol.token)
        assert carol_reply.code == "not_found"
        broadcast = await sender.send(team, attachment_id, type="file")
        await stored(broadcast.id)
        assert await statuses() == (200, 200, 200)
    finally:
        await sender.close()
