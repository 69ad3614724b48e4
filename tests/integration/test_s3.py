"""Presigned uploads and downloads against the local S3 server, which checks SigV4 for real."""

from __future__ import annotations

import hashlib
import io
import secrets
import uuid
from typing import Any

import aiohttp
import pytest

from chatcore.s3 import encode_post_form, make_s3_client
from chatcore.settings import Settings

FIVE_MIB = 5 * 1024 * 1024


def _presigned_post(settings: Settings, key: str, *, expires: int = 300) -> dict[str, Any]:
    client = make_s3_client(settings)
    post: dict[str, Any] = client.generate_presigned_post(
        settings.s3_bucket,
        key,
        Fields={"Content-Type": "image/png"},
        Conditions=[{"Content-Type": "image/png"}, ["content-length-range", 1, FIVE_MIB]],
        ExpiresIn=expires,
    )
    return post


async def _upload(post: dict[str, Any], content: bytes) -> tuple[int, str]:
    body, content_type = encode_post_form(
        post["fields"], content, filename="photo.png", content_type="image/png"
    )
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            post["url"], data=io.BytesIO(body), headers={"Content-Type": content_type}
        ) as resp,
    ):
        return resp.status, await resp.text()


def _key() -> str:
    return f"test/{uuid.uuid4().hex}"


async def test_upload_of_exactly_five_mib_succeeds(settings: Settings) -> None:
    """A presigned POST accepts a file of exactly the policy's maximum size, byte for byte."""
    key = _key()
    content = secrets.token_bytes(FIVE_MIB)
    status, text = await _upload(_presigned_post(settings, key), content)
    assert status == 204, text
    head = make_s3_client(settings).head_object(Bucket=settings.s3_bucket, Key=key)
    assert head["ContentLength"] == FIVE_MIB
    assert head["ContentType"] == "image/png"


async def test_upload_one_byte_over_the_limit_is_refused(settings: Settings) -> None:
    """content-length-range refuses 5 MiB + 1 byte and stores nothing."""
    key = _key()
    status, text = await _upload(_presigned_post(settings, key), b"x" * (FIVE_MIB + 1))
    assert status == 400
    assert "EntityTooLarge" in text
    listed = make_s3_client(settings).list_objects_v2(Bucket=settings.s3_bucket, Prefix=key)
    assert listed.get("KeyCount", 0) == 0


async def test_expired_policy_is_refused(settings: Settings) -> None:
    """A policy whose expiration has passed is refused."""
    status, text = await _upload(_presigned_post(settings, _key(), expires=-5), b"x")
    assert status == 403
    assert "expired" in text.lower()


async def test_tampered_signature_is_refused(settings: Settings) -> None:
    """A POST whose signature does not match its policy is refused: the server checks SigV4."""
    post = _presigned_post(settings, _key())
    signature = post["fields"]["x-amz-signature"]
    post["fields"]["x-amz-signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
    status, text = await _upload(post, b"x")
    assert status == 403
    assert "SignatureDoesNotMatch" in text


async def test_policy_pins_the_key(settings: Settings) -> None:
    """Changing the object key in the form breaks the policy: uploads go where the server said."""
    post = _presigned_post(settings, _key())
    post["fields"]["key"] = _key()
    status, _text = await _upload(post, b"x")
    assert status == 403


@pytest.mark.parametrize("size", [1, 300_000])
async def test_presigned_get_returns_identical_bytes(settings: Settings, size: int) -> None:
    """A presigned GET returns exactly the uploaded bytes; an unsigned GET is refused."""
    key = _key()
    content = secrets.token_bytes(size)
    status, text = await _upload(_presigned_post(settings, key), content)
    assert status == 204, text
    url = make_s3_client(settings).generate_presigned_url(
        "get_object",
        Params={
            "Bucket": settings.s3_bucket,
            "Key": key,
            "ResponseContentDisposition": 'attachment; filename="photo.png"',
        },
        ExpiresIn=60,
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            assert resp.status == 200
            body = await resp.read()
            assert resp.headers["Content-Disposition"].startswith("attachment")
        async with session.get(url.split("?", 1)[0]) as unsigned:
            assert unsigned.status == 403
    assert hashlib.sha256(body).digest() == hashlib.sha256(content).digest()
