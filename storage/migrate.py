"""Alembic migrations, run programmatically (``showme db upgrade``; the server and CLI upgrade by themselves)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config() -> Config:
    """Alembic's configuration for this package's migrations."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


def _downgrade(connection: Connection, revision: str) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.downgrade(cfg, revision)


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` on ``engine``'s database (idempotent).

    On SQLite, foreign keys are off while migrations run, as SQLite's own procedure for changing a table asks
    (sqlite.org/lang_altertable.html): a table rebuilt by a migration (a batch copy) drops the old one, which
    with foreign keys on would delete every row that cascades from it. The keys are checked afterwards.

    Raises:
        RuntimeError: after the migrations, a row of SQLite refers to a row that is not there.
    """
    await _migrate(engine, _upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Undo migrations down to ``revision`` (each migration's ``downgrade``), as ``upgrade`` runs them."""
    await _migrate(engine, _downgrade, revision)


async def _migrate(engine: AsyncEngine, step: Callable[[Connection, str], None], revision: str) -> None:
    if engine.dialect.name != "sqlite":
        async with engine.begin() as conn:
            await conn.run_sync(step, revision)
        return
    async with engine.connect() as conn:
        driver: Any = (await conn.get_raw_connection()).driver_connection  # aiosqlite's connection
        await driver.execute("PRAGMA foreign_keys=OFF")  # outside a transaction, or SQLite ignores it
        try:
            async with conn.begin():
                await conn.run_sync(step, revision)
            broken = list(await driver.execute_fetchall("PRAGMA foreign_key_check"))
        finally:
            await driver.execute("PRAGMA foreign_keys=ON")
    if broken:
        raise RuntimeError(f"after the migrations, {len(broken)} row(s) refer to missing rows: {broken[:5]}")


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's Alembic revision, or None for an empty database."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current)


def head_revision() -> str:
    """The newest migration's revision id."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head
