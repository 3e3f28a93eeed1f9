"""The writer process: ``python -m storage.writer --fd N``.

``Database.run_write`` sends it the database URL, then batches of write operations over a socket pair, and
gets their outcomes back (frames: a 4-byte big-endian length, then a pickle; the URL as UTF-8). Each batch runs
in one transaction on this process's own connection (group commit), so the SQLAlchemy work of the writes runs
on another core than the server's event loop. SQLite goes through pysqlite; PostgreSQL through asyncpg on an
event loop of this process. The process exits when its parent closes the socket, or dies.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import pickle
import signal
import socket
import time
from collections.abc import Callable, Iterator

from sqlalchemy import Connection, create_engine
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from storage.batch import (
    BATCH_NUMBER,
    Outcome,
    WriteOp,
    dump_outcomes,
    picklable_error,
    recv_frame,
    run_batch,
    send_frame,
)
from storage.db import sqlite_pragmas


def _batches(sock: socket.socket) -> Iterator[list[WriteOp] | BaseException]:
    """Each batch that arrives on ``sock`` (or the error unpickling it raised), until the parent closes it."""
    while (frame := recv_frame(sock)) is not None:
        try:
            yield [pickle.loads(data) for data in pickle.loads(frame)]
        except Exception as err:  # e.g. an op's module fails to import here
            yield err


def _numbered_batch(conn: Connection, ops: list[WriteOp], number: int) -> list[Outcome]:
    conn.info[BATCH_NUMBER] = number
    return run_batch(conn, ops)


def _reply(sock: socket.socket, run: Callable[[], list[Outcome]]) -> None:
    try:
        reply = dump_outcomes(run())
    except Exception as err:  # the transaction itself failed: nothing of this batch was written
        reply = pickle.dumps(picklable_error(err), pickle.HIGHEST_PROTOCOL)
    send_frame(sock, reply)


def serve_sqlite(url: str, echo: bool, sock: socket.socket) -> None:
    """Run each batch that arrives on ``sock`` in one transaction on our own pysqlite connection to ``url``
    and reply with its outcomes; return when the parent closes the socket."""
    engine = create_engine(
        url, echo=echo, connect_args={"timeout": 30, "check_same_thread": False}, pool_size=1, max_overflow=0
    )
    sqlite_pragmas(engine, writer=True)
    conn: Connection | None = None
    try:
        for number, batch in enumerate(_batches(sock), 1):
            if isinstance(batch, BaseException):
                send_frame(sock, pickle.dumps(picklable_error(batch), pickle.HIGHEST_PROTOCOL))
                continue
            if conn is None or conn.invalidated or conn.closed:
                conn = engine.connect()
            _reply(sock, functools.partial(_numbered_batch, conn, batch, number))
    finally:
        if conn is not None:
            conn.close()
        engine.dispose()


#: A PostgreSQL connection idle longer than this (seconds) goes back to the pool, whose pre-ping checks it (a
#: transaction and a round trip) before the next batch; batches that follow each other keep it without a check.
IDLE_CHECK_SECONDS = 1.0


def serve_postgresql(url: str, echo: bool, sock: socket.socket) -> None:
    """The same for PostgreSQL: asyncpg on an event loop of our own, one connection, each batch in one
    transaction (``AsyncConnection.run_sync``). The parent puts only one account's operations in a batch."""
    loop = asyncio.new_event_loop()
    engine = create_async_engine(url, echo=echo, pool_size=1, max_overflow=0, pool_pre_ping=True)
    conn: AsyncConnection | None = None
    last_used = 0.0

    async def run(ops: list[WriteOp], number: int) -> list[Outcome]:
        # The pool's pre-ping costs three round trips (BEGIN, ";", ROLLBACK), as many as a job's create
        # writes: a burst's batches reuse the connection instead. One that sat idle is checked again, so a
        # restarted server or a connection cut while idle costs no batch. A connection lost during a batch
        # fails that batch (SQLAlchemy invalidates it) and the next one gets a new connection.
        """One batch in one transaction on the kept connection (checked again after sitting idle)."""
        nonlocal conn, last_used
        if conn is not None and (conn.invalidated or time.monotonic() - last_used > IDLE_CHECK_SECONDS):
            await conn.close()
            conn = None
        if conn is None:
            conn = await engine.connect()
        try:
            outcomes: list[Outcome] = await conn.run_sync(_numbered_batch, ops, number)
            return outcomes
        finally:
            last_used = time.monotonic()

    try:
        for number, batch in enumerate(_batches(sock), 1):
            if isinstance(batch, BaseException):
                send_frame(sock, pickle.dumps(picklable_error(batch), pickle.HIGHEST_PROTOCOL))
                continue
            _reply(sock, functools.partial(loop.run_until_complete, run(batch, number)))
    finally:
        if conn is not None:
            loop.run_until_complete(conn.close())
        loop.run_until_complete(engine.dispose())
        loop.close()


def main() -> None:
    """``python -m storage.writer --fd N``: serve batches until the parent closes the socket."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fd", type=int, required=True, help="our end of the socket pair")
    parser.add_argument("--preload", default="", help="modules to import before the first batch, comma-separated")
    parser.add_argument("--echo", action="store_true", help="log every statement (SQLAlchemy echo)")
    args = parser.parse_args()
    # Ctrl-C reaches the whole process group, and a service manager's SIGTERM the whole control group: stopping
    # is the parent's to decide. It finishes its writes, then closes the socket (or dies, which closes it too),
    # and we exit.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=args.fd)
    for module in filter(None, args.preload.split(",")):
        importlib.import_module(module)
    # The database URL comes as the first frame (it may hold a password, which a command line would show).
    frame = recv_frame(sock)
    if frame is None:
        return
    url = frame.decode()
    try:
        (serve_sqlite if url.startswith("sqlite") else serve_postgresql)(url, args.echo, sock)
    finally:
        sock.close()


if __name__ == "__main__":
    main()
