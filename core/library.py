"""The media library: assets with names, tags and descriptions, ranked full-text search, use records.

Search uses SQLite FTS5 (bm25, porter stemming) or PostgreSQL ``tsvector`` (``ts_rank_cd``), both created by
the initial migration. Query words are OR-ed with prefix matching, so "black galaxy granite kitchen" finds
"Black Galaxy granite" even without the word kitchen, ranked below assets that match more words.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from core.clock import Clock
from core.errors import InvalidRequest, NotFound
from storage.blobs import LocalBlobStore
from storage.db import Database
from storage.models import Asset, AssetUse

_STOPWORDS = {
    "a",
    "an",
    "the",
    "of",
    "in",
    "on",
    "with",
    "and",
    "or",
    "for",
    "to",
    "me",
    "show",
    "some",
    "any",
    "our",
    "your",
    "my",
    "is",
    "are",
    "it",
    "this",
    "that",
    "please",
    "image",
    "picture",
    "photo",
    "at",
    "by",
}
USE_KINDS = ("agent", "post", "download", "view")
_BUMP_USES = update(Asset).where(Asset.id == bindparam("asset")).values(use_count=Asset.use_count + bindparam("n"))
_BUMP_VIEWS = update(Asset).where(Asset.id == bindparam("asset")).values(view_count=Asset.view_count + bindparam("n"))


@dataclass(frozen=True)
class AssetView:
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


@dataclass(frozen=True)
class SearchHit:
    asset: AssetView
    rank: float


def normalize_tags(tags: list[str] | str | None) -> str:
    """Tags as stored: lower-case, trimmed, de-duplicated, comma-separated."""
    if tags is None:
        return ""
    items = tags.split(",") if isinstance(tags, str) else tags
    seen: list[str] = []
    for tag in items:
        cleaned = re.sub(r"\s+", " ", str(tag)).strip().lower()
        if cleaned and cleaned not in seen:
            seen.append(cleaned[:64])
    return ",".join(seen)


log = logging.getLogger(__name__)

_WORD = re.compile(r"[a-z0-9]+")


@functools.lru_cache(maxsize=4096)  # agents repeat the same few queries
def _terms(query: str, limit: int) -> tuple[str, ...]:
    words = [w for w in _WORD.findall(query.lower()) if w not in _STOPWORDS]
    return tuple(dict.fromkeys(words))[:limit]


def query_terms(query: str, limit: int = 12) -> list[str]:
    """The searchable words of ``query``: lower-case letters and digits, stop words dropped."""
    return list(_terms(query, limit))


_SearchKey = tuple[int, tuple[str, ...], int]  # account, terms, limit


class Library:
    """Library assets of all accounts; every read is scoped to one account.

    Search results are cached for ``cache_seconds`` (each entry for 80-100 % of it, so entries made together
    do not expire together), and forgotten at once when this process changes the account's library. For
    ``stale_seconds`` after an entry expires, a search for it still answers at once with the old result while
    one background search refreshes it (stale-while-revalidate, as RFC 5861 has it for HTTP caches), at most
    ``REFRESH_CONCURRENCY`` at a time. Changes made by other processes therefore show within
    ``cache_seconds + stale_seconds``. ``monotonic`` is the cache's time source (seconds)."""

    #: Background refreshes of expired search results running at once, at most.
    REFRESH_CONCURRENCY = 2

    def __init__(
        self,
        db: Database,
        blobs: LocalBlobStore,
        media_base_url: str,
        clock: Clock,
        *,
        cache_seconds: float = 0,
        stale_seconds: float = 0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.media_base_url = media_base_url.rstrip("/")
        self.clock = clock
        self.cache_seconds = cache_seconds
        self.stale_seconds = stale_seconds
        self._monotonic = monotonic
        # (account, terms, limit) → (monotonic expiry, hits). Voice agents ask for the same few products over and
        # over; a search costs milliseconds of bm25 over every matching asset (about 3.4 ms of SQLite over a
        # 10,000-asset library here, plus 1.8 ms of the event loop), a cache hit microseconds. Without the stale
        # window, the queries cached together by a burst of calls expired together, and the calls that found
        # them expired waited behind all their searches (bench (a): p99 134 ms in that round instead of 8).
        self._cache: dict[_SearchKey, tuple[float, list[SearchHit]]] = {}
        self._searches: dict[_SearchKey, asyncio.Future[list[SearchHit]]] = {}
        self._refresh_slots = asyncio.Semaphore(self.REFRESH_CONCURRENCY)
        self._generations: dict[int, int] = {}  # bumped by invalidate()

    def invalidate(self, account_id: int) -> None:
        """Forget cached searches of ``account_id`` (call after its library changed)."""
        self._generations[account_id] = self._generations.get(account_id, 0) + 1
        for key in [k for k in self._cache if k[0] == account_id]:
            del self._cache[key]

    def url_for(self, key: str) -> str:
        return f"{self.media_base_url}/{key}"

    def view(self, asset: Asset) -> AssetView:
        path = self.blobs.local_path(asset.blob_key)
        return AssetView(
            id=asset.id,
            account_id=asset.account_id,
            kind=asset.kind,
            name=asset.name,
            description=asset.description,
            tags=[t for t in asset.tags.split(",") if t],
            category=asset.category,
            folder=asset.folder,
            favorite=asset.favorite,
            prompt=asset.prompt,
            model=asset.model,
            job_id=asset.job_id,
            mime=asset.mime,
            size_bytes=asset.size_bytes,
            width=asset.width,
            height=asset.height,
            blob_key=asset.blob_key,
            thumb_key=asset.thumb_key,
            url=self.url_for(asset.blob_key),
            thumb_url=self.url_for(asset.thumb_key) if asset.thumb_key else None,
            file_path=str(path) if path else None,
            created_at=asset.created_at,
        )

    async def add(self, session: AsyncSession, **fields: Any) -> Asset:
        """Insert an asset inside the caller's transaction. ``tags`` may be a list or a comma string."""
        fields["tags"] = normalize_tags(fields.get("tags"))
        now = self.clock.now()
        asset = Asset(created_at=now, updated_at=now, **fields)
        session.add(asset)
        await session.flush()
        return asset

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
        thumbnail_pixels: int = 512,
    ) -> tuple[AssetView, bool]:
        """Add an uploaded or imported image (bytes) to the account's library with a thumbnail.

        Returns ``(asset, created)``; the same image imported again returns the existing asset with its
        metadata updated. Raises ``InvalidRequest`` (field ``file``) when the bytes are not an image and
        (field ``name``) for an empty name."""
        from core.media import NotAnImage, inspect_image

        name = " ".join(name.split())[:255]
        if not name:
            raise InvalidRequest("name must not be empty", field="name")
        try:
            info = await asyncio.to_thread(inspect_image, data, thumbnail_pixels)
        except NotAnImage as err:
            raise InvalidRequest(f"file is not a WebP, PNG, JPEG or GIF image ({err})", field="file") from err
        blob = await self.blobs.put(data, info.ext)
        thumb = await self.blobs.put(info.thumbnail, ".webp", prefix="thumbs/")
        async with self.db.write() as session:
            existing = await session.scalar(
                select(Asset).where(Asset.account_id == account_id, Asset.sha256 == blob.sha256, Asset.job_id.is_(None))
            )
            if existing is not None:
                existing.name, existing.description = name, description
                existing.tags = normalize_tags(tags)
                existing.category, existing.folder = category, folder
                existing.updated_at = self.clock.now()
                await session.flush()
                result = self.view(existing), False
            else:
                asset = await self.add(
                    session,
                    account_id=account_id,
                    kind="image",
                    blob_key=blob.key,
                    thumb_key=thumb.key,
                    mime=info.mime,
                    size_bytes=blob.size_bytes,
                    width=info.width,
                    height=info.height,
                    sha256=blob.sha256,
                    name=name,
                    description=description,
                    tags=tags,
                    category=category,
                    folder=folder,
                    favorite=False,
                    use_count=0,
                    view_count=0,
                )
                result = self.view(asset), True
        self.invalidate(account_id)  # after the commit, so no search can cache the old library again
        return result

    async def get(self, account_id: int, asset_id: int) -> AssetView:
        """The account's asset; raises ``NotFound`` for another account's or a missing asset."""
        async with self.db.read() as session:
            asset = await session.get(Asset, asset_id)
        if asset is None or asset.account_id != account_id:
            raise NotFound(f"asset {asset_id} does not exist")
        return self.view(asset)

    async def for_job(self, job_id: str) -> list[AssetView]:
        async with self.db.read() as session:
            rows = (
                await session.scalars(select(Asset).where(Asset.job_id == job_id).order_by(Asset.output_index))
            ).all()
        return [self.view(a) for a in rows]

    async def search(self, account_id: int, query: str, limit: int = 10) -> list[SearchHit]:
        """Assets of ``account_id`` matching ``query``, best first (at most ``limit``, 1–100).

        Ranks name and tags above description above prompt. Returns ``[]`` when no word of the query
        matches. Raises ``InvalidRequest`` (field ``limit``) for a limit outside 1–100.
        """
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit must be between 1 and 100", field="limit")
        terms = query_terms(query)
        if not terms:
            return []
        key: _SearchKey = (account_id, tuple(terms), limit)
        cached = self._cache.get(key)
        if cached is not None:
            now = self._monotonic()
            if now < cached[0]:
                return cached[1]
            if now < cached[0] + self.stale_seconds:
                if key not in self._searches:
                    self._start_search(key, terms, background=True)
                return cached[1]
        # Concurrent identical searches share one query: a burst of calls for a product not in the cache
        # would otherwise all run it at once.
        running = self._searches.get(key) or self._start_search(key, terms, background=False)
        return await asyncio.shield(running)

    def _start_search(self, key: _SearchKey, terms: list[str], *, background: bool) -> asyncio.Future[list[SearchHit]]:
        running = asyncio.ensure_future(self._search_and_cache(key, terms, background))
        self._searches[key] = running
        running.add_done_callback(lambda done: self._search_done(key, done, background))
        return running

    def _search_done(self, key: _SearchKey, done: asyncio.Future[list[SearchHit]], background: bool) -> None:
        self._searches.pop(key, None)
        if background and not done.cancelled() and done.exception() is not None:
            # Nobody awaits a refresh: the old result stays until its stale window ends, then a caller waits
            # for a new search (and gets its error, if it fails again).
            log.warning("refreshing the cached search %r failed: %r", key, done.exception())

    async def _search_and_cache(self, key: _SearchKey, terms: list[str], background: bool) -> list[SearchHit]:
        account_id, _, limit = key
        generation = self._generations.get(account_id, 0)
        async with self._refresh_slots if background else contextlib.nullcontext():
            hits = await self._search(account_id, terms, limit)
        # Not cached when the library changed meanwhile: the result may predate the change.
        if self.cache_seconds > 0 and self._generations.get(account_id, 0) == generation:
            if len(self._cache) > 50_000:
                self._cache.clear()
            self._cache[key] = (self._monotonic() + self.cache_seconds * (1 - 0.2 * random.random()), hits)
        return hits

    async def _search(self, account_id: int, terms: list[str], limit: int) -> list[SearchHit]:
        async with self.db.read() as session:
            if self.db.is_sqlite:
                match = " OR ".join(f'"{t}"*' for t in terms)
                rows = (
                    await session.execute(
                        text(
                            "SELECT assets_fts.rowid AS id, bm25(assets_fts, 10.0, 3.0, 8.0, 2.0) AS rank "
                            "FROM assets_fts JOIN assets ON assets.id = assets_fts.rowid "
                            "WHERE assets_fts MATCH :match AND assets.account_id = :account "
                            "ORDER BY rank, assets.favorite DESC, assets.use_count DESC, assets.id DESC "
                            "LIMIT :limit"
                        ),
                        {"match": match, "account": account_id, "limit": limit},
                    )
                ).all()
                scores = {r.id: -float(r.rank) for r in rows}
            else:
                tsquery = " | ".join(f"{t}:*" for t in terms)
                rows = (
                    await session.execute(
                        text(
                            "SELECT id, ts_rank_cd(search_vector, q) AS rank "
                            "FROM assets, to_tsquery('english', :tsquery) AS q "
                            "WHERE account_id = :account AND search_vector @@ q "
                            "ORDER BY rank DESC, favorite DESC, use_count DESC, id DESC LIMIT :limit"
                        ),
                        {"tsquery": tsquery, "account": account_id, "limit": limit},
                    )
                ).all()
                scores = {r.id: float(r.rank) for r in rows}
            if not scores:
                return []
            assets = {a.id: a for a in (await session.scalars(select(Asset).where(Asset.id.in_(scores)))).all()}
        return [SearchHit(self.view(assets[i]), scores[i]) for i in scores if i in assets]

    def file_path(self, key: str) -> Path:
        return self.blobs.local_path(key)


