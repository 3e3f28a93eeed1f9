"""Database engine and transactions (SQLAlchemy 2 async; SQLite via aiosqlite, PostgreSQL via asyncpg).

SQLite runs in WAL mode with a 30 s busy timeout. Because pysqlite's implicit transactions make
read-then-write races surface as "database is locked" (SQLAlchemy docs, "Transactions with SQLite and the
sqlite3 driver"), we turn them off and emit our own ``BEGIN``: ``BEGIN IMMEDIATE`` for write transactions
(they take the write lock up front), plain ``BEGIN`` for reads, so readers never block each other.
On PostgreSQL, write transactions lock the account row they touch (``SELECT … FOR UPDATE``) instead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

T = TypeVar("T")
WriteOp = Callable[[AsyncSession], Awaitable[Any]]

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
        self._pending: deque[tuple[WriteOp, asyncio.Future[Any]]] = deque()
        self._flusher: asyncio.Task[None] | None = None
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

    async def run_write(self, op: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """Run ``op(session)`` in a write transaction and return its result once committed.

        On SQLite, operations that arrive together share one transaction (group commit), each inside its own
        SAVEPOINT: an operation that raises is rolled back alone and its caller gets the exception; the others
        commit. This turns a burst of small writes (jobs created and finished at the same moment) from a queue
        of transactions into a few. On PostgreSQL each operation is its own transaction (real write
        concurrency; batching unrelated accounts there could deadlock across replicas)."""
        if not self.is_sqlite:
            async with self.write() as session:
                return await op(session)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending())
        return await asyncio.shield(future)

    async def _flush_pending(self, max_batch: int = 64) -> None:
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(max_batch, len(self._pending)))]
            outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
            try:
                async with self.write() as session:
                    for op, future in batch:
                        try:
                            async with session.begin_nested():
                                outcomes.append((future, await op(session), None))
                        except Exception as err:
                            outcomes.append((future, None, err))
            except Exception as err:  # the commit itself failed: nothing of this batch was written
                for _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for future, value, error in outcomes:
                if future.done():
                    continue
                if error is not None:
                    future.set_exception(error)
                else:
                    future.set_result(value)

    async def ping(self) -> None:
        """Run ``SELECT 1``; raises the driver's error when the database is unreachable."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self.engine.dispose()
