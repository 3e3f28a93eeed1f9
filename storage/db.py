"""Database engine and transactions (SQLAlchemy 2 async; SQLite via aiosqlite, PostgreSQL via asyncpg).

SQLite runs in WAL mode with a 30 s busy timeout. Because pysqlite's implicit transactions make
read-then-write races surface as "database is locked" (SQLAlchemy docs, "Transactions with SQLite and the
sqlite3 driver"), we turn them off and emit our own ``BEGIN``: ``BEGIN IMMEDIATE`` for write transactions
(they take the write lock up front), plain ``BEGIN`` for reads, so readers never block each other.
On PostgreSQL, write transactions lock the account row they touch (``SELECT … FOR UPDATE``) instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

_IMMEDIATE = "showme_immediate"


def _prepare_sqlite_path(url: str) -> None:
    parsed = make_url(url)
    database = parsed.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def create_engine(url: str, *, echo: bool = False, connect_args: dict[str, Any] | None = None) -> AsyncEngine:
    """Create the async engine for ``url`` (``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://…``).

    Creates the parent directory of a SQLite file. Raises ``sqlalchemy.exc.ArgumentError`` for a URL
    SQLAlchemy cannot parse.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        _prepare_sqlite_path(url)
        engine = create_async_engine(
            url, echo=echo, connect_args={"timeout": 30, **(connect_args or {})}, pool_size=10, max_overflow=10
        )

        @event.listens_for(engine.sync_engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine.sync_engine, "begin")
        def _on_begin(conn: Any) -> None:
            immediate = conn.get_execution_options().get(_IMMEDIATE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_async_engine(
        url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True, connect_args=connect_args or {}
    )


class Database:
    """The engine plus two session factories: ``read()`` and ``write()``.

    Both are async context managers yielding an ``AsyncSession`` inside one transaction, committed on exit
    and rolled back on an exception.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer. Waiters inside SQLite's busy handler poll with sleeps of up to 100 ms and are
        # not woken when the lock frees, so under load the hand-over, not the work, dominates. Writers of this
        # process queue here instead (FIFO, woken at once, holding no pool connection); other processes
        # sharing the file still meet the busy timeout.
        self._sqlite_writer = asyncio.Lock() if self.is_sqlite else None
        self._reader = async_sessionmaker(engine, expire_on_commit=False)
        self._writer = async_sessionmaker(engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read transaction (plain ``BEGIN`` on SQLite: does not take the write lock)."""
        async with self._reader() as session, session.begin():
            yield session

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A read-then-write transaction (``BEGIN IMMEDIATE`` on SQLite). Do not open another write
        transaction inside it (on SQLite that would wait for itself)."""
        if self._sqlite_writer is None:
            async with self._writer() as session, session.begin():
                yield session
            return
        async with self._sqlite_writer, self._writer() as session, session.begin():
            yield session

    async def ping(self) -> None:
        """Run ``SELECT 1``; raises the driver's error when the database is unreachable."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        await self.engine.dispose()