def _write_uses(conn: Connection, *, rows: list[dict[str, Any]], counts: dict[tuple[int, bool], int]) -> None:
    """Insert the use rows and bump each asset's counters (one executemany per counter). Uses of assets that
    no longer exist are dropped: their foreign key would fail the whole batch, again at every retry."""
    existing = set(conn.scalars(select(Asset.id).where(Asset.id.in_({r["asset_id"] for r in rows}))))
    rows = [r for r in rows if r["asset_id"] in existing]
    counts = {key: n for key, n in counts.items() if key[0] in existing}
    if rows:
        conn.execute(insert(AssetUse), rows)
    for is_view, statement in ((False, _BUMP_USES), (True, _BUMP_VIEWS)):
        bumps = [{"asset": a, "n": n} for (a, view), n in counts.items() if view is is_view]
        if bumps:
            conn.execute(statement, bumps)


_UseGroup = tuple[int, int, str, str | None, str | None]  # asset, account, kind, actor, conversation


class UseRecorder:
    """Asset uses written in batches: one transaction per ``interval`` seconds instead of one per use.

    Tool calls on the hot path (``show_product_image``) only count in memory, one entry per (asset, account,
    kind, actor, conversation) with the number of uses and the latest time; ``run()`` writes them in the
    background and ``flush()`` writes what is pending (also called at shutdown, so nothing is lost on a clean
    stop; a crash loses at most ``interval`` seconds of use counts, never money). Each entry becomes one
    ``asset_uses`` row carrying the count: an agent showing the same product again and again costs one row
    per interval. The interval is a second because the write's cost follows the number of distinct entries,
    and SQLite's executemany retakes the GIL from the event loop for every row."""

    def __init__(self, db: Database, clock: Clock, interval: float = 1.0) -> None:
        self.db = db
        self.clock = clock
        self.interval = interval
        self._pending: dict[_UseGroup, list[Any]] = {}  # group -> [count, latest time]
        self._pending_uses = 0

    @property
    def pending(self) -> int:
        """Uses counted but not written yet."""
        return self._pending_uses

    def add(
        self, account_id: int, asset_id: int, kind: str, *, actor: str | None = None, conversation_id: str | None = None
    ) -> None:
        """Count one use (``kind`` one of ``USE_KINDS``, else ``InvalidRequest`` naming ``kind``)."""
        if kind not in USE_KINDS:
            raise InvalidRequest(f"use kind must be one of {', '.join(USE_KINDS)}", field="kind")
        group = (asset_id, account_id, kind, actor, conversation_id)
        entry = self._pending.get(group)
        if entry is None:
            self._pending[group] = [1, self.clock.now()]
        else:
            entry[0] += 1
            entry[1] = self.clock.now()
        self._pending_uses += 1

    async def flush(self, chunk: int = 2000) -> int:
        """Write the uses pending now, at most ``chunk`` rows per transaction; returns how many uses were
        pending (those of assets deleted meanwhile are dropped). Uses added meanwhile wait for the next flush
        (looping until none are left would, under load, write continuously in tiny batches and keep the
        writer thread contending with the event loop for the GIL). Raises the database's error when a write
        fails; its uses and the rest stay pending for the next flush."""
        groups = list(self._pending.items())
        written = self._pending_uses
        self._pending, self._pending_uses = {}, 0
        for start in range(0, len(groups), chunk):
            rows: list[dict[str, Any]] = []
            counts: dict[tuple[int, bool], int] = {}
            for (asset_id, account_id, kind, actor, conversation_id), (count, at) in groups[start : start + chunk]:
                rows.append(
                    {
                        "asset_id": asset_id,
                        "account_id": account_id,
                        "kind": kind,
                        "actor": actor,
                        "conversation_id": conversation_id,
                        "created_at": at,
                        "count": count,
                    }
                )
                key = (asset_id, kind == "view")
                counts[key] = counts.get(key, 0) + count
            try:
                await self.db.run_write(functools.partial(_write_uses, rows=rows, counts=counts))
            except Exception:
                # Kept for the next flush (a locked or briefly unreachable database). Not on cancellation: the
                # writer may still commit the batch, and counting it twice is worse than a lost count.
                self._restore(groups[start:])
                raise
        return written

    def _restore(self, groups: list[tuple[_UseGroup, list[Any]]]) -> None:
        for group, (count, at) in groups:
            entry = self._pending.setdefault(group, [0, at])
            entry[0] += count
            entry[1] = max(entry[1], at)
            self._pending_uses += count

    async def run(self) -> None:
        """Flush every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.flush()
            except Exception:
                log.exception("writing asset uses failed")
