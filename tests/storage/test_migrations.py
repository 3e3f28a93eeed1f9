"""Migrations: idempotent, and the migrated schema matches the SQLAlchemy models on both databases."""

from __future__ import annotations

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
