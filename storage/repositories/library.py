"""The managed library's SQL: filtered listing with keyset pagination, changing and deleting assets, folders,
single use records, downloads, and usage statistics.

Listing is one indexed query per page: ``ix_assets_account_*`` serve the folder, category, favorite, most-used
and name orders, ``ix_asset_tags_account_tag`` the tag filter, and the full-text index ``q``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    cast,
    column,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    table,
    text,
    tuple_,
    update,
)
from sqlalchemy import Date as SQLDate

from storage.db import Database
from storage.errors import DuplicateKey
from storage.models import Asset, AssetTag, AssetUse, Folder
from storage.records import AssetRecord, record
from storage.repositories import in_session
from storage.repositories.assets import POSTGRESQL_RANK, SQLITE_RANK, write_tags
from storage.repositories.folders import FolderQueries

SORTS = ("newest", "most_used", "name", "relevance")
_FTS = table("assets_fts", column("rowid"))
#: A listing's columns: every column ``AssetRecord`` names, and its folder's name (a plain Core select: building
#: ORM objects for a page of 50 costs more than the query).
#: In ``AssetRecord``'s field order, so a row is its positional arguments.
_LISTED = tuple(Folder.name.label("folder") if f.name == "folder" else Asset.__table__.c[f.name]
                for f in fields(AssetRecord))  # fmt: skip


def _listed(where: list[ColumnElement[bool]]) -> Select[Any]:
    """``SELECT`` the listing columns of the assets matching ``where`` (with their folder's name)."""
    return select(*_LISTED).outerjoin(Folder, Folder.id == Asset.folder_id).where(*where)


def _records(rows: Any) -> list[AssetRecord]:
    return [AssetRecord(*row) for row in rows]
#: Up to this many full-text matches (of every account) are read by id; more are filtered while the account's
#: index is walked in the sort's order (bench/README.md "Library listing").
FEW_MATCHES = 1000
_COUNT_MATCHES = text("SELECT count(*) FROM (SELECT 1 FROM assets_fts WHERE assets_fts MATCH :match LIMIT :few)")


@dataclass(frozen=True)
class AssetFilter:
    """What to list: one account's live assets, narrowed by each given field.

    ``folder_id`` 0 means assets in no folder; ``terms`` are full-text prefixes (letters and digits);
    ``asset_ids`` / ``folder_ids`` restrict to those (shared with a person); ``after`` is the keyset of the
    last row of the previous page (``(sort value, id)``) or ``(offset,)`` for relevance."""

    account_id: int
    kind: str | None = None
    category: str | None = None
    folder_id: int | None = None
    tag: str | None = None
    favorite: bool | None = None
    terms: tuple[str, ...] = ()
    asset_ids: tuple[int, ...] | None = None
    folder_ids: tuple[int, ...] | None = None
    sort: str = "newest"
    limit: int = 50
    after: tuple[Any, ...] | None = None


class LibraryRepository(FolderQueries):
    """Managed-library queries; every method is scoped to one account."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- listing ---------------------------------------------------------------------------------------------

    def _conditions(self, f: AssetFilter, few: bool = False) -> list[Any]:
        if not few:
            where: list[Any] = [Asset.account_id == f.account_id, Asset.deleted_at.is_(None)]
        else:
            # A few full-text matches: read them by id. SQLite's unary + keeps the planner off the account's
            # indexes, which would walk the whole account to find them.
            where = [text("+assets.account_id = :matched_account").bindparams(matched_account=f.account_id),
                     Asset.deleted_at.is_(None), self._matching(f.terms)]  # fmt: skip
        if f.kind is not None:
            where.append(Asset.kind == f.kind)
        if f.category is not None:
            where.append(Asset.category == f.category)
        if f.folder_id is not None:
            where.append(Asset.folder_id.is_(None) if f.folder_id == 0 else Asset.folder_id == f.folder_id)
        if f.favorite is not None:
            where.append(Asset.favorite.is_(f.favorite))
        if f.tag is not None and f.sort != "newest":  # newest: the listing is read from the tag's index instead
            where.append(exists().where(AssetTag.asset_id == Asset.id, AssetTag.tag == f.tag))
        if f.asset_ids is not None or f.folder_ids is not None:
            where.append(or_(Asset.id.in_(f.asset_ids or ()), Asset.folder_id.in_(f.folder_ids or ())))
        if f.terms and not few:
            where.append(self._matching(f.terms))
        return where

    def _matching(self, terms: tuple[str, ...]) -> Any:
        """Assets whose searchable text has every one of ``terms`` (as word prefixes)."""
        if self.db.is_sqlite:
            match = " AND ".join(f'"{t}"*' for t in terms)
            return Asset.id.in_(text("SELECT rowid FROM assets_fts WHERE assets_fts MATCH :match")
                                .bindparams(match=match))  # fmt: skip
        query = " & ".join(f"{t}:*" for t in terms)
        return text("assets.search_vector @@ to_tsquery('english', :tsquery)").bindparams(tsquery=query)

    def _plan(self, f: AssetFilter) -> str:
        """How SQLite reads the page: ``tag`` (the tag's index, newest first), ``text`` (the full-text index,
        newest first: without a narrow filter its matches come in id order, the order assets were added),
        ``probe`` (count the full-text matches, then read a few by id or walk the sort's index), ``index``
        (the account's index for the sort and a narrow filter; PostgreSQL's planner always chooses for
        itself)."""
        if f.sort == "newest" and f.tag is not None:
            return "tag"
        if not (self.db.is_sqlite and f.terms) or f.sort == "relevance":
            return "index"
        narrow = f.folder_id is not None or f.favorite or f.asset_ids is not None or f.folder_ids is not None
        if narrow:  # the folder's or favorites' index, each row checked against the matches
            return "index"
        return "text" if f.sort == "newest" else "probe"

    def _statement(self, f: AssetFilter, plan: str, few: bool = False) -> Select[Any]:
        """The page's ``SELECT``: ordered by the sort's key then id, after ``f.after``, ``f.limit + 1`` rows;
        ``few``: the full-text terms match at most ``FEW_MATCHES`` assets."""
        if plan == "text":
            match = " AND ".join(f'"{t}"*' for t in f.terms)
            stmt = _listed(self._conditions(replace(f, terms=()))).join(_FTS, _FTS.c.rowid == Asset.id)
            stmt = stmt.where(text("assets_fts MATCH :match").bindparams(match=match))
            if f.after is not None:
                stmt = stmt.where(Asset.id < f.after[1])
            return stmt.order_by(_FTS.c.rowid.desc()).limit(f.limit + 1)
        stmt = _listed(self._conditions(f, few))
        if f.sort == "relevance":  # every match ranked: slower than a filter (bench/README.md)
            if self.db.is_sqlite:
                match = " AND ".join(f'"{t}"*' for t in f.terms)
                stmt = stmt.join(_FTS, _FTS.c.rowid == Asset.id).where(
                    text("assets_fts MATCH :ranked").bindparams(ranked=match)
                )
                rank = text(SQLITE_RANK)
            else:
                query = " & ".join(f"{t}:*" for t in f.terms)
                rank = text(POSTGRESQL_RANK.replace(":tsquery", ":ranked") + " DESC").bindparams(ranked=query)
            offset = int(f.after[0]) if f.after else 0
            return stmt.order_by(rank, Asset.id.desc()).offset(offset).limit(f.limit + 1)
        if plan == "tag":
            # Walk the tag's index newest first (a few rows whatever the tag's size), then each asset by id.
            stmt = stmt.join(AssetTag, AssetTag.asset_id == Asset.id).where(
                AssetTag.account_id == f.account_id, AssetTag.tag == f.tag
            )
            key: Any = AssetTag.created_at
            ident: Any = AssetTag.asset_id
        else:
            key = {"newest": Asset.created_at, "most_used": Asset.use_count, "name": Asset.name}[f.sort]
            ident = Asset.id
        descending = f.sort != "name"
        if f.after is not None:
            after = tuple_(key, ident)
            stmt = stmt.where(after < tuple_(*f.after) if descending else after > tuple_(*f.after))
        order = (key.desc(), ident.desc()) if descending else (key, ident)
        return stmt.order_by(*order).limit(f.limit + 1)

    async def list_assets(self, f: AssetFilter) -> tuple[list[AssetRecord], tuple[Any, ...] | None]:
        """One page of assets and the keyset of the next page (None on the last page)."""
        plan = self._plan(f)
        async with self.db.connection() as conn:
            few = False
            if plan == "probe":
                match = " AND ".join(f'"{t}"*' for t in f.terms)
                few = (await conn.scalar(_COUNT_MATCHES, {"match": match, "few": FEW_MATCHES + 1}) or 0) <= FEW_MATCHES
            rows = _records(await conn.execute(self._statement(f, plan, few)))
        if len(rows) <= f.limit:
            return rows, None
        if f.sort == "relevance":
            return rows[: f.limit], ((int(f.after[0]) if f.after else 0) + f.limit,)
        last = rows[f.limit - 1]
        value = {"newest": last.created_at, "most_used": last.use_count, "name": last.name}[f.sort]
        return rows[: f.limit], (value, last.id)

    # -- changes ---------------------------------------------------------------------------------------------

    async def update(self, account_id: int, asset_id: int, values: dict[str, Any], now: datetime) -> AssetRecord | None:
        """Change the live asset's columns (``values``; ``tags`` comma-separated re-indexes its tags) in one
        transaction; None when the account has no such live asset. Raises ``DuplicateKey`` for a folder of
        another account."""
        async with self.db.write() as session:
            asset = await session.scalar(
                select(Asset).where(Asset.id == asset_id, Asset.account_id == account_id, Asset.deleted_at.is_(None))
            )
            if asset is None:
                return None
            if values.get("folder_id") and await self._foreign_folder(session, account_id, values["folder_id"]):
                raise DuplicateKey("folder_id")
            for column, value in values.items():
                setattr(asset, column, value)
            asset.updated_at = now
            await session.flush()
            await session.refresh(asset, ["folder_ref"])
            if "tags" in values:
                await in_session(session, write_tags, [(asset.id, account_id, asset.tags, asset.created_at)],
                                 replace=True)  # fmt: skip
            return record(AssetRecord, asset)

    @staticmethod
    async def _foreign_folder(session: Any, account_id: int, folder_id: int) -> bool:
        owner = await session.scalar(select(Folder.account_id).where(Folder.id == folder_id))
        return bool(owner != account_id)

    async def delete(self, account_id: int, asset_id: int, now: datetime) -> AssetRecord | None:
        """Hide the live asset from every read (one conditional update); None when there was none."""
        stmt = (
            update(Asset)
            .where(Asset.id == asset_id, Asset.account_id == account_id, Asset.deleted_at.is_(None))
            .values(deleted_at=now)
            .returning(*Asset.__table__.c)
        )
        async with self.db.write() as session:
            row = (await session.execute(stmt)).first()
        return None if row is None else record(AssetRecord, row)

    async def purge(self, deleted_before: datetime, limit: int = 500) -> list[str]:
        """Remove assets deleted before ``deleted_before`` (their uses and shares go with them) and return the
        blob keys (files and thumbnails) no remaining asset references: the caller deletes those blobs."""
        async with self.db.write() as session:
            gone = (await session.execute(
                select(Asset.id, Asset.blob_key, Asset.thumb_key)
                .where(Asset.deleted_at.is_not(None), Asset.deleted_at < deleted_before).limit(limit)
            )).all()  # fmt: skip
            if not gone:
                return []
            await session.execute(delete(Asset).where(Asset.id.in_([g.id for g in gone])))
            keys = {k for g in gone for k in (g.blob_key, g.thumb_key) if k}
            still = set(await session.scalars(select(Asset.blob_key).where(Asset.blob_key.in_(keys))))
            still |= set(await session.scalars(select(Asset.thumb_key).where(Asset.thumb_key.in_(keys))))
        return sorted(keys - still)

    # -- uses ------------------------------------------------------------------------------------------------

    async def add_use(self, values: dict[str, Any]) -> bool:
        """Record one use now (``values``: the ``asset_uses`` columns) and count it on the live asset, in one
        transaction (downloads on ``download_count``, views on ``view_count``, others on ``use_count``);
        False when the asset is not live."""
        counter = {"download": "download_count", "view": "view_count"}.get(values["kind"], "use_count")
        column = getattr(Asset, counter)
        bump = (
            update(Asset)
            .where(Asset.id == values["asset_id"], Asset.account_id == values["account_id"],
                   Asset.deleted_at.is_(None))
            .values({counter: column + values.get("count", 1)})
        )  # fmt: skip
        async with self.db.write() as session:
            if (await session.execute(bump)).rowcount != 1:  # type: ignore[attr-defined]
                return False  # not live
            await session.execute(insert(AssetUse).values(**values))
        return True

    async def uses_of(self, account_id: int, asset_id: int, limit: int) -> list[dict[str, Any]]:
        """The asset's newest ``limit`` use rows (agent, post and download; views are only counted)."""
        stmt = (
            select(AssetUse)
            .where(AssetUse.account_id == account_id, AssetUse.asset_id == asset_id, AssetUse.kind != "view")
            .order_by(AssetUse.created_at.desc(), AssetUse.id.desc())
            .limit(limit)
        )
        columns = ("kind", "count", "agent_id", "agent_name", "conversation_id", "platform", "post_id", "actor",
                   "created_at")  # fmt: skip
        async with self.db.read() as session:
            return [{c: getattr(u, c) for c in columns} for u in (await session.scalars(stmt)).all()]

    async def stats(self, account_id: int, since: datetime, until: datetime, top: int) -> dict[str, Any]:
        """Use figures of the account's live assets in ``[since, until)``: ``top_uses`` and ``top_agent`` as
        ``[(asset id, n)]`` (agent, post and download uses; agent uses only), ``per_day`` as
        ``[(day, kind, n)]`` (every kind, views included) and ``totals`` per kind."""
        live = and_(AssetUse.account_id == account_id, AssetUse.created_at >= since, AssetUse.created_at < until,
                    exists().where(Asset.id == AssetUse.asset_id, Asset.deleted_at.is_(None)))  # fmt: skip
        total = func.sum(AssetUse.count)
        day = cast(AssetUse.created_at, SQLDate) if not self.db.is_sqlite else func.date(AssetUse.created_at)

        def top_by(kinds: tuple[str, ...]) -> Any:
            return (
                select(AssetUse.asset_id, total).where(live, AssetUse.kind.in_(kinds))
                .group_by(AssetUse.asset_id).order_by(total.desc(), AssetUse.asset_id).limit(top)
            )  # fmt: skip

        async with self.db.read() as session:
            top_uses = (await session.execute(top_by(("agent", "post", "download")))).all()
            top_agent = (await session.execute(top_by(("agent",)))).all()
            per_day = (await session.execute(
                select(day, AssetUse.kind, total).where(live).group_by(day, AssetUse.kind).order_by(day, AssetUse.kind)
            )).all()  # fmt: skip
        totals: dict[str, int] = {}
        for _, kind, n in per_day:
            totals[kind] = totals.get(kind, 0) + int(n)
        return {
            "top_uses": [(a, int(n)) for a, n in top_uses],
            "top_agent": [(a, int(n)) for a, n in top_agent],
            "per_day": [(str(d), k, int(n)) for d, k, n in per_day],
            "totals": totals,
        }

    async def records(self, account_id: int, asset_ids: list[int]) -> dict[int, AssetRecord]:
        """The account's live assets among ``asset_ids``, by id."""
        stmt = select(Asset).where(Asset.account_id == account_id, Asset.id.in_(asset_ids), Asset.deleted_at.is_(None))
        async with self.db.read() as session:
            return {a.id: record(AssetRecord, a) for a in (await session.scalars(stmt)).unique().all()}

    async def tags(self, account_id: int, limit: int = 200) -> list[tuple[str, int]]:
        """The account's tags with how many assets carry each, most used first."""
        n = func.count()
        stmt = (select(AssetTag.tag, n).where(AssetTag.account_id == account_id).group_by(AssetTag.tag)
                .order_by(n.desc(), AssetTag.tag).limit(limit))  # fmt: skip
        async with self.db.read() as session:
            return [(t, int(c)) for t, c in (await session.execute(stmt)).all()]
