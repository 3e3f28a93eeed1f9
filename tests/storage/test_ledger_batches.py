"""Holds in one batch transaction of the writer process: the account is locked and its grants read once per
transaction, what a hold takes is remembered, and a refused hold leaves the others exact."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import Connection, event, insert

from storage.batch import BATCH_NUMBER
from storage.errors import NotEnoughUnits
from storage.models import Job
from storage.repositories import credits as ledger
from tools.services import Services


def _count_statement(conn: Connection, *_args: object) -> None:
    conn.info["test.statements"] += 1


def _hold_in_batch(
    conn: Connection, account_id: int, job_id: str, amount: int, now: datetime
) -> tuple[int, list[tuple[int, int]], int]:
    """What a job's creation does for a job of ``amount`` credits: lock, hold, insert the job. Returns the
    writer's batch number, the grants taken and how many statements the lock and the hold's read ran."""
    if not event.contains(conn, "before_cursor_execute", _count_statement):
        event.listen(conn, "before_cursor_execute", _count_statement)
    conn.info["test.statements"] = 0
    ledger.lock_account(conn, account_id)
    unit, cost, taken = ledger.hold(
        conn, account_id=account_id, job_id=job_id, options=[("credit", amount)], model="flux_schnell", now=now
    )
    statements = conn.info["test.statements"] - len(taken) - (1 if taken else 0)  # less the takes and the entries
    conn.execute(
        insert(Job).values(
            id=job_id, account_id=account_id, model="flux_schnell", prompt="p", params={}, num_outputs=amount,
            unit=unit, cost=cost, charge_state="held", idempotency_key=job_id, request_hash="h",
        )
    )  # fmt: skip
    return int(conn.info[BATCH_NUMBER]), taken, statements


def _release_in_batch(conn: Connection, account_id: int, job_id: str, now: datetime) -> bool:
    ledger.lock_account(conn, account_id)
    return ledger.release(conn, job_id, "test", now)


async def _bare_account(services: Services) -> int:
    services.credits.settings.starter_credits = 0
    account = await services.accounts.create("No starter")
    services.credits.settings.starter_credits = 10
    return account.id


async def _grant(services: Services, account: int, amount: int, ref: str, priority: int) -> int:
    return (await services.credits.grant(account_id=account, amount=amount, source_ref=ref, priority=priority)).grant_id


def _holds(services: Services, account: int, jobs: list[tuple[str, int]]) -> list[Any]:
    now = services.clock.now()
    return [
        services.db.run_write(_hold_in_batch, account, job.ljust(32, "0"), amount, now, account=account)
        for job, amount in jobs
    ]


async def test_holds_in_one_batch_lock_and_read_the_grants_once(services: Services) -> None:
    if services.db.writer_pid is None and not services.db.is_sqlite:
        pytest.skip("no writer process")
    account = await _bare_account(services)
    small = await _grant(services, account, 2, "small", 10)
    big = await _grant(services, account, 10, "big", 20)
    results = await asyncio.gather(*_holds(services, account, [(f"h{i}", 1) for i in range(6)]))
    assert len({batch for batch, _, _ in results}) == 1  # one transaction
    # The first hold locks the account and reads its grants; the others of the transaction run neither
    # statement, and still burn down in order: what the transaction took is remembered.
    assert [statements for _, _, statements in results] == [2, 0, 0, 0, 0, 0]
    assert [taken for _, taken, _ in results] == [[(small, 1)], [(small, 1)]] + [[(big, 1)]] * 4
    assert (await services.credits.balance(account)).credits == 6
    assert await services.credits.invariant_violations() == []


async def test_a_release_in_the_batch_is_seen_by_the_holds_after_it(services: Services) -> None:
    account = await _bare_account(services)
    small = await _grant(services, account, 2, "small", 10)
    big = await _grant(services, account, 10, "big", 20)
    now = services.clock.now()
    first, released, second = await asyncio.gather(
        _holds(services, account, [("first", 2)])[0],
        services.db.run_write(_release_in_batch, account, "first".ljust(32, "0"), now, account=account),
        _holds(services, account, [("second", 1)])[0],
    )
    assert first[1] == [(small, 2)] and released is True
    assert second[1] == [(small, 1)]  # the released credits are back in the small grant, which burns first
    assert (await services.credits.balance(account)).credits == 11
    assert big and await services.credits.invariant_violations() == []


async def test_a_refused_hold_in_a_batch_leaves_the_others_exact(services: Services) -> None:
    """The refusal rolls the batch's transaction back and it runs again with a SAVEPOINT around each op and
    nothing remembered: every other hold is taken exactly once, from the grants as they really are."""
    account = await _bare_account(services)
    small = await _grant(services, account, 2, "small", 10)
    big = await _grant(services, account, 3, "big", 20)
    jobs = [(f"r{i}", amount) for i, amount in enumerate([1, 2, 50, 1])]
    results = await asyncio.gather(*_holds(services, account, jobs), return_exceptions=True)
    assert isinstance(results[2], NotEnoughUnits)
    assert [r[1] for r in results if not isinstance(r, BaseException)] == [
        [(small, 1)],
        [(small, 1), (big, 1)],
        [(big, 1)],
    ]
    assert (await services.credits.balance(account)).credits == 1
    assert await services.credits.invariant_violations() == []
