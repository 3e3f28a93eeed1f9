"""Database engine and transactions (SQLAlchemy 2 async; SQLite via aiosqlite, PostgreSQL via asyncpg).

SQLite runs in WAL mode with a 30 s busy timeout. Because pysqlite's implicit transactions make
read-then-write races surface as "database is locked" (SQLAlchemy docs, "Transactions with SQLite and the
sqlite3 driver"), we turn them off and emit our own ``BEGIN``: ``BEGIN IMMEDIATE`` for write transactions
(they take the write lock up front), plain ``BEGIN`` for reads, so readers never block each other.
On PostgreSQL, write transactions lock the account row they touch (``SELECT … FOR UPDATE``) instead.

``Database.run_write`` (the job and credit writes) runs in a writer process, ``storage.writer``, in batches
that commit together; ``read()`` and ``write()`` sessions stay in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import pickle
import socket
import struct
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteOp = Callable[[Connection], Any]
Outcome = tuple[Any, BaseException | None]

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


def _writer_url(async_engine: AsyncEngine) -> str | None:
    """The URL the writer process connects to: the same SQLite file through pysqlite, or the same PostgreSQL
    database; None for in-memory SQLite, which a second connection would not share."""
    url = async_engine.url
    if async_engine.dialect.name != "sqlite":
        return url.render_as_string(hide_password=False)
    if not url.database or url.database == ":memory:" or url.database.startswith("file:"):
        return None
    return url.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)


class WriterStopped(RuntimeError):
    """The writer process ended (it was killed, or it crashed) while running a batch. Whether that batch
    committed is unknown; the next batch starts a new writer process."""


# -- the writer process ---------------------------------------------------------------------------------------
# Frames on its socket: a 4-byte big-endian length, then a pickle. Parent → writer: a list of operations (one
# batch); writer → parent: a list of (value, exception) outcomes, one per operation, in order, or a single
# exception when the batch as a whole failed (nothing of it was written).

_LENGTH = struct.Struct(">I")

#: ``Connection.info`` key under which the writer process numbers its batches (1, 2, …): an operation can tell
#: which others shared its transaction.
BATCH_NUMBER = "showme.batch"

#: ``Connection.info`` key of a dict that lives for one batch transaction run without SAVEPOINTs (and is absent
#: otherwise): its operations may note there what their transaction already holds, such as an account's row lock,
#: to skip taking it again. That is sound because such a transaction is all or nothing: when any of its
#: operations raises, all of it is rolled back and the batch runs again with a SAVEPOINT around each operation
#: and without this dict (``storage.writer._run_batch``).
TRANSACTION_CACHE = "showme.transaction"


def _send_frame(sock: socket.socket, data: bytes) -> None:
    sock.sendall(_LENGTH.pack(len(data)) + data)


#: Imported by a new writer process while its parent goes on (the modules whose write operations it will
#: unpickle), so that the first write does not wait for them.
WRITER_PRELOAD = ("core.generation", "core.library")


def _start_writer_process(url: str, echo: bool) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """Start ``python -m storage.writer`` on one end of a new socket pair and send it ``url`` (the first frame:
    a command line would show a password to every user of the machine); return it and our end. A plain child
    process: it imports only what its writes need, and it exits when our end closes (also when this process
    dies)."""
    ours, theirs = socket.socketpair()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    command = [sys.executable, "-m", "storage.writer", "--fd", str(theirs.fileno())]
    command += [f"--preload={','.join(WRITER_PRELOAD)}", *(["--echo"] if echo else [])]
    try:
        process = subprocess.Popen(command, pass_fds=[theirs.fileno()], env=env, stdin=subprocess.DEVNULL)
        _send_frame(ours, url.encode())
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return process, ours


def _deliver(futures: list[asyncio.Future[Any]], outcomes: list[Outcome]) -> None:
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
    #: waves instead; a batch costs one round trip to the writer process (about 0.2 ms here) on top of its
    #: operations.
    max_batch = 8

    #: Batches sent to the writer process and not answered yet, at most (PostgreSQL; SQLite sends one at a time).
    max_in_flight = 2

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer. Waiters inside SQLite's busy handler poll with sleeps of up to 100 ms and are
        # not woken when the lock frees, so under load the hand-over, not the work, dominates. Writers of this
        # process queue here instead (FIFO, woken at once, holding no pool connection); other processes
        # sharing the file still meet the busy timeout.
        self._sqlite_writer = asyncio.Lock() if self.is_sqlite else None
        # ``run_write`` runs whole batches of operations in a writer process. Through aiosqlite every statement
        # is a round trip between the event loop and a worker thread (about 0.45 ms here); in a thread of this
        # process a batch's SQLAlchemy work took the GIL from the event loop (about 1 ms a generation job, 40 %
        # of this process's CPU in bench (b)); on the event loop, PostgreSQL's statements through asyncpg cost
        # about 10 ms of its CPU a job. In its own process that work runs on another core.
        self._writer_url = _writer_url(engine)
        self._writer_process: subprocess.Popen[bytes] | None = None
        self._writer_sock: socket.socket | None = None
        self._writer_stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._pending: deque[tuple[bytes, asyncio.Future[Any], int | None]] = deque()
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

    async def run_write(self, op: Callable[[Connection], T], *, account: int | None = None) -> T:
        """Run ``op(connection)`` in a write transaction and return its result once committed.

        ``op`` is a plain function of a synchronous SQLAlchemy ``Connection`` (Core statements). ``account`` is the
        account whose credit rows it locks, when there is one. It runs in the writer process, so it must pickle (a
        module-level function, or a ``functools.partial`` of one with picklable arguments), and so must its result
        and its exceptions; ``TypeError`` is raised at once for an op that does not pickle. It must not block on
        anything but the database, and it may run twice (see ``storage.writer._run_batch``), so it must have no
        effect outside the connection. It raises to roll back its own writes; the caller gets that exception.
        Cancelling the caller does not withdraw an operation already queued: it may still commit. ``WriterStopped``
        is raised when the writer process ended during the batch (whether it committed is then unknown).

        Operations that arrive together share one transaction (group commit, at most ``max_batch`` of them),
        run back to back in the writer process: an operation that raises is rolled back alone and its caller
        gets the exception; the others commit (``storage.writer._run_batch``). On PostgreSQL a batch holds one
        account's operations only (``_next_batch``): batching unrelated accounts could deadlock across
        replicas. An in-memory SQLite database, which another process cannot open, runs each operation in this
        process."""
        if self._writer_url is None:
            if self._sqlite_writer is None:
                async with self._write_engine.begin() as conn:
                    return await conn.run_sync(op)
            async with self._sqlite_writer, self._write_engine.begin() as conn:
                return await conn.run_sync(op)
        try:
            data = pickle.dumps(op, pickle.HIGHEST_PROTOCOL)
        except Exception as err:
            raise TypeError(
                f"run_write needs an operation that pickles (a module-level function or a partial of one): {err}"
            ) from err
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((data, future, account))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_pending())
        return await future

    def start_writer(self) -> None:
        """Start the writer process now rather than at the first write (it takes about half a second to import
        what it needs; the server calls this at startup). Nothing to do for an in-memory SQLite database, or
        when it is running."""
        if self._writer_url is not None and self._writer_process is None:
            self._writer_process, self._writer_sock = _start_writer_process(self._writer_url, self.engine.echo is True)

    async def _writer_socket(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The writer process's socket, starting the process when there is none (the first write, or after
        the previous one ended)."""
        if self._writer_stream is not None and not self._writer_stream[1].is_closing():
            return self._writer_stream
        if self._writer_stream is not None or (self._writer_process and self._writer_process.poll() is not None):
            await self._stop_writer()
        self.start_writer()
        sock, self._writer_sock = self._writer_sock, None
        assert sock is not None
        self._writer_stream = await asyncio.open_unix_connection(sock=sock, limit=1 << 24)
        return self._writer_stream

    async def _stop_writer(self) -> None:
        """Close the writer's socket (it exits at end of input) and wait for the process."""
        stream, sock, process = self._writer_stream, self._writer_sock, self._writer_process
        self._writer_stream = self._writer_sock = self._writer_process = None
        if sock is not None:
            sock.close()
        if stream is not None:
            stream[1].close()
            with contextlib.suppress(Exception):
                await stream[1].wait_closed()
        if process is not None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(None, process.wait, 10)
            except subprocess.TimeoutExpired:  # pragma: no cover - only when the writer hangs
                log.error("the writer process did not stop; killing it")
                process.kill()
                await loop.run_in_executor(None, process.wait)

    def _next_batch(self) -> list[tuple[bytes, asyncio.Future[Any], int | None]]:
        """The next batch, in arrival order: on SQLite the next ``max_batch`` operations; on PostgreSQL the next
        operation and, when it names its account, the following ones of the same account (a transaction then
        locks one account row only, so two replicas never take two accounts' locks in crossed order)."""
        pending = self._pending
        if self.is_sqlite:
            return [pending.popleft() for _ in range(min(self.max_batch, len(pending)))]
        batch = [pending.popleft()]
        account = batch[0][2]
        if account is not None:
            others = []
            while pending and len(batch) < self.max_batch:
                item = pending.popleft()
                if item[2] is None:  # it may touch this account too: nothing jumps ahead of it
                    others.append(item)
                    break
                (batch if item[2] == account else others).append(item)
            pending.extendleft(reversed(others))
        return batch

    async def _flush_pending(self) -> None:
        while self._pending:
            # On SQLite the lock is let go after each batch, so a write() session of this process waits for
            # one batch at most.
            async with self._sqlite_writer or contextlib.nullcontext():
                await self._send_batches()

    async def _send_batches(self) -> None:
        """Send the pending operations to the writer process in batches and deliver each batch's outcomes, until
        no batch is unanswered. On SQLite that is one batch. On PostgreSQL, before each wait for a reply, as
        many batches go out as are pending, up to ``max_in_flight`` unanswered: under a burst the writer then
        finds the next batch waiting when it finishes one, instead of waiting for this event loop to read the
        reply and send it (10-40 ms late when the loop is busy)."""
        limit = 1 if self.is_sqlite else self.max_in_flight
        in_flight: deque[list[asyncio.Future[Any]]] = deque()

        def fail(error: BaseException) -> None:
            for futures in in_flight:
                for future in futures:
                    if not future.done():
                        future.set_exception(error)
            in_flight.clear()

        try:
            reader, writer = await self._writer_socket()
        except Exception as err:  # the writer process cannot start: fail one batch, and try again for the next
            in_flight.append([future for _, future, _ in self._next_batch()])
            fail(err)
            return
        try:
            while True:
                while self._pending and len(in_flight) < limit:
                    batch = self._next_batch()
                    in_flight.append([future for _, future, _ in batch])
                    # Each op was pickled by run_write (which checks that it pickles); the batch is their list.
                    payload = pickle.dumps([data for data, _, _ in batch], pickle.HIGHEST_PROTOCOL)
                    writer.write(_LENGTH.pack(len(payload)) + payload)
                if not in_flight:
                    return
                header = await reader.readexactly(_LENGTH.size)
                raw = await reader.readexactly(_LENGTH.unpack(header)[0])
                futures = in_flight.popleft()
                try:
                    reply = pickle.loads(raw)  # a list of outcomes, or the exception that failed the whole batch
                except Exception as err:
                    reply = err
                if isinstance(reply, BaseException):
                    for future in futures:
                        if not future.done():
                            future.set_exception(reply)
                else:
                    _deliver(futures, reply)
                if self.is_sqlite:
                    return
        except (asyncio.IncompleteReadError, ConnectionError) as err:
            await self._stop_writer()
            fail(WriterStopped(f"the writer process stopped during a write: {err!r}"))
        except BaseException:  # cancelled mid-reply: the stream is out of step; start afresh
            fail(WriterStopped("the write was interrupted (shutdown); it may have committed"))
            await asyncio.shield(self._stop_writer())
            raise

    async def ping(self) -> None:
        """Run ``SELECT 1``; raises the driver's error when the database is unreachable."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._stop_writer()
        await self.engine.dispose()
