"""Attachment bytes in S3, behind a narrow interface: presign, inspect, read, delete.

Presigning is pure computation and runs on the event loop. Every call that does network I/O runs
the thread-safe boto3 client in a worker thread (``asyncio.to_thread``), so a slow S3 server never
blocks the service. S3 failures become ``Unavailable`` (503); a missing object is ``None``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from chatcore.errors import Unavailable

if TYPE_CHECKING:
    from types_boto3_s3 import S3Client

_MISSING = {"404", "NoSuchKey", "NotFound"}
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PresignedPost:
    url: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class StoredObject:
    size: int
    content_type: str


class ObjectStore(Protocol):
    def presign_post(
        self, key: str, *, content_type: str, max_size: int, expires_s: int
    ) -> PresignedPost: ...

    def presign_get(
        self, key: str, *, content_type: str, disposition: str, expires_s: int
    ) -> str: ...

    async def head(self, key: str) -> StoredObject | None: ...

    async def read(self, key: str, *, max_bytes: int) -> bytes | None: ...

    async def put(self, key: str, data: bytes, *, content_type: str) -> None: ...

    async def delete(self, key: str) -> None: ...


def _is_missing(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code", "")) in _MISSING or status == 404


class S3ObjectStore:
    """``client`` does the I/O; ``signer`` presigns for the endpoint clients reach (which may be
    another host name than the one the service uses: SigV4 signs the host)."""

    def __init__(self, client: S3Client, bucket: str, *, signer: S3Client | None = None) -> None:
        self._client = client
        self._signer = signer if signer is not None else client
        self._bucket = bucket

    def presign_post(
        self, key: str, *, content_type: str, max_size: int, expires_s: int
    ) -> PresignedPost:
        # boto3 adds the bucket and the exact key to the policy's conditions; we pin the exact
        # Content-Type and the size range. The declared size is the ceiling: content-length-range
        # cannot say "exactly", so completion checks the stored size again.
        post: dict[str, Any] = self._signer.generate_presigned_post(
            self._bucket,
            key,
            Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_size]],
            ExpiresIn=expires_s,
        )
        return PresignedPost(
            url=str(post["url"]), fields={k: str(v) for k, v in post["fields"].items()}
        )

    def presign_get(self, key: str, *, content_type: str, disposition: str, expires_s: int) -> str:
        return str(
            self._signer.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self._bucket,
                    "Key": key,
                    "ResponseContentDisposition": disposition,
                    "ResponseContentType": content_type,
                },
                ExpiresIn=expires_s,
            )
        )

    async def head(self, key: str) -> StoredObject | None:
        def call() -> StoredObject | None:
            try:
                found = self._client.head_object(Bucket=self._bucket, Key=key)
            except ClientError as exc:
                if _is_missing(exc):
                    return None
                raise
            return StoredObject(int(found["ContentLength"]), str(found.get("ContentType", "")))

        return await self._run(call)

    async def read(self, key: str, *, max_bytes: int) -> bytes | None:
        def call() -> bytes | None:
            try:
                found = self._client.get_object(Bucket=self._bucket, Key=key)
            except ClientError as exc:
                if _is_missing(exc):
                    return None
                raise
            with found["Body"] as body:
                # Never more than the limit in memory, whatever the object grew to meanwhile.
                return body.read(max_bytes + 1)

        return await self._run(call)

    async def put(self, key: str, data: bytes, *, content_type: str) -> None:
        def call() -> None:
            self._client.put_object(
                Bucket=self._bucket, Key=key, Body=data, ContentType=content_type
            )

        await self._run(call)

    async def delete(self, key: str) -> None:
        def call() -> None:
            # S3 deletes are idempotent: a missing key is not an error.
            self._client.delete_object(Bucket=self._bucket, Key=key)

        await self._run(call)

    @staticmethod
    async def _run(call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except (BotoCoreError, ClientError) as exc:
            raise Unavailable(f"s3: {type(exc).__name__}") from exc
