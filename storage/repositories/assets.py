"""The media library's SQL: assets, ranked full-text search, use records.

Search uses SQLite FTS5 (bm25 with column weights name 10, tags and keywords 8, description and alt text 3,
prompt 2) or PostgreSQL ``tsvector`` (``ts_rank_cd``), both created by migrations 0001 and 0008. Terms are
OR-ed with prefix matching; favorites and much-used assets rank a little higher (``BOOST``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, insert, select, text, update

from storage.db import Database
from storage.models import Asset, AssetTag, AssetUse
from storage.records import AssetRecord, record
from storage.repositories import in_session

_BUMP_USES = update(Asset).where(Asset.id == bindparam("asset")).values(use_count=Asset.use_count + bindparam("n"))
_BUMP_VIEWS = update(Asset).where(Asset.id == bindparam("asset")).values(view_count=Asset.view_count + bindparam("n"))
#: Favorites and much-used assets rank a little higher: the text score times 1.10 for a favorite, times 1.05,
#: 1.10 or 1.15 more from 1, 10 or 100 uses (at most 1.25 in all), so a clearly better text match still wins.
BOOST = (
    "(1 + CASE WHEN assets.favorite THEN 0.1 ELSE 0 END + CASE WHEN assets.use_count >= 100 THEN 0.15 "
    "WHEN assets.use_count >= 10 THEN 0.1 WHEN assets.use_count >= 1 THEN 0.05 ELSE 0 END)"
)
#: FTS5 bm25 column weights, in the table's column order: name, description, tags, prompt, keywords, alt text.
SQLITE_RANK = f"bm25(assets_fts, 10.0, 3.0, 8.0, 2.0, 8.0, 3.0) * {BOOST}"
POSTGRESQL_RANK = f"ts_rank_cd(assets.search_vector, to_tsquery('english', :tsquery)) * {BOOST}"
_SQLITE_SEARCH = text(
    f"SELECT assets_fts.rowid AS id, {SQLITE_RANK} AS rank "
    "FROM assets_fts JOIN assets ON assets.id = assets_fts.rowid "
    "WHERE assets_fts MATCH :match AND assets.account_id = :account AND assets.deleted_at IS NULL "
    "ORDER BY rank, assets.id DESC LIMIT :limit"
)
_POSTGRESQL_SEARCH = text(
    f"SELECT assets.id, {POSTGRESQL_RANK} AS rank FROM assets "
    "WHERE account_id = :account AND deleted_at IS NULL AND search_vector @@ to_tsquery('english', :tsquery) "
    "ORDER BY rank DESC, id DESC LIMIT :limit"
)


def write_tags(conn: Connection, assets: list[tuple[int, int, str, datetime]], *, replace: bool = False) -> None:
    """Index the tags of ``assets`` (``(asset id, account id, comma-separated tags, created at)`` each) in
    ``asset_tags``; ``replace`` drops their old tags first."""
    if replace and assets:
        conn.execute(delete(AssetTag).where(AssetTag.asset_id.in_([a[0] for a in assets])))
    rows = [
        {"asset_id": asset_id, "account_id": account_id, "tag": tag, "created_at": created_at}
        for asset_id, account_id, tags, created_at in assets
        for tag in dict.fromkeys(t[:64] for t in tags.split(",") if t)
    ]
    if rows:
        conn.execute(insert(AssetTag), rows)


def _write_uses(conn: Connection, rows: list[dict[str, Any]], counts: dict[tuple[int, bool], int]) -> None:
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


class AssetRepository:
    """Assets of every account; callers scope each read to one account."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def add_or_update_upload(self, values: dict[str, Any], now: datetime) -> tuple[AssetRecord, bool]:
        """Insert an uploaded asset (``values``: its columns but the times), or, when the account already has
        an upload with the same ``sha256`` (not deleted), update that one's name, description, tags, category
        and folder.

        Returns:
            ``(asset, created)``.
        """
        async with self.db.write() as session:
            existing = await session.scalar(
                select(Asset).where(
                    Asset.account_id == values["account_id"], Asset.sha256 == values["sha256"],
                    Asset.job_id.is_(None), Asset.deleted_at.is_(None),
                )
            )  # fmt: skip
            if existing is not None:
                for column in ("name", "description", "tags", "category", "folder_id"):
                    setattr(existing, column, values[column])
                existing.updated_at = now
                asset = existing
            else:
                asset = Asset(created_at=now, updated_at=now, **values)
                session.add(asset)
            await session.flush()
            await session.refresh(asset, ["folder_ref"])
            await in_session(session, write_tags, [(asset.id, asset.account_id, asset.tags, asset.created_at)],
                             replace=True)  # fmt: skip
            return record(AssetRecord, asset), existing is None

    async def add_many(self, rows: list[dict[str, Any]], now: datetime) -> None:
        """Insert assets (``rows``: column values each, ``created_at`` defaulting to ``now``) and index their
        tags, in one transaction."""
        stmt = insert(Asset).returning(Asset.id, Asset.account_id, Asset.tags, Asset.created_at)
        async with self.db.write() as session:
            made = (await session.execute(stmt, [{"created_at": now, "updated_at": now, **row} for row in rows])).all()
            await in_session(session, write_tags, [(r.id, r.account_id, r.tags, r.created_at) for r in made])

    async def get(self, asset_id: int) -> AssetRecord | None:
        """The asset, or None."""
        async with self.db.read() as session:
            asset = await session.get(Asset, asset_id)
        return None if asset is None or asset.deleted_at is not None else record(AssetRecord, asset)

    async def latest(self, account_id: int, kind: str) -> AssetRecord | None:
        """The account's newest asset of ``kind`` (``image`` or ``video``), or None."""
        stmt = (
            select(Asset)
            .where(Asset.account_id == account_id, Asset.kind == kind, Asset.deleted_at.is_(None))
            .order_by(Asset.created_at.desc(), Asset.id.desc())
            .limit(1)
        )
        async with self.db.read() as session:
            asset = await session.scalar(stmt)
        return None if asset is None else record(AssetRecord, asset)

    async def for_job(self, job_id: str) -> list[AssetRecord]:
        """The job's assets in output order."""
        stmt = select(Asset).where(Asset.job_id == job_id, Asset.deleted_at.is_(None)).order_by(Asset.output_index)
        async with self.db.read() as session:
            return [record(AssetRecord, a) for a in (await session.scalars(stmt)).all()]

    async def search(self, account_id: int, terms: list[str], limit: int) -> list[tuple[AssetRecord, float]]:
        """The account's assets matching any of ``terms`` (prefixes; letters and digits only), best first:
        ``[(asset, score), …]``, at most ``limit``; a higher score is a better match."""
        async with self.db.read() as session:
            if self.db.is_sqlite:
                match = " OR ".join(f'"{t}"*' for t in terms)
                rows = await session.execute(_SQLITE_SEARCH, {"match": match, "account": account_id, "limit": limit})
                scores = {r.id: -float(r.rank) for r in rows.all()}
            else:
                tsquery = " | ".join(f"{t}:*" for t in terms)
                params = {"tsquery": tsquery, "account": account_id, "limit": limit}
                scores = {r.id: float(r.rank) for r in (await session.execute(_POSTGRESQL_SEARCH, params)).all()}
            if not scores:
                return []
            assets = {a.id: a for a in (await session.scalars(select(Asset).where(Asset.id.in_(scores)))).all()}
        return [(record(AssetRecord, assets[i]), scores[i]) for i in scores if i in assets]

    async def write_uses(self, rows: list[dict[str, Any]], counts: dict[tuple[int, bool], int]) -> None:
        """Insert ``asset_uses`` rows and add ``counts`` (``(asset id, is a view) → n``) to the assets'
        counters, in one transaction; uses of deleted assets are dropped."""
        await self.db.run_write(_write_uses, rows, counts)

    async def conversation_uses(
        self, account_id: int, conversation_id: str, limit: int
    ) -> list[tuple[AssetRecord, datetime]]:
        """The newest ``limit`` library assets an agent showed in the conversation, with when, newest first."""
        stmt = (
            select(Asset, AssetUse.created_at)
            .join(AssetUse, AssetUse.asset_id == Asset.id)
            .where(
                AssetUse.account_id == account_id,
                AssetUse.conversation_id == conversation_id,
                AssetUse.kind == "agent",
                Asset.deleted_at.is_(None),
            )
            .order_by(AssetUse.created_at.desc())
            .limit(limit)
        )
        async with self.db.read() as session:
            rows = (await session.execute(stmt)).all()
        return [(record(AssetRecord, asset), at) for asset, at in rows]
