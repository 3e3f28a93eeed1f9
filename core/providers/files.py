"""Output files written to disk as they arrive, so a large video never sits in memory whole."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

from core.providers import SavedFile

#: Bytes handed to the disk-writing thread at a time: small enough that no step holds the event loop for long.
CHUNK_BYTES = 256 * 1024


def _write(fh: IO[bytes], digest: Any, chunk: bytes) -> None:
    """Write and hash one chunk (in a worker thread: both let go of the GIL for large buffers)."""
    fh.write(chunk)
    digest.update(chunk)


async def save_chunks(chunks: AsyncIterator[bytes], path: Path) -> SavedFile:
    """Write ``chunks`` to ``path`` (created or truncated) as they arrive, hashing them on the way.

    Returns:
        The size in bytes and SHA-256 of what was written.

    Raises:
        OSError: the file cannot be written; whatever the iterator raises.
    """
    digest = hashlib.sha256()
    size = 0
    fh = await asyncio.to_thread(path.open, "wb")
    try:
        async for chunk in chunks:
            size += len(chunk)
            await asyncio.to_thread(_write, fh, digest, chunk)
    finally:
        await asyncio.to_thread(fh.close)
    return SavedFile(size_bytes=size, sha256=digest.hexdigest())


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    """``data`` as an async iterator of ``CHUNK_BYTES`` pieces (for outputs that arrive inline)."""
    for start in range(0, len(data), CHUNK_BYTES):
        yield data[start : start + CHUNK_BYTES]
