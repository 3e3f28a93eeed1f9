"""A finished prediction's outputs: downloaded (with retries), checked, stored in the media store.

Images are read into memory (they are small and their bytes go on to the thumbnailer); videos are fetched to
disk by the provider's download threads and probed there, so a large one never sits in memory whole.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from core.catalog_settings import VIDEO_KINDS
from core.config import Settings
from core.errors import (
    GenerationCanceled,
    InvalidRequest,
    ModelFailed,
    OutputDownloadFailed,
    ProviderError,
    ShowmeError,
)
from core.media import NotAnImage, probe_image
from core.providers import InputImage, OutputReadError, PredictionState, ProviderOutput, SavedFile
from core.video import NotAVideo, probe_video
from storage.blobs import BlobStore
from storage.records import JobRecord

log = logging.getLogger(__name__)

T = TypeVar("T")


class OutputStore:
    """Fetches and stores outputs, and reads the input image of an edit.

    Args:
        settings: ``generation`` (attempts, back-off, timeouts) and ``media`` (poster size) are read.
        blobs: the media store.
        sleep: the pause between download attempts (seconds).
    """

    def __init__(self, settings: Settings, blobs: BlobStore, sleep: Callable[[float], Awaitable[Any]]) -> None:
        self.settings = settings
        self.blobs = blobs
        self._sleep = sleep
        # At most as many video downloads as the provider has download threads; the others wait here, so their
        # time limit counts from when their download starts.
        self._video_slots = asyncio.Semaphore(settings.generation.concurrent_video_downloads)

    async def input_image(self, job: JobRecord) -> InputImage | None:
        """The stored input image of an edit or animation (None for jobs that start from a prompt).

        Raises:
            InvalidRequest: the input image is no longer stored (field ``input_asset_id``).
        """
        key = job.params.get("input_blob_key")
        if not key:
            return None
        try:
            data = await self.blobs.get(str(key))
        except FileNotFoundError as err:
            raise InvalidRequest("the input image is no longer stored", field="input_asset_id") from err
        return InputImage(data=data, filename=f"input{Path(str(key)).suffix}")

    async def collect(
        self, state: PredictionState, job: JobRecord
    ) -> list[tuple[int, tuple[dict[str, Any], bytes | None]]]:
        """The prediction's outputs stored: ``[(output index, (asset columns, image bytes or None for a
        video)), …]``, those that could be stored. Raises the prediction's failure, or the first download's
        when none was stored."""
        outputs = job.num_outputs
        store = self.store_video if job.kind in VIDEO_KINDS else self.store
        if state.status == "failed":
            raise ModelFailed(f"the model failed: {state.error or 'no error message given'}")
        if state.status == "canceled":
            raise GenerationCanceled("the prediction was canceled")
        files = list(state.outputs)[:outputs]
        if not files:
            raise ProviderError("the model finished without any output")
        stored: list[tuple[dict[str, Any], bytes | None] | BaseException]
        if len(files) == 1:  # the usual case, without a task per output
            try:
                stored = [await store(files[0])]
            except Exception as err:
                stored = [err]
        else:
            stored = await asyncio.gather(*(store(f) for f in files), return_exceptions=True)
        good = [(i, s) for i, s in enumerate(stored) if not isinstance(s, BaseException)]
        if not good:
            first = next(s for s in stored if isinstance(s, BaseException))
            if isinstance(first, ShowmeError):
                raise first
            raise OutputDownloadFailed(f"could not store the output: {first}")
        return good

    async def fetch(self, output: ProviderOutput, fetch: Callable[[], Awaitable[T]], timeout: float) -> T:
        """``fetch()`` the output (download or stream) with ``download_attempts`` tries of at most ``timeout``
        seconds each and the configured back-off; raises ``OutputDownloadFailed`` after the last."""
        cfg = self.settings.generation
        last: Exception | None = None
        for attempt in range(cfg.download_attempts):
            try:
                async with asyncio.timeout(timeout):
                    result = await fetch()
                if not result or (isinstance(result, SavedFile) and not result.size_bytes):
                    raise ValueError("empty response body")
                return result
            except (OutputReadError, httpx.HTTPError, TimeoutError, ValueError) as err:
                last = err
                log.warning("download of %s failed (attempt %d): %r", output.url, attempt + 1, err)
            if attempt + 1 < cfg.download_attempts:
                backoff = cfg.download_backoff_seconds
                await self._sleep(backoff[min(attempt, len(backoff) - 1)] if backoff else 0)
        raise OutputDownloadFailed(
            f"could not download the output after {cfg.download_attempts} attempts: {type(last).__name__}: {last}"
        )

    async def store_video(self, output: ProviderOutput) -> tuple[dict[str, Any], None]:
        """Stream a video output to disk, probe it, store it and its poster frame; its asset columns."""
        path = self.blobs.temp_path(".video")
        try:
            async with self._video_slots:
                timeout = self.settings.generation.video_download_timeout_seconds
                saved = await self.fetch(output, lambda: output.save(path, timeout), timeout + 5)
            try:
                info = await asyncio.to_thread(probe_video, path, self.settings.media.thumbnail_pixels)
            except NotAVideo as err:
                raise OutputDownloadFailed(f"the output at {output.url} is not a video: {err}") from err
            blob = await self.blobs.put_file(path, saved.sha256, info.ext)
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        poster = await self.blobs.put(info.poster, ".webp", prefix="thumbs/")
        meta = {
            "blob_key": blob.key, "sha256": blob.sha256, "size_bytes": blob.size_bytes, "mime": info.mime,
            "width": info.width, "height": info.height, "thumb_key": poster.key,
            "duration_seconds": info.duration_seconds,
        }  # fmt: skip
        return meta, None

    async def store(self, output: ProviderOutput) -> tuple[dict[str, Any], bytes]:
        """Download an image output, check its header and store it; its asset columns and bytes (for the
        thumbnailer). Raises ``OutputDownloadFailed`` when it cannot be fetched or is not an image."""
        data = await self.fetch(output, output.read, self.settings.generation.download_timeout_seconds)
        try:
            info = probe_image(data)  # header only, no pixel decoding
        except NotAnImage as err:
            raise OutputDownloadFailed(f"the output at {output.url} is not an image: {err}") from err
        blob = await self.blobs.put(data, info.ext)
        meta = {
            "blob_key": blob.key, "sha256": blob.sha256, "size_bytes": blob.size_bytes, "mime": info.mime,
            "width": info.width, "height": info.height, "thumb_key": None,
        }  # fmt: skip
        return meta, data
