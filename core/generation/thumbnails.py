"""Thumbnails of finished jobs' images: made off the time-to-screen path, at the lowest CPU priority."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor

from core.media import lowest_cpu_priority, make_thumbnails
from storage.blobs import BlobStore
from storage.repositories.jobs import JobRepository

log = logging.getLogger(__name__)


class Thumbnailer:
    """Queues finished images and makes their WebP thumbnails in batches, in one worker (a process, or a
    thread with ``worker="thread"``), then records their keys in one write.

    A burst of jobs finishes together: its thumbnails wait while any job is between its prediction's end and
    its answer (``busy``), at most ``max_defer_seconds``, since the callers of those jobs are waiting and the
    thumbnails' owner is not.

    Args:
        jobs: where the thumbnail keys are recorded.
        blobs: where thumbnails are stored (``thumbs/`` keys).
        pixels: the longer side of a thumbnail at most.
        worker: ``process`` or ``thread``.
    """

    max_defer_seconds = 2.0
    batch_size = 32

    def __init__(self, jobs: JobRepository, blobs: BlobStore, pixels: int, worker: str) -> None:
        self.jobs = jobs
        self.blobs = blobs
        self.pixels = pixels
        self.executor: Executor = (
            ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=lowest_cpu_priority)
            if worker == "process"
            else ThreadPoolExecutor(1, "thumbnails", initializer=lowest_cpu_priority)
        )
        self._queue: list[tuple[str, int, bytes]] = []  # (job id, output index, image bytes)
        self._task: asyncio.Task[None] | None = None
        self._busy_jobs = 0
        self._quiet = asyncio.Event()
        self._quiet.set()

    def start(self) -> None:
        """Start the worker now rather than at the first finished job (a process imports for about half a
        second at normal priority before its initializer lowers it)."""
        self.executor.submit(os.getpid)

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Mark a job between its prediction's end and its answer: thumbnails wait meanwhile."""
        self._busy_jobs += 1
        self._quiet.clear()
        try:
            yield
        finally:
            self._busy_jobs -= 1
            if not self._busy_jobs:
                self._quiet.set()

    def add(self, images: list[tuple[str, int, bytes]]) -> asyncio.Task[None] | None:
        """Queue ``(job id, output index, image bytes)``; returns the worker task when this started it."""
        self._queue.extend(images)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="thumbnails")
            return self._task
        return None

    async def _run(self) -> None:
        while self._queue:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.max_defer_seconds):
                    await self._quiet.wait()
            batch = self._queue[: self.batch_size]
            del self._queue[: self.batch_size]
            rows = await self._make(batch)
            if rows:
                try:
                    await self.jobs.set_thumbnails(rows)
                except Exception:
                    log.exception("could not record %d thumbnails; the full images are used instead", len(rows))

    async def _make(self, batch: list[tuple[str, int, bytes]]) -> list[dict[str, object]]:
        loop = asyncio.get_running_loop()
        try:
            images = [data for _, _, data in batch]
            thumbs = await loop.run_in_executor(self.executor, make_thumbnails, images, self.pixels)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("thumbnails for %d images failed; the full images are used instead", len(batch))
            return []
        rows: list[dict[str, object]] = []
        for (job_id, index, _), thumb in zip(batch, thumbs, strict=True):
            if isinstance(thumb, str):
                log.warning("no thumbnail for job %s output %d (%s); the full image is used", job_id, index, thumb)
                continue
            try:
                stored = await self.blobs.put(thumb, ".webp", prefix="thumbs/")
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("storing the thumbnail of job %s output %d failed", job_id, index)
                continue
            rows.append({"job": job_id, "index": index, "thumb": stored.key})
        return rows

    def close(self) -> None:
        """Stop the worker without waiting for queued images."""
        self.executor.shutdown(wait=False, cancel_futures=True)
