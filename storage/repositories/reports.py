"""The cost and margin report's reads: finished jobs in a time range, what paid for each (the grants their
settles drew on), and the orders behind those grants."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Date, cast, func, select

from storage.db import Database
from storage.models import CreditGrant, Job, LedgerEntry, Order, RedemptionCode


@dataclass(frozen=True)
class ReportJob:
    """A finished job: ``charged`` units of ``unit``; ``cost_microusd`` what it cost us (None: unknown)."""

    id: str
    model: str
    kind: str
    status: str
    created_at: datetime
    unit: str
    charged: int
    provider: str | None
    cost_microusd: int | None


@dataclass(frozen=True)
class ReportSpend:
    """``amount`` units a job's settle took from the grant created for ``source_ref``."""

    job_id: str
    amount: int
    source_ref: str


@dataclass(frozen=True)
class ReportOrder:
    """An order's price (``amount`` in the currency's smallest unit), what it bought, and its codes' ids."""

    id: str
    product: str
    kind: str
    credits: int
    amount: int
    currency: str


@dataclass(frozen=True)
class ReportData:
    jobs: list[ReportJob]
    spends: list[ReportSpend]
    orders: dict[str, ReportOrder]
    code_orders: dict[int, str]


class ReportRepository:
    """Reads for ``core.reports``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def load(self, since: datetime, until: datetime) -> ReportData:
        """Jobs finished (succeeded, failed or canceled) with ``since <= created_at < until``, their settles'
        grants, every order and the orders of redemption codes."""
        finished = ("succeeded", "failed", "canceled")
        in_range = (Job.created_at >= since, Job.created_at < until, Job.status.in_(finished))
        jobs_stmt = select(
            Job.id,
            Job.model,
            Job.kind,
            Job.status,
            Job.created_at,
            Job.unit,
            Job.charged,
            Job.provider,
            Job.cost_microusd,
        ).where(*in_range)
        spends_stmt = (
            select(LedgerEntry.job_id, LedgerEntry.amount, CreditGrant.source_ref)
            .join(CreditGrant, CreditGrant.id == LedgerEntry.grant_id)
            .join(Job, Job.id == LedgerEntry.job_id)
            .where(LedgerEntry.kind == "settle", *in_range)
        )
        async with self.db.read() as session:
            jobs = [ReportJob(*row) for row in (await session.execute(jobs_stmt)).all()]
            rows = (await session.execute(spends_stmt)).all()
            spends = [ReportSpend(str(r.job_id), r.amount, r.source_ref) for r in rows]
            orders = {
                row.id: ReportOrder(row.id, row.product, row.kind, row.credits, row.amount, row.currency)
                for row in (await session.execute(select(Order))).scalars()
            }
            codes = dict(
                (await session.execute(select(RedemptionCode.id, RedemptionCode.order_id).where(
                    RedemptionCode.order_id.is_not(None)))).all()
            )  # fmt: skip
        return ReportData(jobs, spends, orders, {int(k): str(v) for k, v in codes.items()})


@dataclass(frozen=True)
class AccountUsage:
    """One account's generation figures: ``outputs`` as ``[(day, job kind, outputs)]`` of succeeded jobs,
    ``credits`` as ``[(model, credits charged)]``, ``prompts`` as ``[(prompt, jobs)]`` most used first."""

    outputs: list[tuple[str, str, int]]
    credits: list[tuple[str, int]]
    prompts: list[tuple[str, int]]


async def account_usage(db: Database, account_id: int, since: datetime, until: datetime, top: int) -> AccountUsage:
    """Succeeded jobs of ``account_id`` created in ``[since, until)``: outputs per UTC day and kind, credits
    charged per model, and the ``top`` prompts."""
    day = func.date(Job.created_at) if db.is_sqlite else cast(Job.created_at, Date)
    done = (Job.account_id == account_id, Job.created_at >= since, Job.created_at < until, Job.status == "succeeded")
    outputs = func.sum(Job.num_outputs)
    charged = func.sum(Job.charged)
    jobs = func.count()
    async with db.read() as session:
        per_day = (await session.execute(
            select(day, Job.kind, outputs).where(*done).group_by(day, Job.kind).order_by(day, Job.kind)
        )).all()  # fmt: skip
        credits = (await session.execute(
            select(Job.model, charged).where(*done, Job.unit == "credit", Job.charge_state == "settled")
            .group_by(Job.model).order_by(charged.desc(), Job.model)
        )).all()  # fmt: skip
        prompts = (await session.execute(
            select(Job.prompt, jobs).where(*done).group_by(Job.prompt).order_by(jobs.desc(), Job.prompt).limit(top)
        )).all()  # fmt: skip
    return AccountUsage(
        [(str(d), k, int(n)) for d, k, n in per_day],
        [(m, int(c)) for m, c in credits if c],
        [(p, int(n)) for p, n in prompts],
    )
