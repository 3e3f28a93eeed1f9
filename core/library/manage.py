"""Managing the library: listing with filters, changing and deleting assets, folders, recorded uses,
downloads and usage statistics (``LibraryManager``), on top of ``core.library.Library``.

Deleting an asset hides it from every read at once (one conditional update); ``purge`` removes assets deleted
more than ``purge_after_seconds`` ago and deletes the blobs no remaining asset references, so a request that
read the asset just before its deletion can still finish serving it.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.errors import Conflict, InvalidRequest, NotFound
from core.library import CATEGORIES, AssetView, Library, normalize_tags
from core.library.search import query_terms
from storage.errors import DuplicateKey
from storage.repositories.folders import FolderRecord
from storage.repositories.library import AssetFilter, LibraryRepository

log = logging.getLogger(__name__)

LISTED_CATEGORIES = (*CATEGORIES, "generated")
SORTS = ("newest", "most_used", "name", "relevance")
#: What ``POST /{id}/uses`` records: an agent showing it, a social post.
USE_KINDS = ("agent", "post")
EDITABLE = ("name", "description", "tags", "category", "folder_id", "favorite", "alt_text", "keywords")


@dataclass(frozen=True)
class Listing:
    """One page of assets; ``cursor`` asks for the next page (None on the last)."""

    assets: list[AssetView]
    cursor: str | None


@dataclass(frozen=True)
class FolderView:
    """A folder: ``parent_id`` None at the top; ``asset_count`` live assets directly inside."""

    id: int
    name: str
    parent_id: int | None
    asset_count: int
    created_at: datetime


def _folder_view(f: FolderRecord) -> FolderView:
    return FolderView(f.id, f.name, f.parent_id, f.asset_count, f.created_at)


def encode_cursor(sort: str, after: tuple[Any, ...]) -> str:
    """An opaque page cursor for ``after`` (a keyset or an offset) under ``sort``."""
    values = [v.isoformat() if isinstance(v, datetime) else v for v in after]
    return base64.urlsafe_b64encode(json.dumps([sort, values]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, sort: str) -> tuple[Any, ...]:
    """The keyset of ``cursor``; raises ``InvalidRequest`` (field ``cursor``) when it is not one of ours or was
    made for another sort."""
    try:
        made_for, values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if made_for != sort or not isinstance(values, list) or not 1 <= len(values) <= 2:
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidRequest("cursor is not valid for this listing; start again without it", field="cursor") from None
    if sort == "newest":
        try:
            values[0] = datetime.fromisoformat(values[0])
        except (TypeError, ValueError):
            raise InvalidRequest("cursor is not valid for this listing", field="cursor") from None
    return tuple(values)


class LibraryManager:
    """Listing and managing one account's library (API keys and signed-in members act through it; sharing
    is checked by ``core.teams``)."""

    def __init__(self, library: Library, repository: LibraryRepository, *, purge_after_seconds: float = 600) -> None:
        self.library = library
        self.repository = repository
        self.purge_after_seconds = purge_after_seconds

    async def list_assets(
        self,
        account_id: int,
        *,
        q: str = "",
        kind: str | None = None,
        category: str | None = None,
        folder_id: int | None = None,
        tag: str | None = None,
        favorite: bool | None = None,
        sort: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
        shared: tuple[tuple[int, ...], tuple[int, ...]] | None = None,
    ) -> Listing:
        """A page of the account's live assets matching every given filter: ``q`` words (full text, prefixes),
        ``kind`` image or video, ``category``, ``folder_id`` (0: in no folder), ``tag``, ``favorite``;
        ``sort`` newest (the default), most_used, name, or relevance (with ``q``: every match ranked, slower);
        at most ``limit`` (1-100). ``shared``: only these ``(asset ids, folder ids)``.

        Raises:
            InvalidRequest: a value outside its list, ``relevance`` without ``q``, or a bad ``cursor``.
        """
        terms = tuple(query_terms(q)) if q else ()
        sort = sort or "newest"
        if sort not in SORTS or (sort == "relevance" and not terms):
            raise InvalidRequest("sort must be newest, most_used, name, or relevance with q", field="sort")
        if category is not None and category not in LISTED_CATEGORIES:
            raise InvalidRequest(f"category must be one of {', '.join(LISTED_CATEGORIES)}", field="category")
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit must be between 1 and 100", field="limit")
        if q and not terms:
            return Listing([], None)
        f = AssetFilter(
            account_id, kind=kind, category=category, folder_id=folder_id,
            tag=normalize_tags([tag]) or None if tag else None, favorite=favorite, terms=terms, sort=sort,
            limit=limit, after=decode_cursor(cursor, sort) if cursor else None,
            asset_ids=shared[0] if shared else None, folder_ids=shared[1] if shared else None,
        )  # fmt: skip
        rows, after = await self.repository.list_assets(f)
        view = self.library.view
        return Listing([view(r, with_path=False) for r in rows], None if after is None else encode_cursor(sort, after))

    async def update(self, account_id: int, asset_id: int, changes: dict[str, Any]) -> AssetView:
        """Change the asset's ``EDITABLE`` fields (``tags`` a list or comma-separated; ``folder_id`` None takes
        it out of its folder).

        Raises:
            InvalidRequest: an unknown field or category, an empty name, or another account's folder.
            NotFound: no such live asset in the account.
        """
        values = self._values(changes)
        try:
            updated = await self.repository.update(account_id, asset_id, values, self.library.clock.now())
        except DuplicateKey:
            raise InvalidRequest("folder_id is not a folder of this account", field="folder_id") from None
        if updated is None:
            raise NotFound(f"asset {asset_id} does not exist")
        self.library.invalidate(account_id)
        return self.library.view(updated)

    @staticmethod
    def _values(changes: dict[str, Any]) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for field, value in changes.items():
            if field not in EDITABLE:
                raise InvalidRequest(f"{field} cannot be changed", field=field)
            if field in ("tags", "keywords"):
                value = normalize_tags(value)
            elif field == "name":
                value = " ".join(str(value).split())[:255]
                if not value:
                    raise InvalidRequest("name must not be empty", field="name")
            elif field == "category" and value is not None and value not in CATEGORIES:
                raise InvalidRequest(f"category must be one of {', '.join(CATEGORIES)}", field="category")
            elif field in ("description", "alt_text"):
                value = str(value or "")[:5000]
            values[field] = value
        return values

    async def delete(self, account_id: int, asset_id: int) -> None:
        """Hide the asset everywhere at once (its file goes with ``purge``).

        Raises:
            NotFound: no such live asset in the account.
        """
        deleted = await self.repository.delete(account_id, asset_id, self.library.clock.now())
        if deleted is None:
            raise NotFound(f"asset {asset_id} does not exist")
        self.library.invalidate(account_id)

    async def purge(self) -> int:
        """Remove assets deleted over ``purge_after_seconds`` ago and their unreferenced blobs; returns how
        many blobs were deleted."""
        before = self.library.clock.now() - timedelta(seconds=self.purge_after_seconds)
        removed = 0
        while keys := await self.repository.purge(before):
            for key in keys:
                await self.library.blobs.delete(key)
            removed += len(keys)
            if len(keys) < 500:
                break
        return removed

    # -- uses -------------------------------------------------------------------------------------------------

    async def record_use(self, account_id: int, asset_id: int, kind: str, details: dict[str, str | None]) -> None:
        """Record one use now: ``agent`` (``agent_id``, ``agent_name``, ``conversation_id``), ``post``
        (``platform``, ``post_id``), or ``download``/``view`` from showme itself.

        Raises:
            InvalidRequest: an unknown kind, or a post without platform or post id.
            NotFound: no such live asset in the account.
        """
        if kind not in (*USE_KINDS, "download", "view"):
            raise InvalidRequest(f"kind must be one of {', '.join(USE_KINDS)}", field="kind")
        if kind == "post":
            for required in ("platform", "post_id"):
                if not details.get(required):
                    raise InvalidRequest(f"{required} is required for a post", field=required)
        if kind == "agent" and not (details.get("agent_id") or details.get("agent_name")):
            raise InvalidRequest("agent_id or agent_name is required for an agent use", field="agent_id")
        values = {"asset_id": asset_id, "account_id": account_id, "kind": kind, "count": 1,
                  "created_at": self.library.clock.now(), **{k: v for k, v in details.items() if v}}  # fmt: skip
        if not await self.repository.add_use(values):
            raise NotFound(f"asset {asset_id} does not exist")

    async def uses(self, account_id: int, asset_id: int, limit: int = 50) -> list[dict[str, Any]]:
        """The asset's newest recorded uses (not views)."""
        return await self.repository.uses_of(account_id, asset_id, limit)

    async def stats(self, account_id: int, *, days: int = 30, top: int = 10) -> dict[str, Any]:
        """Usage over the last ``days`` (1-366) days: ``top_assets`` by uses (agent, post, download),
        ``top_agent_assets`` by agent references, ``per_day`` (``{"day", "kind", "count"}``) and ``totals`` by
        kind. Uses counted by tool calls are written first, so the figures include every recorded use.

        Raises:
            InvalidRequest: ``days`` or ``top`` (1-100) out of range.
        """
        if not 1 <= days <= 366:
            raise InvalidRequest("days must be between 1 and 366", field="days")
        if not 1 <= top <= 100:
            raise InvalidRequest("top must be between 1 and 100", field="top")
        now = self.library.clock.now()
        since = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
        raw = await self.repository.stats(account_id, since, now + timedelta(seconds=1), top)
        ids = [a for a, _ in raw["top_uses"]] + [a for a, _ in raw["top_agent"]]
        assets = await self.repository.records(account_id, ids)

        def ranked(pairs: list[tuple[int, int]]) -> list[dict[str, Any]]:
            return [{"asset": self._brief(assets[a]), "count": n} for a, n in pairs if a in assets]

        return {
            "since": since.isoformat(), "days": days, "totals": raw["totals"],
            "top_assets": ranked(raw["top_uses"]), "top_agent_assets": ranked(raw["top_agent"]),
            "per_day": [{"day": d, "kind": k, "count": n} for d, k, n in raw["per_day"]],
        }  # fmt: skip

    def _brief(self, record: Any) -> dict[str, Any]:
        view = self.library.view(record)
        return {"id": view.id, "name": view.name, "kind": view.kind, "thumb_url": view.thumb_url or view.url}

    async def tags(self, account_id: int) -> list[tuple[str, int]]:
        """The account's tags with their asset counts, most used first."""
        return await self.repository.tags(account_id)

    # -- folders ----------------------------------------------------------------------------------------------

    async def folders(self, account_id: int) -> list[FolderView]:
        """Every folder of the account, by name."""
        return [_folder_view(f) for f in await self.repository.folders(account_id)]

    async def _own_folder(self, account_id: int, folder_id: int | None, field: str) -> None:
        if folder_id is None:
            return
        found = await self.repository.folder(folder_id)
        if found is None or found.account_id != account_id:
            raise InvalidRequest(f"{field} is not a folder of this account", field=field)

    async def create_folder(self, account_id: int, name: str, parent_id: int | None = None) -> FolderView:
        """A new folder (``name`` 1-120 characters) at the top or in ``parent_id``.

        Raises:
            InvalidRequest: an empty name or another account's parent.
            Conflict: the parent already holds a folder of that name.
        """
        name = self._folder_name(name)
        await self._own_folder(account_id, parent_id, "parent_id")
        try:
            made = await self.repository.create_folder(account_id, name, parent_id, self.library.clock.now())
        except DuplicateKey:
            raise Conflict(f"a folder named {name!r} is already there") from None
        return _folder_view(made)

    @staticmethod
    def _folder_name(name: str) -> str:
        name = " ".join(str(name).split())
        if not 1 <= len(name) <= 120 or "/" in name:
            raise InvalidRequest("name must be 1-120 characters without '/'", field="name")
        return name

    async def change_folder(self, account_id: int, folder_id: int, changes: dict[str, Any]) -> FolderView:
        """Rename (``name``) or move (``parent_id``; None for the top) a folder.

        Raises:
            InvalidRequest: an unknown field, a bad name, or a parent that is the folder itself, inside it, or
                of another account.
            NotFound: no such folder in the account.
            Conflict: the parent already holds a folder of that name.
        """
        values: dict[str, Any] = {}
        for field, value in changes.items():
            if field == "name":
                values["name"] = self._folder_name(value)
            elif field == "parent_id":
                await self._own_folder(account_id, value, "parent_id")
                if value is not None and await self._inside(folder_id, value):
                    raise InvalidRequest("a folder cannot move into itself or its own subfolder", field="parent_id")
                values["parent_id"] = value
            else:
                raise InvalidRequest(f"{field} cannot be changed", field=field)
        try:
            changed = await self.repository.change_folder(account_id, folder_id, values)
        except DuplicateKey:
            raise Conflict("a folder of that name is already there") from None
        if changed is None:
            raise NotFound(f"folder {folder_id} does not exist")
        self.library.invalidate(account_id)
        return _folder_view(changed)

    async def _inside(self, folder_id: int, candidate: int) -> bool:
        """True when ``candidate`` is ``folder_id`` or one of its subfolders."""
        seen: set[int] = set()
        current: int | None = candidate
        while current is not None and current not in seen:
            if current == folder_id:
                return True
            seen.add(current)
            found = await self.repository.folder(current)
            current = found.parent_id if found else None
        return False

    async def delete_folder(self, account_id: int, folder_id: int) -> None:
        """Delete an empty folder.

        Raises:
            NotFound: no such folder in the account.
            Conflict: it still holds assets or folders.
        """
        outcome = await self.repository.delete_folder(account_id, folder_id)
        if outcome == "missing":
            raise NotFound(f"folder {folder_id} does not exist")
        if outcome == "not_empty":
            raise Conflict("the folder is not empty: move or delete what it holds first")
