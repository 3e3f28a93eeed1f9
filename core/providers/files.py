"""Large output files (videos) fetched straight to disk, outside the event loop.

Receiving a 50 MB body on the event loop costs it thousands of read callbacks. So a video is fetched by a
worker thread with a blocking HTTP client (httpx), hashed and written as it arrives; socket reads, hashing and
writes all let go of the GIL, and the loop only awaits the result: size and SHA-256. The pool has as many
threads as downloads may run at once (``generation.concurrent_video_downloads``). Threads rather than
processes: a spawned process imports the whole server again, which costs more CPU than the downloads it runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from core.providers import OutputReadError, SavedFile

#: Bytes read and written at a time.
CHUNK_BYTES = 1024 * 1024


def fetch_to_file(
    client: httpx.Client, url: str, path: str, timeout: float, bytes_per_second: float | None = None
) -> tuple[int, str]:
    """In a worker thread: GET ``url`` into ``path`` within ``timeout`` seconds, at most ``bytes_per_second``
    (None: as fast as it comes); ``(size in bytes, sha256)``.

    Raises:
        OutputReadError: the request failed, answered an error status, or took longer than ``timeout``.
    """
    started = time.monotonic()
    deadline = started + timeout
    digest = hashlib.sha256()
    size = 0
    try:
        with client.stream("GET", url) as response, open(path, "wb") as fh:
            response.raise_for_status()
            for chunk in response.iter_bytes(CHUNK_BYTES):
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
                now = time.monotonic()
                if now > deadline:
                    raise OutputReadError(f"the download took longer than {timeout:g} s")
                if bytes_per_second and size / bytes_per_second > now - started:
                    time.sleep(min(size / bytes_per_second - (now - started), max(0.0, deadline - now)))
    except httpx.HTTPError as err:
        raise OutputReadError(f"{type(err).__name__}: {err}") from err
    return size, digest.hexdigest()


class DownloadPool:
    """Worker threads that fetch large outputs to disk (``fetch_to_file``) with one shared HTTP client
    (certificates from the system, or ``SSL_CERT_FILE``).

    Args:
        workers: downloads at once; more wait their turn.
        megabytes_per_second: the pool's bandwidth, shared by its downloads (None: unlimited). Downloads are
            background work; left unlimited on a small machine they take the CPU that tool calls need.
    """

    def __init__(self, workers: int = 2, megabytes_per_second: float | None = None) -> None:
        self.workers = workers
        self._rate = megabytes_per_second * 1e6 / workers if megabytes_per_second else None
        self._pool = ThreadPoolExecutor(workers, "downloads")
        self._client: httpx.Client | None = None

    async def fetch(self, url: str, path: Path, timeout: float) -> SavedFile:
        """Fetch ``url`` into ``path`` in a worker thread, within ``timeout`` seconds.

        Raises:
            OutputReadError: the download failed (see ``fetch_to_file``).
        """
        if self._client is None:
            self._client = httpx.Client(
                verify=httpx.create_ssl_context(trust_env=True), timeout=httpx.Timeout(30.0, connect=10.0),
                follow_redirects=True,
            )  # fmt: skip
        loop = asyncio.get_running_loop()
        size, sha256 = await loop.run_in_executor(
            self._pool, fetch_to_file, self._client, url, str(path), timeout, self._rate
        )
        return SavedFile(size_bytes=size, sha256=sha256)

    def close(self) -> None:
        """Stop the worker threads without waiting for queued downloads, and close the HTTP client."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        if self._client is not None:
            self._client.close()
            self._client = None


def _write(path: Path, data: bytes) -> SavedFile:
    path.write_bytes(data)
    return SavedFile(size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())


async def save_bytes(data: bytes, path: Path) -> SavedFile:
    """Write an output that arrived inline (a data URI) to ``path``, off the event loop."""
    return await asyncio.to_thread(_write, path, data)
