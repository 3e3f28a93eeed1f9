"""Media blob stores. Keys are content-addressed: ``<sha256[:2]>/<sha256><ext>`` (``thumbs/…`` for thumbnails).

``LocalBlobStore`` (the default) writes under one directory with atomic renames, off the event loop.
``storage.s3.S3BlobStore`` keeps the same keys in an S3-compatible bucket (several replicas).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

#: Content types of the extensions blobs are stored with.
MEDIA_TYPES = {
    ".webp": "image/webp", ".png": "image/png", ".jpg": "image/jpeg", ".gif": "image/gif", ".mp4": "video/mp4",
    ".webm": "video/webm", ".zip": "application/zip",
}  # fmt: skip

_KEY = re.compile(r"^(thumbs/)?[0-9a-f]{2}/[0-9a-f]{64}\.[a-z0-9]{1,5}$")


class InvalidBlobKey(ValueError):
    """A key that is not one of ours (for instance ``../etc/passwd``)."""


def check_key(key: str) -> str:
    """Return ``key`` when it has the store's shape; raise ``InvalidBlobKey`` otherwise (no path tricks)."""
    if not _KEY.fullmatch(key):
        raise InvalidBlobKey(f"not a media key: {key!r}")
    return key


def content_key(data: bytes, ext: str, *, prefix: str = "") -> tuple[str, str]:
    """Return ``(key, sha256 hex)`` for ``data``; ``ext`` like ``.webp``."""
    digest = hashlib.sha256(data).hexdigest()
    return f"{prefix}{digest[:2]}/{digest}{ext.lower()}", digest


def incoming_path(directory: Path, ext: str) -> Path:
    """A new, empty file under ``<directory>/.incoming`` with extension ``ext`` (like ``.mp4``), for a file being
    written before it is stored."""
    incoming = directory / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=incoming, suffix=ext.lower())
    os.close(fd)
    return Path(name)


@dataclass(frozen=True)
class StoredBlob:
    key: str
    sha256: str
    size_bytes: int


class BlobStore(Protocol):
    async def put(self, data: bytes, ext: str, *, prefix: str = "") -> StoredBlob:
        """Store ``data`` (bytes) under its content key (``ext`` like ``.webp``, ``prefix`` like ``thumbs/``)."""
        ...

    async def get(self, key: str) -> bytes:
        """The blob's bytes; raises ``FileNotFoundError``."""
        ...

    async def exists(self, key: str) -> bool:
        """True when the blob is stored."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the blob (nothing happens when it is absent); raises ``InvalidBlobKey``."""
        ...

    def local_path(self, key: str) -> Path | None:
        """Where the blob lives on this machine, None when it lives elsewhere (a bucket); raises
        ``InvalidBlobKey`` for a key not of ours."""
        ...

    async def local_file(self, key: str) -> Path:
        """A file on this machine holding the blob (fetched once into a local cache when it lives elsewhere);
        raises ``FileNotFoundError`` or ``InvalidBlobKey``."""
        ...

    async def ping(self) -> None:
        """Raise when the store cannot be reached (readiness)."""
        ...

    def temp_path(self, ext: str) -> Path:
        """A new, unused path on this machine for a file that ``put_file`` will take (``ext`` like ``.mp4``)."""
        ...

    async def put_file(self, path: Path, sha256: str, ext: str, *, prefix: str = "") -> StoredBlob:
        """Store the file at ``path`` (from ``temp_path``; its SHA-256 hex already known) under its content key
        and remove it from ``path``."""
        ...


class LocalBlobStore:
    """Blobs as files under ``root``. Writing the same content twice is a no-op returning the same key."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()

    def local_path(self, key: str) -> Path:
        """The file for ``key``; raises ``InvalidBlobKey`` for a malformed key."""
        return self.root / check_key(key)

    def _write(self, key: str, data: bytes) -> None:
        path = self.local_path(key)
        if path.exists() and path.stat().st_size == len(data):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def temp_path(self, ext: str) -> Path:
        """A new path under ``<root>/.incoming`` (the same file system as the blobs, so ``put_file`` renames)."""
        return incoming_path(self.root, ext)

    def _move(self, path: Path, sha256: str, ext: str, prefix: str) -> StoredBlob:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise InvalidBlobKey(f"not a SHA-256: {sha256!r}")
        key = check_key(f"{prefix}{sha256[:2]}/{sha256}{ext.lower()}")
        target = self.local_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        size = path.stat().st_size
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(path, target)
        return StoredBlob(key=key, sha256=sha256, size_bytes=size)

    async def put_file(self, path: Path, sha256: str, ext: str, *, prefix: str = "") -> StoredBlob:
        """Move the file at ``path`` (from ``temp_path``, with SHA-256 ``sha256``) into place atomically; its key,
        digest and size in bytes. The same content stored twice keeps one file."""
        return await asyncio.to_thread(self._move, path, sha256, ext, prefix)

    def _put(self, data: bytes, ext: str, prefix: str) -> StoredBlob:
        key, digest = content_key(data, ext, prefix=prefix)
        self._write(key, data)
        return StoredBlob(key=key, sha256=digest, size_bytes=len(data))

    async def put(self, data: bytes, ext: str, *, prefix: str = "") -> StoredBlob:
        """Store ``data`` (bytes) atomically; returns its key, digest and size in bytes. The digest is taken
        in the worker thread too (hashlib lets go of the GIL), so hashing never holds the event loop."""
        return await asyncio.to_thread(self._put, data, ext, prefix)

    async def get(self, key: str) -> bytes:
        """The blob's bytes; raises ``FileNotFoundError`` when absent."""
        return await asyncio.to_thread(self.local_path(key).read_bytes)

    async def exists(self, key: str) -> bool:
        """True when the blob is stored."""
        return await asyncio.to_thread(self.local_path(key).exists)

    async def delete(self, key: str) -> None:
        """Remove the blob's file (nothing happens when it is absent)."""
        await asyncio.to_thread(self.local_path(key).unlink, missing_ok=True)

    async def local_file(self, key: str) -> Path:
        """The blob's file; raises ``FileNotFoundError`` when absent."""
        path = self.local_path(key)
        if not await asyncio.to_thread(path.is_file):
            raise FileNotFoundError(key)
        return path

    async def ping(self) -> None:
        """Raise ``OSError`` when the media directory cannot be created or is not writable."""

        def check() -> None:
            self.root.mkdir(parents=True, exist_ok=True)
            if not os.access(self.root, os.W_OK):
                raise PermissionError(f"{self.root} is not writable")

        await asyncio.to_thread(check)
