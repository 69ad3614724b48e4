"""S3 client factory: SigV4, path-style addressing, bounded timeouts.

Presigning is pure computation (no network), so the synchronous boto3 client is fine on the event
loop for presigned URLs; calls that do network I/O run in a worker thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chatcore.errors import Unavailable
from chatcore.settings import Settings

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client


def make_s3_client(settings: Settings) -> S3Client:
    """A SigV4 client for the configured endpoint; credentials come only from settings."""
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key,
        aws_secret_access_key=settings.s3_secret_key,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=5,
            read_timeout=15,
            retries={"max_attempts": 3, "mode": "standard"},
        ),
    )


def ensure_bucket(client: S3Client, bucket: str) -> bool:
    """Create the bucket when it is missing; True if it was created."""
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status != 404:
            raise Unavailable(f"s3: cannot check bucket {bucket}: {exc}") from exc
    except BotoCoreError as exc:
        raise Unavailable(f"s3: endpoint unreachable: {exc}") from exc
    client.create_bucket(Bucket=bucket)
    return True


def encode_post_form(
    fields: Mapping[str, str], content: bytes, *, filename: str, content_type: str
) -> tuple[bytes, str]:
    """A presigned-POST body shaped like a browser's form: fields first, the file last.

    Returns ``(body, content_type_header)``. Field parts carry no Content-Type header, as browsers
    send them: versitygw 1.7 derives the file's size from the request length and miscounts
    per-field headers (see docs/decisions.md).
    """
    boundary = secrets.token_hex(16)
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    safe_name = filename.replace('"', "").replace("\r", "").replace("\n", "")
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n".encode()
    )
    parts.append(content)
    parts.append(f"\r\n--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
