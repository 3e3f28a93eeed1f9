"""``Database.run_write``: operations that arrive together commit together, and one that fails is undone alone."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection, insert, select, text

from storage import migrate
from storage.batch import BATCH_NUMBER
from storage.db import Database, WriterStopped, create_engine
from storage.group_commit import WriterClient
from storage.models import Account
from storage.writer import IDLE_CHECK_SECONDS


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(create_engine(database_url))
    await migrate.upgrade(database.engine)
    yield database
    await database.dispose()


def _insert_account(conn: Connection, *, name: str, fail_after_insert: bool = False) -> int:
    account_id = conn.execute(insert(Account).values(name=name, kind="business").returning(Account.id)).scalar()
    if fail_after_insert:
        raise ValueError(f"{name} refused after writing")
    assert account_id is not None
    return account_id


def _add_account(name: str, *, fail_after_insert: bool = False) -> functools.partial[int]:
    return functools.partial(_insert_account, name=name, fail_after_insert=fail_after_insert)


def _insert_account_in_batch(conn: Connection, *, name: str) -> int:
    """Insert the account; return the number of the writer's batch (transaction) it was part of."""
    _insert_account(conn, name=name)
    return int(conn.info[BATCH_NUMBER])


async def test_on_postgresql_a_batch_holds_one_accounts_operations(db: Database) -> None:
    if db.is_sqlite:
        pytest.skip("SQLite has one writer: its batches take whatever arrives")
    ops = [(functools.partial(_insert_account_in_batch, name=f"p-{i}"), i % 2) for i in range(20)]
    batches = await asyncio.gather(*(db.run_write(op, account=account) for op, account in ops))
    for number in set(batches):
        accounts = {account for (_, account), batch in zip(ops, batches, strict=True) if batch == number}
        assert len(accounts) == 1  # never two accounts' operations in one transaction
    assert len(set(batches)) < 20  # but grouped


async def _kill(pid: int) -> None:
    """SIGKILL the writer process and give the kernel a moment to end it."""
    os.kill(pid, signal.SIGKILL)
    await asyncio.sleep(0.2)


async def _names(db: Database) -> set[str]:
    async with db.read() as session:
        return set((await session.scalars(select(Account.name))).all())


async def test_a_failing_operation_is_undone_alone_and_the_others_commit(db: Database) -> None:
    ops = [_add_account(f"ok-{i}") for i in range(20)]
    ops.insert(7, _add_account("bad", fail_after_insert=True))
    results = await asyncio.gather(*(db.run_write(op) for op in ops), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], ValueError) and "bad refused" in str(errors[0])
    assert all(isinstance(r, int) for r in results if not isinstance(r, BaseException))
    assert await _names(db) == {f"ok-{i}" for i in range(20)}


async def test_every_operation_of_a_burst_commits_once(db: Database) -> None:
    ids = await asyncio.gather(*(db.run_write(_add_account(f"n-{i}")) for i in range(100)))
    assert len(set(ids)) == 100
    assert await _names(db) == {f"n-{i}" for i in range(100)}


async def test_a_single_failing_operation_writes_nothing(db: Database) -> None:
    with pytest.raises(ValueError, match="lonely refused"):
        await db.run_write(_add_account("lonely", fail_after_insert=True))
    assert await _names(db) == set()


async def test_a_burst_commits_in_batches_of_at_most_max_batch(db: Database) -> None:
    ops = [functools.partial(_insert_account_in_batch, name=f"w-{i}") for i in range(50)]
    batches = await asyncio.gather(*(db.run_write(op, account=1) for op in ops))
    per_commit = [batches.count(number) for number in sorted(set(batches))]
    assert sum(per_commit) == 50
    assert (
        max(per_commit) == WriterClient.max_batch
    )  # grouped, but never more than max_batch callers wait on one commit
    assert len(per_commit) == -(-50 // WriterClient.max_batch)
    assert await _names(db) == {f"w-{i}" for i in range(50)}


async def test_an_operation_that_does_not_pickle_is_refused_before_anything_runs(db: Database) -> None:
    def closure(conn: Connection) -> int:  # a local function: pickle cannot name it
        return _insert_account(conn, name="closure")

    with pytest.raises(TypeError, match="pickle"):
        await db.run_write(closure)
    assert await _names(db) == set()


async def test_a_killed_writer_process_fails_its_batch_and_the_next_write_starts_a_new_one(db: Database) -> None:
    await db.run_write(_add_account("before"))
    pid = db.writer_pid
    assert pid is not None
    await _kill(pid)
    with pytest.raises(WriterStopped):
        await db.run_write(_add_account("during"))
    assert await db.run_write(_add_account("after")) > 0
    assert db.writer_pid not in (None, pid)
    assert await _names(db) == {"before", "after"}


async def test_on_postgresql_a_connection_cut_while_idle_costs_no_write(db: Database) -> None:
    """The writer keeps its connection between batches; one that sat idle is checked before the next batch
    (``storage.writer.IDLE_CHECK_SECONDS``), so a server restart or a dropped connection loses nothing."""
    if db.is_sqlite:
        pytest.skip("PostgreSQL's connections only")
    await db.run_write(_add_account("before"))
    async with db.engine.connect() as conn:  # what a server restart does to every other session
        cut = await conn.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    assert cut >= 1
    await asyncio.sleep(IDLE_CHECK_SECONDS + 0.2)
    assert await db.run_write(_add_account("after")) > 0
    assert await _names(db) == {"before", "after"}


def _insert_account_slowly(conn: Connection, *, name: str) -> int:
    time.sleep(0.3)  # keeps its batch in the writer while the test kills it
    return _insert_account(conn, name=name)


async def test_a_writer_killed_with_batches_in_flight_fails_exactly_those_callers(db: Database) -> None:
    """On PostgreSQL two batches are in flight here (``max_in_flight``); on SQLite one, and the second waits.
    Every caller gets an answer: ``WriterStopped`` for the batches the dead writer had, a result for the rest,
    which a new writer runs; and what was reported written is exactly what the database holds."""
    names = [f"k-{i}" for i in range(12)]
    calls = [
        asyncio.ensure_future(db.run_write(functools.partial(_insert_account_slowly, name=name), account=1))
        for name in names
    ]
    await asyncio.sleep(0.15)
    pid = db.writer_pid
    assert pid is not None
    await _kill(pid)
    results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 30)
    stopped = [name for name, r in zip(names, results, strict=True) if isinstance(r, WriterStopped)]
    written = [name for name, r in zip(names, results, strict=True) if isinstance(r, int)]
    assert len(stopped) + len(written) == len(names)
    assert len(stopped) == (WriterClient.max_batch if db.is_sqlite else len(names))
    assert await _names(db) == set(written)
