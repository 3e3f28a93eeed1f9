"""``Database.run_write``: operations that arrive together commit together, and one that fails is undone alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Connection, insert, select

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
