"""``Database.run_write``: operations that arrive together commit together, and one that fails is undone alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection, event, insert, select

from storage import migrate
from storage.db import Database, create_engine
from storage.models import Account


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(create_engine(database_url))
    await migrate.upgrade(database.engine)
    yield database
    await database.dispose()


def _add_account(name: str, *, fail_after_insert: bool = False):  # type: ignore[no-untyped-def]
    def op(conn: Connection) -> int:
        account_id = conn.execute(insert(Account).values(name=name, kind="business").returning(Account.id)).scalar()
        if fail_after_insert:
            raise ValueError(f"{name} refused after writing")
        assert account_id is not None
        return account_id

    return op


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
    if db._sync_engine is None:
        pytest.skip("group commit runs on a SQLite file only; PostgreSQL commits each operation on its own")
    per_commit: list[int] = []
    inserts = 0

    def after_execute(conn: Connection, clauseelement: object, *args: object) -> None:
        nonlocal inserts
        inserts += "INSERT" in str(clauseelement)

    def commit(conn: Connection) -> None:
        nonlocal inserts
        per_commit.append(inserts)
        inserts = 0

    event.listen(db._sync_engine, "after_execute", after_execute)
    event.listen(db._sync_engine, "commit", commit)
    await asyncio.gather(*(db.run_write(_add_account(f"w-{i}")) for i in range(50)))
    assert sum(per_commit) == 50
    assert max(per_commit) == db.max_batch  # grouped, but never more than max_batch callers wait on one commit
    assert len(per_commit) == -(-50 // db.max_batch)
