"""The media library: assets with names, tags and descriptions, ranked full-text search, use records.

Query words are OR-ed with prefix matching, so "black galaxy granite kitchen" finds "Black Galaxy granite"
even without the word kitchen, ranked below assets that match more words (``storage.repositories.assets``).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.clock import Clock
from core.errors import InvalidRequest, NotFound
from core.events import Broadcast, LocalBroadcast
from core.library.search import SearchCache, SearchKey, query_terms, text_words
from core.library.uses import USE_KINDS, UseRecorder
from core.media import NotAnImage, inspect_image
from storage.blobs import BlobStore
from storage.records import AssetRecord
from storage.repositories.assets import AssetRepository
from storage.repositories.library import LibraryRepository

#: The categories a person gives an asset; showme's own outputs carry ``generated``.
CATEGORIES = ("product", "marketing", "social", "presentation", "email", "agent")

__all__ = ["USE_KINDS", "AssetView", "Library", "SearchHit", "UseRecorder", "normalize_tags", "query_terms"]


@dataclass(frozen=True)
class AssetView:
    """A library asset as callers see it: ``kind`` image or video, ``url`` and ``thumb_url`` (a video's poster
    frame) under the media base URL, sizes in bytes and pixels, a video's ``duration_seconds``, ``file_path``
    on this machine's media store."""

    id: int
    account_id: int
    kind: str
    name: str
    description: str
    tags: list[str]
    category: str | None
    folder: str | None
    favorite: bool
    prompt: str | None
    model: str | None
    job_id: str | None
    mime: str
    size_bytes: int
    width: int | None
    height: int | None
    blob_key: str
    thumb_key: str | None
    url: str
    thumb_url: str | None
    file_path: str | None
    created_at: datetime
    duration_seconds: float | None = None
    folder_id: int | None = None
    alt_text: str = ""
    keywords: list[str] = field(default_factory=list)
    use_count: int = 0
    view_count: int = 0
    download_count: int = 0


@dataclass(frozen=True)
class SearchHit:
    """A search result; a higher ``rank`` is a better match."""

    asset: AssetView
    rank: float


def normalize_tags(tags: list[str] | str | None) -> str:
    """Tags as stored: lower-case, trimmed, de-duplicated, at most 64 characters each, comma-separated."""
    if tags is None:
        return ""
    items = tags.split(",") if isinstance(tags, str) else tags
    seen: list[str] = []
    for tag in items:
        cleaned = re.sub(r"\s+", " ", str(tag)).strip().lower()
        if cleaned and cleaned not in seen:
            seen.append(cleaned[:64])
    return ",".join(seen)


