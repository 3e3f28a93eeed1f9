"""The credit ledger: burn-down order, holds settled or released exactly once, concurrency, invariants."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import ManualClock
from core.errors import InsufficientCredits, InvalidRequest
from core.generation import GenerationRequest
from storage.models import CreditGrant, Job, LedgerEntry
from storage.repositories import credits as ledger
from storage.repositories import in_session
from tests.fakes.replicate import FakeReplicate
from tools.services import Services


async def _grant(services: Services, account: int, amount: int, ref: str, **kw: object) -> int:
    result = await services.credits.grant(account_id=account, amount=amount, source_ref=ref, **kw)
    return result.grant_id


async def _bare_account(services: Services) -> int:
    services.credits.settings.starter_credits = 0
    account = await services.accounts.create("No starter")
    services.credits.settings.starter_credits = 10
    return account.id


async def test_starter_credits_once_per_account(services: Services) -> None:
    account = await services.accounts.create("Acme")
    again = await services.credits.grant_starter(account.id)
    assert again is not None and not again.created
    assert (await services.credits.balance(account.id)).credits == 10


async def test_grant_is_idempotent_per_source_ref_and_validates(services: Services) -> None:
    account = await _bare_account(services)
    first = await _grant(services, account, 40, "stripe:cs_1")
    second = await _grant(services, account, 40, "stripe:cs_1")
    assert first == second and (await services.credits.balance(account)).credits == 40
    for kwargs, field in [({"amount": 0}, "amount"), ({"unit": "coins"}, "unit"), ({"category": "gift"}, "category")]:
        with pytest.raises(InvalidRequest) as err:
            await services.credits.grant(account_id=account, source_ref="x", **{"amount": 5, **kwargs})
        assert err.value.field == field


async def test_concurrent_duplicate_grants_create_one(services: Services) -> None:
    account = await _bare_account(services)
    await asyncio.gather(*(_grant(services, account, 25, "stripe:cs_dup") for _ in range(10)))
    assert (await services.credits.balance(account)).credits == 25


async def test_burn_down_order(services: Services, clock: ManualClock) -> None:
    account = await _bare_account(services)
    now = clock.now()
    paid_old = await _grant(services, account, 3, "paid-old", category="paid")
    clock.advance(seconds=1)
    paid_new = await _grant(services, account, 3, "paid-new", category="paid")
    starter = await _grant(services, account, 2, "starter-like", category="starter")
    expiring_late = await _grant(
        services, account, 2, "late", category="admin", priority=100, expires_at=now + timedelta(hours=5)
    )
    expiring_soon = await _grant(
        services, account, 2, "soon", category="admin", priority=100, expires_at=now + timedelta(hours=1)
    )
    expired = await _grant(
        services, account, 50, "expired", category="admin", priority=0, expires_at=now - timedelta(seconds=1)
    )
    async with services.db.write() as session:
        await in_session(session, ledger.lock_account, account)
        session.add(
            Job(
                id="j" * 32,
                account_id=account,
                model="flux_schnell",
                prompt="p",
                params={},
                unit="credit",
                cost=11,
                charge_state="held",
                idempotency_key="k",
                request_hash="h",
            )
        )
        await session.flush()
        _, _, taken = await in_session(
            session,
            ledger.hold,
            account_id=account,
            job_id="j" * 32,
            options=[("credit", 11)],
            model="flux_schnell",
            now=clock.now(),
        )
    # starter (priority 50) first; then priority 100: soonest expiry, later expiry, never-expiring oldest first.
    assert taken == [(starter, 2), (expiring_soon, 2), (expiring_late, 2), (paid_old, 3), (paid_new, 2)]
    assert expired not in dict(taken)
    assert (await services.credits.balance(account)).credits == 1


async def test_settle_and_release_happen_once(services: Services, replicate_fake: FakeReplicate) -> None:
    account = (await services.accounts.create("Acme")).id
    job = await services.generation.generate(account, GenerationRequest(prompt="a cat", num_outputs=2))
    assert job.charged == 2
    now = services.clock.now()
    assert await services.db.run_write(ledger.settle, job.id, 2, now) is False
    assert await services.db.run_write(ledger.release, job.id, None, now) is False
    async with services.db.read() as session:
        kinds = (await session.scalars(select(LedgerEntry.kind).where(LedgerEntry.job_id == job.id))).all()
    assert sorted(kinds) == ["hold", "settle"]
    # The database refuses a second settle entry for the same operation and grant, whatever Python does.
    entry_grant = await _first_grant(services, job.id)
    with pytest.raises(IntegrityError):
        async with services.db.write() as session:
            session.add(
                LedgerEntry(
                    account_id=account,
                    grant_id=entry_grant,
                    job_id=job.id,
                    kind="settle",
                    amount=1,
                    delta=0,
                    op_key=f"job:{job.id}",
                )
            )
    # ...and refuses a grant going below zero.
    with pytest.raises(IntegrityError):
        async with services.db.write() as session:
            await session.execute(update(CreditGrant).where(CreditGrant.id == entry_grant).values(remaining=-1))
    assert await services.credits.invariant_violations() == []


async def _first_grant(services: Services, job_id: str) -> int:
    async with services.db.read() as session:
        grant = await session.scalar(select(LedgerEntry.grant_id).where(LedgerEntry.job_id == job_id).limit(1))
    assert grant is not None
    return grant


async def test_200_concurrent_generations_on_50_credits(services: Services, replicate_fake: FakeReplicate) -> None:
    """Exactly 50 succeed, the balance ends at 0 and never goes negative, nothing is charged twice."""
    services.settings.generation.max_concurrent_jobs = 16
    account = await _bare_account(services)
    await _grant(services, account, 50, "pack")
    lowest = 50
    stop = asyncio.Event()

    async def watch() -> None:
        nonlocal lowest
        while not stop.is_set():
            async with services.db.read() as session:
                total = await session.scalar(
                    select(func.coalesce(func.min(CreditGrant.remaining), 0)).where(CreditGrant.account_id == account)
                )
            lowest = min(lowest, int(total or 0))
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())

    async def one(i: int) -> str:
        try:
            job = await services.generation.generate(account, GenerationRequest(prompt=f"granite sample {i}"))
        except InsufficientCredits:
            return "refused"
        return job.status

    outcomes = await asyncio.gather(*(one(i) for i in range(200)))
    stop.set()
    await watcher
    assert outcomes.count("succeeded") == 50
    assert outcomes.count("refused") == 150
    assert (await services.credits.balance(account)).credits == 0
    assert lowest >= 0
    assert len(replicate_fake.creates) == 50
    async with services.db.read() as session:
        settled = await session.scalar(
            select(func.sum(LedgerEntry.amount)).where(LedgerEntry.account_id == account, LedgerEntry.kind == "settle")
        )
        holds = await session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.account_id == account, LedgerEntry.kind == "hold")
        )
    assert settled == 50 and holds == 50
    assert await services.credits.invariant_violations() == []


async def test_concurrent_mixed_failures_refund_exactly_once(services: Services, replicate_fake: FakeReplicate) -> None:
    account = await _bare_account(services)
    await _grant(services, account, 40, "pack")
    prompts = [f"FAILME {i}" if i % 2 else f"fine {i}" for i in range(40)]
    jobs = await asyncio.gather(*(services.generation.generate(account, GenerationRequest(prompt=p)) for p in prompts))
    assert sum(j.status == "succeeded" for j in jobs) == 20
    assert sum(j.status == "failed" and j.charge_state == "released" for j in jobs) == 20
    assert (await services.credits.balance(account)).credits == 20
    async with services.db.read() as session:
        releases = await session.scalar(
            select(func.count())
            .select_from(LedgerEntry)
            .where(LedgerEntry.account_id == account, LedgerEntry.kind == "release")
        )
    assert releases == 20
    assert await services.credits.invariant_violations() == []


async def test_session_quota_pays_first_for_eligible_models(
    services: Services, replicate_fake: FakeReplicate, clock: ManualClock
) -> None:
    account = await _bare_account(services)
    await _grant(services, account, 10, "pack", category="paid")
    await _grant(
        services,
        account,
        2,
        "session:1",
        unit="image",
        category="session",
        expires_at=clock.now() + timedelta(hours=1),
        eligible_models=["flux_schnell", "sdxl"],
    )
    first = await services.generation.generate(account, GenerationRequest(prompt="a cat"))
    assert (first.unit, first.charged) == ("image", 1)
    pro = await services.generation.generate(account, GenerationRequest(prompt="a cat", model="flux_pro"))
    assert (pro.unit, pro.charged) == ("credit", 5)
    balance = await services.credits.balance(account)
    assert balance.credits == 5 and balance.quotas[0].remaining == 1 and balance.quotas[0].seconds_left == 3600
    clock.advance(hours=2)
    late = await services.generation.generate(account, GenerationRequest(prompt="a cat"))
    assert (late.unit, late.charged) == ("credit", 1)
    assert (await services.credits.balance(account)).quotas == []


async def test_a_free_models_jobs_settle_and_release_without_ledger_entries(
    services: Services, replicate_fake: FakeReplicate
) -> None:
    """A price of 0 holds nothing; the job's charge still moves once (the won charge has no hold entries)."""
    services.settings.models["flux_schnell"].price = 0
    account = (await services.accounts.create("Acme")).id
    done = await services.generation.generate(account, GenerationRequest(prompt="a free cat"))
    failed = await services.generation.generate(account, GenerationRequest(prompt="FAILME free"))
    assert (done.status, done.charge_state, done.charged) == ("succeeded", "settled", 0)
    assert (failed.status, failed.charge_state, failed.charged) == ("failed", "released", 0)
    async with services.db.read() as session:
        entries = (
            await session.scalars(select(LedgerEntry.kind).where(LedgerEntry.job_id.in_([done.id, failed.id])))
        ).all()
    assert entries == []
    assert (await services.credits.balance(account)).credits == 10
    assert await services.credits.invariant_violations() == []
