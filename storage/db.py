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
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

T = TypeVar("T")
WriteOp = Callable[[Connection], Any]

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
        _sqlite_pragmas(engine.sync_engine)
        return engine
    return create_async_engine(
        url, echo=echo, pool_size=10, max_overflow=20, pool_pre_ping=True, connect_args=connect_args or {}
    )


def _sqlite_pragmas(engine: Engine, *, writer: bool = False) -> None:
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


def _sqlite_writer_engine(async_engine: AsyncEngine) -> Engine | None:
    """A synchronous (pysqlite) engine on the same SQLite file, for the writer thread; None for in-memory
    databases, which a second connection would not share."""
    url = async_engine.url
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return None
    engine = create_sync_engine(
        url.set(drivername="sqlite+pysqlite"),
        echo=async_engine.echo,
        connect_args={"timeout": 30, "check_same_thread": False},
        pool_size=1,
        max_overflow=0,
    )
    _sqlite_pragmas(engine, writer=True)
    return engine


def _deliver(futures: list[asyncio.Future[Any]], outcomes: list[tuple[Any, BaseException | None]]) -> None:
    for future, (value, error) in zip(futures, outcomes, strict=True):
        if future.done():  # its caller was cancelled; the operation committed all the same
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


class Database:
    """The engine plus two session factories: ``read()`` and ``write()``.

    Both are async context managers yielding an ``AsyncSession`` inside one transaction, committed on exit
    and rolled back on an exception.
    """

    #: Operations per group-commit transaction at most. Every caller of a batch waits for all of it, and its
    #: callers resume together: with a whole burst of 100 jobs in one batch, no provider create went out
    #: before all 100 were written, the predictions then finished together and queued behind each other for
    #: their downloads and answers (p99 +0.13 s in bench (b)). Small batches let the burst flow through in
    #: waves instead; a batch costs one thread hand-off (about 0.3 ms here) on top of its operations.
    max_batch = 8

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer. Waiters inside SQLite's busy handler poll with sleeps of up to 100 ms and are
        # not woken when the lock frees, so under load the hand-over, not the work, dominates. Writers of this
        # process queue here instead (FIFO, woken at once, holding no pool connection); other processes
        # sharing the file still meet the busy timeout.
        self._sqlite_writer = asyncio.Lock() if self.is_sqlite else None
        # ``run_write`` on a SQLite file runs whole batches of operations in one thread on a synchronous
        # connection: through aiosqlite every statement is a round trip between the event loop and a worker
        # thread (about 0.45 ms here), in that thread a statement costs tens of microseconds.
        self._sync_engine = _sqlite_writer_engine(engine) if self.is_sqlite else None
        self._writer_thread = ThreadPoolExecutor(1, "sqlite-writer") if self._sync_engine is not None else None
        self._writer_conn: Connection | None = None  # used in the writer thread only
        self._pending: deque[tuple[WriteOp, asyncio.Future[Any]]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._write_engine = engine.execution_options(**{_IMMEDIATE: True})
        self._reader = async_sessionmaker(engine, expire_on_commit=False)
        self._writer = async_sessionmaker(self._write_engine, expire_on_commit=False)

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

    async def run_write(self, op: Callable[[Connection], T]) -> T:
        """Run ``op(connection)`` in a write transaction and return its result once committed.

        ``op`` is a plain function of a synchronous SQLAlchemy ``Connection`` (Core statements); it must not
        block on anything but the database, and it may run twice (see ``_run_batch``), so it must have no
        effect outside the connection. It raises to roll back its own writes; the caller gets that exception.
        Cancelling the caller does not withdraw an operation already queued: it may still commit.

        On a SQLite file, operations that arrive together share one transaction (group commit, at most
        ``max_batch`` of them), run back to back in the writer thread: an operation that raises is rolled back
        alone and its caller gets the exception; the others commit (``_run_batch``). On PostgreSQL each
        operation is its own transaction on the async engine (``AsyncConnection.run_sync``): real write
        concurrency, and batching unrelated accounts there could deadlock across replicas."""
        if self._writer_thread is None:
            if self._sqlite_writer is None:
                async with self._write_engine.begin() as conn:
                    return await conn.run_sync(op)
            async with self._sqlite_writer, self._write_engine.begin() as conn:
                return await conn.run_sync(op)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((op, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending())
        return await future

    def _run_batch(self, ops: list[WriteOp]) -> list[tuple[Any, BaseException | None]]:
        """In the writer thread: every op in one transaction. Raises when the transaction itself fails (then
        nothing of the batch was written).

        First without SAVEPOINTs (two statements an op, a fifth of a job's): when every op succeeds, as in a
        burst of jobs, that is the whole story. When one raises, the transaction is rolled back and the batch
        runs again with a SAVEPOINT around each op, so only the failing ones are undone. An op may therefore
        run twice; it must have no effect outside the connection."""
        conn = self._writer_connection()
        try:
            with conn.begin():
                values = [op(conn) for op in ops]
            return [(value, None) for value in values]
        except Exception as err:
            if len(ops) == 1:
                return [(None, err)]
        outcomes: list[tuple[Any, BaseException | None]] = []
        with conn.begin():
            for op in ops:
                try:
                    with conn.begin_nested():
                        outcomes.append((op(conn), None))
                except Exception as err:
                    outcomes.append((None, err))
        return outcomes

    def _writer_connection(self) -> Connection:
        """The writer thread's connection, kept open between batches: a pool checkout and return (with its
        reset) cost more than a small batch's statements. Reopened after it was invalidated."""
        assert self._sync_engine is not None
        if self._writer_conn is None or self._writer_conn.invalidated or self._writer_conn.closed:
            if self._writer_conn is not None:
                self._writer_conn.close()
            self._writer_conn = self._sync_engine.connect()
        return self._writer_conn

    def _close_writer_connection(self) -> None:
        if self._writer_conn is not None:
            self._writer_conn.close()
            self._writer_conn = None

    async def _flush_pending(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sqlite_writer is not None
        while self._pending:
            batch = [self._pending.popleft() for _ in range(min(self.max_batch, len(self._pending)))]
            futures = [future for _, future in batch]
            try:
                async with self._sqlite_writer:
                    await loop.run_in_executor(
                        self._writer_thread, self._run_and_deliver, loop, [op for op, _ in batch], futures
                    )
            except Exception as err:  # the commit itself failed: nothing of this batch was written
                for future in futures:
                    if not future.done():
                        future.set_exception(err)

    def _run_and_deliver(
        self, loop: asyncio.AbstractEventLoop, ops: list[WriteOp], futures: list[asyncio.Future[Any]]
    ) -> None:
        """In the writer thread: run the batch and hand its outcomes straight to the callers' futures (one
        event-loop step to wake them, rather than waking this flusher first to pass them on)."""
        outcomes = self._run_batch(ops)
        loop.call_soon_threadsafe(_deliver, futures, outcomes)

    async def ping(self) -> None:
        """Run ``SELECT 1``; raises the driver's error when the database is unreachable."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        if self._writer_thread is not None:
            await asyncio.wrap_future(self._writer_thread.submit(self._close_writer_connection))
            self._writer_thread.shutdown(wait=True)
        if self._sync_engine is not None:
            self._sync_engine.dispose()
        await self.engine.dispose()
