"""Migrations: idempotent, and the migrated schema matches the SQLAlchemy models on both databases."""

from __future__ import annotations

from datetime import datetime

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from storage import migrate
from storage.db import create_engine
from storage.models import Base


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return [
        d
        for d in compare_metadata(context, Base.metadata)
        # search machinery created by hand in the migration (FTS5 tables, the tsvector column and its index)
        if "fts" not in repr(d) and "search_vector" not in repr(d)
    ]


async def test_upgrade_is_idempotent_and_matches_models(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine)
        await migrate.upgrade(engine)
        assert await migrate.current_revision(engine) == migrate.head_revision()
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_0008_moves_folder_names_into_folders_and_tags_into_their_index(database_url: str) -> None:
    """Assets made before 0008 keep their folder (a folder of that name per account), their uses, and are found
    by tag and by text."""
    from sqlalchemy import text

    engine = create_engine(database_url)
    try:
        if engine.dialect.name == "postgresql":  # the fixture's database is at head already: start it again
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
        await migrate.upgrade(engine, "0007")
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO accounts (id, name, kind, preferences, created_at) VALUES "
                                    "(1, 'Acme', 'business', '{}', '2026-01-01'), (2, 'Other', 'business', '{}', "
                                    "'2026-01-01')"))  # fmt: skip
            for asset_id, account, folder, tags in ((1, 1, "granite", "black,granite"), (2, 1, "granite", "white"),
                                                    (3, 2, "granite", ""), (4, 1, None, "oak")):  # fmt: skip
                await conn.execute(text(
                    "INSERT INTO assets (id, account_id, kind, blob_key, mime, size_bytes, sha256, name, description, "
                    "tags, folder, favorite, use_count, view_count, created_at, updated_at) VALUES (:id, :account, "
                    "'image', :key, 'image/png', 1, :key, 'n', '', :tags, :folder, false, 0, 0, '2026-01-02', "
                    "'2026-01-02')"
                ), {"id": asset_id, "account": account, "key": f"{asset_id:064x}", "tags": tags, "folder": folder})
            await conn.execute(text("INSERT INTO asset_uses (asset_id, account_id, kind, created_at, count) VALUES "
                                    "(1, 1, 'agent', '2026-01-03', 4)"))  # fmt: skip
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            folders = (await conn.execute(text("SELECT account_id, name FROM folders ORDER BY account_id"))).all()
            assert [tuple(f) for f in folders] == [(1, "granite"), (2, "granite")]
            placed = (await conn.execute(text(
                "SELECT assets.id, folders.name FROM assets LEFT JOIN folders ON folders.id = assets.folder_id "
                "ORDER BY assets.id"
            ))).all()  # fmt: skip
            assert [tuple(p) for p in placed] == [(1, "granite"), (2, "granite"), (3, "granite"), (4, None)]
            tags = (await conn.execute(text("SELECT asset_id, tag FROM asset_tags ORDER BY asset_id, tag"))).all()
            assert [tuple(t) for t in tags] == [(1, "black"), (1, "granite"), (2, "white"), (4, "oak")]
            found = await conn.execute(text("SELECT rowid FROM assets_fts WHERE assets_fts MATCH 'oak'")) if (
                engine.dialect.name == "sqlite") else await conn.execute(text(
                "SELECT id FROM assets WHERE search_vector @@ to_tsquery('english', 'oak')"))  # fmt: skip
            assert [r[0] for r in found] == [4]
            uses = (await conn.execute(text("SELECT asset_id, count FROM asset_uses"))).all()
            assert [tuple(u) for u in uses] == [(1, 4)]  # kept: assets was altered in place, not rebuilt
    finally:
        await engine.dispose()


async def test_0008_goes_back_to_0007_and_up_again(database_url: str) -> None:
    """Downgraded, an asset's folder is its folder's name again and a deleted asset is gone with its uses; the
    live asset's uses stay; upgraded again, the schema matches the models."""
    from sqlalchemy import text

    engine = create_engine(database_url)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO accounts (id, name, kind, preferences, created_at) VALUES "
                                    "(1, 'Acme', 'business', '{}', '2026-01-01')"))  # fmt: skip
            await conn.execute(text("INSERT INTO folders (id, account_id, parent_key, name, created_at) VALUES "
                                    "(1, 1, 0, 'Kitchens', '2026-01-01')"))  # fmt: skip
            for asset_id, folder, deleted in ((1, 1, None), (2, None, datetime(2026, 1, 5))):
                await conn.execute(text(
                    "INSERT INTO assets (id, account_id, kind, blob_key, mime, size_bytes, sha256, name, description, "
                    "tags, folder_id, favorite, use_count, view_count, created_at, updated_at, alt_text, keywords, "
                    "download_count, deleted_at) VALUES (:id, 1, 'image', :key, 'image/png', 1, :key, 'oak', '', "
                    "'oak', :folder, false, 0, 0, '2026-01-02', '2026-01-02', '', '', 0, :deleted)"
                ), {"id": asset_id, "key": f"{asset_id:064x}", "folder": folder, "deleted": deleted})
                await conn.execute(text("INSERT INTO asset_uses (asset_id, account_id, kind, created_at, count) "
                                        "VALUES (:id, 1, 'agent', '2026-01-03', 1)"), {"id": asset_id})  # fmt: skip
            await conn.execute(text("INSERT INTO shares (account_id, asset_id, email, permission, created_at) "
                                    "VALUES (1, 1, 'dana@example.com', 'view', '2026-01-04')"))  # fmt: skip
        await migrate.downgrade(engine, "0007")
        assert await migrate.current_revision(engine) == "0007"
        async with engine.connect() as conn:
            assets = (await conn.execute(text("SELECT id, folder FROM assets ORDER BY id"))).all()
            assert [tuple(a) for a in assets] == [(1, "Kitchens")]
            uses = (await conn.execute(text("SELECT asset_id FROM asset_uses"))).all()
            assert [u[0] for u in uses] == [1]
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            again = (await conn.execute(text(
                "SELECT assets.id, folders.name FROM assets JOIN folders ON folders.id = assets.folder_id"
            ))).all()  # fmt: skip
            assert [tuple(a) for a in again] == [(1, "Kitchens")]
    finally:
        await engine.dispose()