class Library:
    """Library assets of all accounts; every read is scoped to one account.

    Search results are cached (``core.library.search.SearchCache``) for ``cache_seconds``, answered stale for
    ``stale_seconds`` more while renewed, and forgotten at once when this process changes the account's
    library, and in other processes as soon as ``broadcast`` carries the change to them (Redis); without a
    shared broadcast, changes made by other processes show within ``cache_seconds + stale_seconds``.
    ``monotonic`` is the cache's time source (seconds).
    """

    def __init__(
        self,
        repository: AssetRepository,
        blobs: BlobStore,
        media_base_url: str,
        clock: Clock,
        *,
        cache_seconds: float = 0,
        stale_seconds: float = 0,
        monotonic: Callable[[], float] = time.monotonic,
        broadcast: Broadcast | None = None,
    ) -> None:
        self.repository = repository
        self.blobs = blobs
        self.media_base_url = media_base_url.rstrip("/")
        self.clock = clock
        self.cache_seconds = cache_seconds
        self._cache: SearchCache[list[SearchHit]] = SearchCache(cache_seconds, stale_seconds, monotonic=monotonic)
        self.broadcast = broadcast or LocalBroadcast()
        self.broadcast.on("library", self._changed_elsewhere)

    def invalidate(self, account_id: int, assets: Iterable[AssetRecord] | None = None, *, renew: bool = False) -> None:
        """Forget cached searches of ``account_id`` that ``assets`` (new or changed) can change: those with a
        term matching a word of their name, description, tags or prompt; all of them without ``assets``.
        ``renew``: keep answering them until their renewal ends (``SearchCache.invalidate``)."""
        words = None if assets is None else text_words(*(f"{a.name} {a.description} {a.tags} {a.prompt or ''}"
                                                        for a in assets))  # fmt: skip
        self._cache.invalidate(account_id, words, renew=renew)
        self.broadcast.send("library", {"account": account_id, "words": None if words is None else sorted(words),
                                        "renew": renew})  # fmt: skip

    def _changed_elsewhere(self, payload: dict[str, Any]) -> None:
        """Another process changed an account's library: forget what its change can change here too."""
        words = payload.get("words")
        self._cache.invalidate(int(payload["account"]), None if words is None else frozenset(words),
                               renew=bool(payload.get("renew")))  # fmt: skip

    def url_for(self, key: str) -> str:
        """The public URL of a stored blob."""
        return f"{self.media_base_url}/{key}"

    def view(self, asset: AssetRecord, *, with_path: bool = True) -> AssetView:
        """The caller's view of a stored asset (``file_path`` None without ``with_path``: listings)."""
        path = self.blobs.local_path(asset.blob_key) if with_path else None
        return AssetView(
            id=asset.id, account_id=asset.account_id, kind=asset.kind, name=asset.name,
            description=asset.description, tags=[t for t in asset.tags.split(",") if t], category=asset.category,
            folder=asset.folder, favorite=asset.favorite, prompt=asset.prompt, model=asset.model,
            job_id=asset.job_id, mime=asset.mime, size_bytes=asset.size_bytes, width=asset.width,
            height=asset.height, blob_key=asset.blob_key, thumb_key=asset.thumb_key, url=self.url_for(asset.blob_key),
            thumb_url=self.url_for(asset.thumb_key) if asset.thumb_key else None,
            file_path=str(path) if path else None, created_at=asset.created_at,
            duration_seconds=asset.duration_seconds, folder_id=asset.folder_id, alt_text=asset.alt_text,
            keywords=[k for k in asset.keywords.split(",") if k], use_count=asset.use_count,
            view_count=asset.view_count, download_count=asset.download_count,
        )  # fmt: skip

    async def import_image(
        self,
        account_id: int,
        data: bytes,
        *,
        name: str,
        description: str = "",
        tags: list[str] | str | None = None,
        category: str | None = None,
        folder: str | None = None,
        alt_text: str = "",
        thumbnail_pixels: int = 512,
    ) -> tuple[AssetView, bool]:
        """Add an uploaded or imported image (its bytes) to the account's library with a thumbnail.

        Returns:
            ``(asset, created)``; the same image imported again returns the existing asset with its
            metadata updated.

        ``folder`` is a folder path (``kitchens/granite``), made when missing; ``category`` one of
        ``CATEGORIES``.

        Raises:
            InvalidRequest: the bytes are not an image (field ``file``), ``name`` is empty, or ``category`` is
                not one of ``CATEGORIES``.
        """
        name = " ".join(name.split())[:255]
        if not name:
            raise InvalidRequest("name must not be empty", field="name")
        if category is not None and category not in CATEGORIES:
            raise InvalidRequest(f"category must be one of {', '.join(CATEGORIES)}", field="category")
        try:
            info = await asyncio.to_thread(inspect_image, data, thumbnail_pixels)
        except NotAnImage as err:
            raise InvalidRequest(f"file is not a WebP, PNG, JPEG or GIF image ({err})", field="file") from err
        blob = await self.blobs.put(data, info.ext)
        thumb = await self.blobs.put(info.thumbnail, ".webp", prefix="thumbs/")
        values: dict[str, Any] = {
            "account_id": account_id, "kind": "image", "blob_key": blob.key, "thumb_key": thumb.key,
            "mime": info.mime, "size_bytes": blob.size_bytes, "width": info.width, "height": info.height,
            "sha256": blob.sha256, "name": name, "description": description, "tags": normalize_tags(tags),
            "category": category, "folder_id": await self._folder_id(account_id, folder), "favorite": False,
            "use_count": 0, "view_count": 0, "alt_text": alt_text[:5000],
        }  # fmt: skip
        asset, created = await self.repository.add_or_update_upload(values, self.clock.now())
        # After the commit, so no search can cache the old library again; an update may also have changed
        # words searches matched before: then every search of the account is forgotten.
        self.invalidate(account_id, [asset] if created else None)
        return self.view(asset), created

    async def _folder_id(self, account_id: int, path: str | None) -> int | None:
        """The id of the folder at ``path`` (``a/b``, made when missing), None without one."""
        names = [n for n in (" ".join(part.split())[:120] for part in (path or "").split("/")) if n]
        if not names:
            return None
        folders = LibraryRepository(self.repository.db)
        return await folders.folder_for_path(account_id, names, self.clock.now())

    async def get(self, account_id: int, asset_id: int) -> AssetView:
        """The account's asset.

        Raises:
            NotFound: another account's or a missing asset.
        """
        asset = await self.repository.get(asset_id)
        if asset is None or asset.account_id != account_id:
            raise NotFound(f"asset {asset_id} does not exist")
        return self.view(asset)

    async def latest_image(self, account_id: int) -> AssetView | None:
        """The account's newest picture (generated, edited or uploaded), or None."""
        asset = await self.repository.latest(account_id, "image")
        return None if asset is None else self.view(asset)

    async def for_job(self, job_id: str) -> list[AssetView]:
        """The job's outputs in order."""
        return [self.view(a) for a in await self.repository.for_job(job_id)]

    async def search(self, account_id: int, query: str, limit: int = 10) -> list[SearchHit]:
        """Assets of ``account_id`` matching ``query``, best first (at most ``limit``).

        Ranks name above description above tags above prompt; ``[]`` when no word of the query matches.

        Raises:
            InvalidRequest: ``limit`` outside 1-100.
        """
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit must be between 1 and 100", field="limit")
        terms = query_terms(query)
        if not terms:
            return []
        key: SearchKey = (account_id, tuple(terms), limit)
        return await self._cache.get(key, lambda: self._search(account_id, terms, limit))

    async def _search(self, account_id: int, terms: list[str], limit: int) -> list[SearchHit]:
        found = await self.repository.search(account_id, terms, limit)
        return [SearchHit(self.view(asset), score) for asset, score in found]
