"""Database engine and transactions (SQLAlchemy 2 async; SQLite via aiosqlite, PostgreSQL via asyncpg).

SQLite runs in WAL mode with a 30 s busy timeout. Because pysqlite's implicit transactions make
read-then-write races surface as "database is locked" (SQLAlchemy docs, "Transactions with SQLite and the
sqlite3 driver"), we turn them off and emit our own ``BEGIN``: ``BEGIN IMMEDIATE`` for write transactions
(they take the write lock up front), plain ``BEGIN`` for reads, so readers never block each other.
On PostgreSQL, write transactions lock the account row they touch (``SELECT … FOR UPDATE``) instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import pickle
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage.group_commit import WriterClient, WriterStopped

__all__ = ["Database", "WriterStopped", "create_engine", "sqlite_pragmas"]

T = TypeVar("T")

_IMMEDIATE = "showme_immediate"


def create_engine(url: str, *, echo: bool = False, connect_args: dict[str, Any] | None = None) -> AsyncEngine:
    """Create the async engine for ``url`` (``sqlite+aiosqlite:///path`` or ``postgresql+asyncpg://…``).

    Creates the parent directory of a SQLite file.

    Raises:
        sqlalchemy.exc.ArgumentError: SQLAlchemy cannot parse ``url``.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(
            url, echo=echo, connect_args={"timeout": 30, **(connect_args or {})}, pool_size=10, max_overflow=10
        )
        sqlite_pragmas(engine.sync_engine)
        return engine
    return create_async_engine(
        url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True, connect_args=connect_args or {}
    )


def sqlite_pragmas(engine: Engine, *, writer: bool = False) -> None:
    """WAL, foreign keys, a 30 s busy timeout, and our own ``BEGIN``: ``BEGIN IMMEDIATE`` for write
    transactions (every transaction of a ``writer`` engine), plain ``BEGIN`` otherwise."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = writer or conn.get_execution_options().get(_IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _writer_url(async_engine: AsyncEngine) -> str | None:
    """The URL the writer process connects to: the same SQLite file through pysqlite, or the same PostgreSQL
    database; None for in-memory SQLite, which a second connection would not share."""
    url = async_engine.url
    if async_engine.dialect.name != "sqlite":
        return url.render_as_string(hide_password=False)
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return None
    return url.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)


def _apply(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any], conn: Any) -> T:
    """``fn(conn, *args, **kwargs)``: a write operation as the writer process calls it (``op(conn)``)."""
    return fn(conn, *args, **kwargs)


class Database:
    """The engine, read and write sessions, and ``run_write`` for writes that are transactions of their own.

    Args:
        engine: from ``create_engine``.
        writer_process: run ``run_write`` operations in the writer process (``storage.writer``), batched
            into group commits; False runs each in this process. In-memory SQLite always runs here.
    """

    def __init__(self, engine: AsyncEngine, *, writer_process: bool = True) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer. Waiters inside SQLite's busy handler poll with sleeps of up to 100 ms and are
        # not woken when the lock frees: writers of this process queue here instead (FIFO, woken at once,
        # holding no pool connection); other processes sharing the file still meet the busy timeout.
        self._sqlite_writer = asyncio.Lock() if self.is_sqlite else None
        url = _writer_url(engine) if writer_process else None
        self._writer = (
            WriterClient(url, sqlite=self.is_sqlite, echo=engine.echo is True, lock=self._sqlite_writer)
            if url is not None
            else None
        )
        self._write_engine = engine.execution_options(**{_IMMEDIATE: True})
        self._reader_sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._writer_sessions = async_sessionmaker(self._write_engine, expire_on_commit=False)

    @property
    def writer_pid(self) -> int | None:
        """The writer process's id while one runs (None without one)."""
        return self._writer.pid if self._writer is not None else None

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read transaction (plain ``BEGIN`` on SQLite: does not take the write lock)."""
        async with self._reader_sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection for a read of one statement: no ORM session (a page of rows built by a session costs
        more than its query on SQLite)."""
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A read-then-write transaction (``BEGIN IMMEDIATE`` on SQLite), committed on exit and rolled back on
        an exception. Do not open another write transaction inside it (on SQLite it would wait for itself)."""
        async with self._sqlite_writer or contextlib.nullcontext(), self._writer_sessions() as session, session.begin():
            yield session

    async def run_write(self, fn: Callable[..., T], /, *args: Any, account: int | None = None, **kwargs: Any) -> T:
        """Run ``fn(connection, *args, **kwargs)`` in a write transaction; its result once committed.

        ``fn`` is a module-level function of a synchronous ``Connection`` (Core statements); ``account`` is the
        account whose rows it locks, when there is one. In the writer process it shares a transaction with the
        operations that arrived with it (``storage.batch``): it may run twice and must have no effect outside
        the connection; an operation that raises is rolled back alone and its caller gets the exception.
        Cancelling the caller does not withdraw a queued operation.

        Raises:
            TypeError: ``fn`` or its arguments do not pickle (writer process only).
            WriterStopped: the writer process ended during the batch (whether it committed is unknown).
        """
        if self._writer is None:
            async with self._sqlite_writer or contextlib.nullcontext(), self._write_engine.begin() as conn:
                return await conn.run_sync(fn, *args, **kwargs)
        op = functools.partial(_apply, fn, args, kwargs)
        try:
            data = pickle.dumps(op, pickle.HIGHEST_PROTOCOL)
        except Exception as err:
            raise TypeError(f"run_write needs a module-level function and arguments that pickle: {err}") from err
        result: T = await self._writer.submit(data, account)
        return result

    def start_writer(self) -> None:
        """Start the writer process now rather than at the first write; nothing to do without one."""
        if self._writer is not None:
            self._writer.start()

    async def ping(self) -> None:
        """Run ``SELECT 1``; raises the driver's error when the database is unreachable."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Finish queued writes, stop the writer process and close the engine's connections."""
        if self._writer is not None:
            await self._writer.close()
        await self.engine.dispose()
