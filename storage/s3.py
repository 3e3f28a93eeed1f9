"""Media blobs in an S3-compatible bucket (AWS S3, MinIO, Cloudflare R2) through boto3, run in threads.

Keys are the same content-addressed keys as ``LocalBlobStore``'s (``storage.blobs``), used as object keys, so
the same bytes are one object whichever replica stored them, and an object never changes once written.
Objects carry their content type and a year's ``Cache-Control``. The chat bots attach files from this
machine: ``local_file`` fetches an object once into ``local_cache`` (content-addressed, so never stale) and
removes the least recently used files past ``local_cache_bytes``.

boto3 clients are thread-safe (boto3 docs, "Multithreading or multiprocessing with clients"); one is shared
by every worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from storage.blobs import MEDIA_TYPES, InvalidBlobKey, StoredBlob, check_key, content_key, incoming_path

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
CHUNK_BYTES = 1 << 20


def _missing(err: ClientError) -> bool:
    return str(err.response.get("Error", {}).get("Code")) in _NOT_FOUND


class S3BlobStore:
    """Blobs as objects of ``bucket``. Storing the same content twice writes the same object.

    Args:
        bucket: the bucket's name.
        endpoint_url: the S3 API's URL (None: AWS's own for ``region``).
        region: the bucket's region (R2: ``auto``).
        addressing_style: ``auto``, ``path`` (MinIO) or ``virtual``.
        presign_seconds: lifetime of presigned URLs (seconds).
        local_cache: where ``local_file`` keeps fetched objects.
        local_cache_bytes: the least recently used cached files are removed past this size (bytes).
        client: a boto3 S3 client to use instead of one built from these and the environment's credentials.
    """

    def __init__(
        self,
        bucket: str,
        *,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        addressing_style: str = "auto",
        presign_seconds: int = 3600,
        local_cache: Path = Path("data/media-cache"),
        local_cache_bytes: int = 1 << 30,
        client: Any = None,
    ) -> None:
        self.bucket = bucket
        self.presign_seconds = presign_seconds
        self.local_cache_bytes = local_cache_bytes
        self.client = client or boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                s3={"addressing_style": addressing_style},
                signature_version="s3v4",  # R2 and newer AWS regions accept only SigV4
                retries={"max_attempts": 3, "mode": "standard"},
                max_pool_connections=32,
                connect_timeout=5,
                read_timeout=60,
            ),
        )
        self.cache = local_cache.expanduser().resolve()
        self._cache_lock = threading.Lock()

    def local_path(self, key: str) -> None:
        """None: blobs live in the bucket (``local_file`` fetches one); raises ``InvalidBlobKey``."""
        check_key(key)
        return None

    def temp_path(self, ext: str) -> Path:
        """A new path under ``<local_cache>/.incoming`` for a file ``put_file`` uploads and removes."""
        return incoming_path(self.cache, ext)

    def _extra(self, key: str) -> dict[str, str]:
        return {
            "ContentType": MEDIA_TYPES.get(Path(key).suffix, "application/octet-stream"),
            "CacheControl": "public, max-age=31536000, immutable",
        }

    def _put(self, data: bytes, ext: str, prefix: str) -> StoredBlob:
        key, digest = content_key(data, ext, prefix=prefix)
        check_key(key)
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **self._extra(key))
        return StoredBlob(key=key, sha256=digest, size_bytes=len(data))

    async def put(self, data: bytes, ext: str, *, prefix: str = "") -> StoredBlob:
        """Upload ``data`` (bytes) under its content key; its key, SHA-256 and size in bytes."""
        return await asyncio.to_thread(self._put, data, ext, prefix)

    def _put_file(self, path: Path, sha256: str, ext: str, prefix: str) -> StoredBlob:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise InvalidBlobKey(f"not a SHA-256: {sha256!r}")
        key = check_key(f"{prefix}{sha256[:2]}/{sha256}{ext.lower()}")
        size = path.stat().st_size
        self.client.upload_file(str(path), self.bucket, key, ExtraArgs=self._extra(key))  # multipart when large
        path.unlink(missing_ok=True)
        return StoredBlob(key=key, sha256=sha256, size_bytes=size)

    async def put_file(self, path: Path, sha256: str, ext: str, *, prefix: str = "") -> StoredBlob:
        """Upload the file at ``path`` (from ``temp_path``, SHA-256 ``sha256``) and remove it."""
        return await asyncio.to_thread(self._put_file, path, sha256, ext, prefix)

    def _get(self, key: str) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=check_key(key))["Body"]
        except ClientError as err:
            if _missing(err):
                raise FileNotFoundError(key) from err
            raise
        with contextlib.closing(body):
            data: bytes = body.read()
        return data

    async def get(self, key: str) -> bytes:
        """The object's bytes; raises ``FileNotFoundError`` when absent."""
        return await asyncio.to_thread(self._get, key)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as err:
            if _missing(err):
                return None
            raise
        return head

    async def exists(self, key: str) -> bool:
        """True when the object is stored."""
        return await asyncio.to_thread(self._head, key) is not None

    async def delete(self, key: str) -> None:
        """Remove the object and its local copy (S3 answers 204 for an absent key too)."""
        await asyncio.to_thread(self.client.delete_object, Bucket=self.bucket, Key=check_key(key))
        cached = self.cache / key
        await asyncio.to_thread(cached.unlink, missing_ok=True)

    async def size(self, key: str) -> int | None:
        """The object's size in bytes, None when absent."""
        head = await asyncio.to_thread(self._head, key)
        return None if head is None else int(head["ContentLength"])

    def presigned_url(self, key: str) -> str:
        """A URL that fetches the object for ``presign_seconds`` (signed here, no request made)."""
        url: str = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": check_key(key)}, ExpiresIn=self.presign_seconds
        )
        return url

    async def stream(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes in chunks of about 1 MiB, each read in a worker thread; raises
        ``FileNotFoundError`` before the first chunk when absent."""
        try:
            response = await asyncio.to_thread(self.client.get_object, Bucket=self.bucket, Key=check_key(key))
        except ClientError as err:
            if _missing(err):
                raise FileNotFoundError(key) from err
            raise
        body = response["Body"]
        try:
            while chunk := await asyncio.to_thread(body.read, CHUNK_BYTES):
                yield chunk
        finally:
            body.close()

    def _fetch(self, key: str) -> Path:
        target = self.cache / check_key(key)
        if target.is_file():
            os.utime(target)  # most recently used
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        os.close(fd)
        try:
            self.client.download_file(self.bucket, key, tmp)
            os.replace(tmp, target)
        except ClientError as err:
            Path(tmp).unlink(missing_ok=True)
            if _missing(err):
                raise FileNotFoundError(key) from err
            raise
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._evict()
        return target

    def _evict(self) -> None:
        """Remove the least recently used cached files while the cache holds more than its limit."""
        limit = self.local_cache_bytes
        with self._cache_lock:
            files = [(p.stat().st_mtime, p.stat().st_size, p) for p in self.cache.rglob("*")
                     if p.is_file() and ".incoming" not in p.parts and not p.name.startswith(".tmp-")]  # fmt: skip
            total = sum(size for _, size, _ in files)
            for _, size, path in sorted(files):
                if total <= limit:
                    break
                path.unlink(missing_ok=True)
                total -= size

    async def local_file(self, key: str) -> Path:
        """The object as a file of this machine's cache, downloaded the first time; raises
        ``FileNotFoundError`` when absent."""
        return await asyncio.to_thread(self._fetch, key)

    async def ping(self) -> None:
        """Raise botocore's error when the bucket cannot be reached or is not ours to read."""
        await asyncio.to_thread(self.client.head_bucket, Bucket=self.bucket)
