"""Two replicas' writes on one PostgreSQL: each replica has its own writer process (``storage.writer``), both
batch job and credit writes of the same accounts at once. Nothing deadlocks, nothing is lost, every job is
charged or refunded exactly once."""

from __future__ import annotations

import asyncio
import random
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from sqlalchemy import func, select

from core.config import Secrets
from core.generation import GenerationRequest
from storage.models import LedgerEntry
from tests.conftest import make_settings
from tests.fakes.replicate import FakeReplicate
from tools.services import open_services


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_two_replicas_writing_the_same_accounts_lose_nothing(
    database_url: str, tmp_path: Path, replicate_fake: FakeReplicate
) -> None:
    settings = make_settings(database_url, tmp_path)
    assert settings.database.writer_process
    secrets = Secrets(REPLICATE_API_TOKEN=replicate_fake.token)
    replicate_fake.duration = 0.05
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(open_services(settings, secrets=secrets)) for _ in range(2)]
        first = replicas[0]
        accounts = [await first.accounts.create(f"Shop {i}") for i in range(3)]
        for account in accounts:
            await first.credits.grant(account_id=account.id, amount=40, source_ref=f"seed:{account.id}")
        plan = [(replicas[i % 2], accounts[(i * 7) % 3], i) for i in range(60)]
        random.Random(5).shuffle(plan)  # both replicas, crossed accounts, in no order

        async def one(services: object, account_id: int, i: int) -> str:
            prompt = f"kitchen number {i}" + (" FAILME" if i % 5 == 0 else "")
            job = await services.generation.generate(account_id, GenerationRequest(prompt=prompt))  # type: ignore[attr-defined]
            return str(job.status)

        async def grant(account_id: int, i: int) -> None:
            await replicas[i % 2].credits.grant(account_id=account_id, amount=1, source_ref=f"top-up:{i}")

        outcomes = await asyncio.gather(
            *(one(s, a.id, i) for s, a, i in plan), *(grant(accounts[i % 3].id, i) for i in range(12))
        )
        statuses = [o for o in outcomes if o is not None]
        assert statuses.count("failed") == 12 and statuses.count("succeeded") == 48
        assert {r.db.writer_pid for r in replicas} != {None} and replicas[0].db.writer_pid != replicas[1].db.writer_pid

        per_account = {a.id: sum(1 for _, acc, i in plan if acc.id == a.id and i % 5) for a in accounts}
        top_ups = {a.id: sum(1 for i in range(12) if i % 3 == n) for n, a in enumerate(accounts)}
        for account in accounts:
            balance = (await first.credits.balance(account.id)).credits
            assert balance == 10 + 40 + top_ups[account.id] - per_account[account.id]
        async with first.db.read() as session:
            entries = dict(
                (await session.execute(
                    select(LedgerEntry.kind, func.count(func.distinct(LedgerEntry.job_id)))
                    .where(LedgerEntry.job_id.is_not(None)).group_by(LedgerEntry.kind)
                )).all()
            )
        assert entries.get("hold") == 60 and entries.get("settle") == 48 and entries.get("release") == 12
