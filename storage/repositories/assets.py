"""The media library's SQL: assets, ranked full-text search, use records.

Search uses SQLite FTS5 (bm25 with column weights name 10, tags 3, description 8, prompt 2) or PostgreSQL
``tsvector`` (``ts_rank_cd``), both created by the initial migration. Terms are OR-ed with prefix matching;
ties go to favorites, then much-used assets, then the newest.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, text, update

from storage.db import Database
from storage.models import Asset, AssetUse
from storage.records import AssetRecord, record

_BUMP_USES = update(Asset).where(Asset.id == bindparam("asset")).values(use_count=Asset.use_count + bindparam("n"))
_BUMP_VIEWS = update(Asset).where(Asset.id == bindparam("asset")).values(view_count=Asset.view_count + bindparam("n"))
_SQLITE_SEARCH = text(
    "SELECT assets_fts.rowid AS id, bm25(assets_fts, 10.0, 3.0, 8.0, 2.0) AS rank "
    "FROM assets_fts JOIN assets ON assets.id = assets_fts.rowid "
    "WHERE assets_fts MATCH :match AND assets.account_id = :account "
    "ORDER BY rank, assets.favorite DESC, assets.use_count DESC, assets.id DESC "
    "LIMIT :limit"
)
_POSTGRESQL_SEARCH = text(
    "SELECT id, ts_rank_cd(search_vector, q) AS rank "
    "FROM assets, to_tsquery('english', :tsquery) AS q "
    "WHERE account_id = :account AND search_vector @@ q "
    "ORDER BY rank DESC, favorite DESC, use_count DESC, id DESC LIMIT :limit"
)


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
        an upload with the same ``sha256``, update that one's name, description, tags, category and folder.

        Returns:
            ``(asset, created)``.
        """
        async with self.db.write() as session:
            existing = await session.scalar(
                select(Asset).where(
                    Asset.account_id == values["account_id"], Asset.sha256 == values["sha256"], Asset.job_id.is_(None)
                )
            )
            if existing is not None:
                for column in ("name", "description", "tags", "category", "folder"):
                    setattr(existing, column, values[column])
                existing.updated_at = now
                await session.flush()
                return record(AssetRecord, existing), False
            asset = Asset(created_at=now, updated_at=now, **values)
            session.add(asset)
            await session.flush()
            return record(AssetRecord, asset), True

    async def add_many(self, rows: list[dict[str, Any]], now: datetime) -> None:
        """Insert assets (``rows``: column values each) in one transaction."""
        async with self.db.write() as session:
            await session.execute(insert(Asset), [{"created_at": now, "updated_at": now, **row} for row in rows])

    async def get(self, asset_id: int) -> AssetRecord | None:
        """The asset, or None."""
        async with self.db.read() as session:
            asset = await session.get(Asset, asset_id)
        return None if asset is None else record(AssetRecord, asset)

    async def latest(self, account_id: int, kind: str) -> AssetRecord | None:
        """The account's newest asset of ``kind`` (``image`` or ``video``), or None."""
        stmt = (
            select(Asset)
            .where(Asset.account_id == account_id, Asset.kind == kind)
            .order_by(Asset.created_at.desc(), Asset.id.desc())
            .limit(1)
        )
        async with self.db.read() as session:
            asset = await session.scalar(stmt)
        return None if asset is None else record(AssetRecord, asset)

    async def for_job(self, job_id: str) -> list[AssetRecord]:
        """The job's assets in output order."""
        stmt = select(Asset).where(Asset.job_id == job_id).order_by(Asset.output_index)
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
            )
            .order_by(AssetUse.created_at.desc())
            .limit(limit)
        )
        async with self.db.read() as session:
            rows = (await session.execute(stmt)).all()
        return [(record(AssetRecord, asset), at) for asset, at in rows]
